"""ECG beat classification (MIT-BIH): a 1-D CNN, a BiLSTM or a transformer over each beat and its RR intervals.

`medjax train ecg --data-dir D` reads a folder of records (the shared `.npz` copy, or WFDB ``.hea``/``.dat``/``.atr``),
cuts a window around every annotated beat, and splits by record: de Chazal et al.'s DS1 trains and DS2 tests, with
``--val-records`` (default 108 and 116) held out of DS1 for model selection; the paced records 102, 104, 107 and 217 are
left out as AAMI EC57 says. Labels are the AAMI classes where the annotations carry beat symbols, V against non-V
where they carry only PVC flags (``--labels auto``). The loss weights each class by its inverse frequency in train.
Scores: per-class sensitivity (``se_<class>``), positive predictive value (``ppv_``), F1 (``f1_``) and accuracy; the
epoch is chosen on validation V F1 (PVC labels) or macro F1 (AAMI). In the same command a linear discriminant on RR
features and a down-sampled morphology (de Chazal et al.'s classifier family, equal priors) is scored on the same
beats as ``baseline_*``.

`medjax predict --workdir W DIR/100 ...` (or `medjax.load(W).predict(["DIR/100"])`) labels every beat of each record
(its annotations' beats, or beats found by wfdb's XQRS detector when it has none): one row per beat, with ``record``,
``sample``, ``probabilities``, ``label`` and ``class``. The run's ``meta.json`` holds what that needs (class names,
label scheme, window length); the training records are not read.

Command, expected result and runtime: see experiments/ecg/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import ecg
from medjax.data.splits import ArraySplit
from medjax.errors import ConfigError, DataError
from medjax.nn.beat_classifiers import BeatCNN, BeatLSTM, BeatTransformer
from medjax.tasks.common import class_columns, conformal_columns, softmax_head
from medjax.train import precision
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.metrics import Mean
from medjax.train.task import FromBatch, FromOutputs, Task

MODELS = ("cnn", "lstm", "transformer")
# Every 9th sample of the window (40 Hz) for the linear baseline: de Chazal et al. sampled the QRS and T wave sparsely.
_BASELINE_DECIMATION = 9


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    workdir: str = option("runs/ecg", "where config.json, metrics.jsonl, results.json and checkpoints/ go")
    data_dir: str = option("../shared/data/mitdb-pvc-12", "a folder of ECG records: mitdb_<rec>.npz files, or WFDB "
                                                          "records (<rec>.hea, its signal file, <rec>.atr)")
    labels: str = option("auto", "aami (N, S, V, F, Q from beat symbols), pvc (V against non-V), or auto: aami where "
                                 "the records carry beat symbols", choices=("auto", "aami", "pvc"))
    exclude_records: tuple[str, ...] = option(ecg.PACED, "records left out (AAMI EC57 excludes the paced ones)")
    val_records: tuple[str, ...] = option(("108", "116"), "DS1 records held out of training for model selection")
    split_seed: int = option(0, "seeds the 60/20/20 split by record of a database that is not MIT-BIH", minimum=0)
    rate: float = option(360.0, "the windows' sampling rate in Hz (records at other rates are resampled)", above=0.0)
    before: float = option(0.25, "window start, seconds before the R peak", above=0.0)
    after: float = option(0.45, "window end, seconds after the R peak", above=0.0)
    baseline_filter: bool = option(True, "remove baseline wander (200 ms and 600 ms median filters) first")
    model: str = option("cnn", "cnn (conv1d blocks), lstm (BiLSTM) or transformer (attention over patches)",
                        choices=MODELS)
    hidden: int = option(64, "the head's width; the LSTM's state size per direction", minimum=1)
    num_layers: int = option(1, "LSTM layers or transformer blocks", minimum=1)
    width: int = option(32, "transformer: model width", minimum=1)
    num_heads: int = option(4, "transformer: attention heads", minimum=1)
    patch: int = option(12, "transformer: samples per patch token", minimum=1)
    dropout: float = option(0.3, "dropout before the last layer (and inside the LSTM stack / encoder)", minimum=0.0)
    class_weights: bool = option(True, "weight the loss by inverse class frequency in train")
    baseline: bool = option(True, "also fit and score the linear-discriminant baseline")
    limit: int = option(0, "keep at most this many beats per record (0: all); for smoke runs", minimum=0)
    epochs: int = option(15, "passes over the training split", minimum=1)
    batch_size: int = option(128, "beats per training step, split over all local devices", minimum=1)
    eval_batch_size: int = option(512, "beats per evaluation step", minimum=1)
    optimizer: str = option("adamw", "the optimizer", choices=("adam", "adamw", "sgd"))
    lr: float = option(1e-3, "peak learning rate", above=0.0)
    weight_decay: float = option(1e-4, "decoupled weight decay (adamw) or L2 (adam, sgd)", minimum=0.0)
    schedule: str = option("cosine", "the learning-rate schedule", choices=("constant", "cosine", "multistep"))
    clip_norm: float = option(1.0, "clip gradients to this global norm; 0 turns clipping off", minimum=0.0)


def published_rows(config: dict) -> list[dict]:
    """The published inter-patient VEB row beside which `medjax report --html` shows a PVC run."""
    del config
    return [{"label": "de Chazal et al. 2004 (full DS2)", "test_se_V": 0.777, "test_ppv_V": 0.819}]


def smoke_config(**overrides: Any) -> Config:
    """A seconds-long run of the same pipeline: 300 beats per record, a small CNN, one epoch."""
    return Config(**{"limit": 300, "epochs": 1, "hidden": 16, "progress": False, **overrides})


@dataclasses.dataclass(frozen=True)
class BeatSet:
    """The beats of a data set, split by record: ``arrays[split]`` holds window, rr, label, record, sample and
    ``index`` (each beat's row in the splits' concatenation, train then val then test)."""

    records: list[ecg.Record]
    parts: dict[str, tuple[str, ...]]
    arrays: dict[str, dict[str, np.ndarray]]
    scheme: str


CLASSES = {"aami": ecg.AAMI_CLASSES, "pvc": ecg.PVC_CLASSES}


def record_arrays(record: ecg.Record, index: int, config: Config, scheme: str | None) -> dict[str, np.ndarray]:
    """One record's beats as batch arrays (``label`` only when ``scheme`` names the labels)."""
    beats = ecg.cut_beats(record, config.rate, config.before, config.after, config.baseline_filter)
    arrays = {"window": beats.windows, "rr": beats.rr, "record": np.full(len(beats.sample), index, np.int32),
              "sample": beats.sample.astype(np.int32)}
    if scheme:
        arrays["label"] = ecg.beat_labels(record, scheme)[beats.kept]
    if config.limit:
        arrays = {key: value[: config.limit] for key, value in arrays.items()}
    return arrays


def load_beats(config: Config, scheme: str | None = None) -> BeatSet:
    """Reads the records, splits them by record and cuts the beats, as `build_task` does; labels as ``scheme`` (a
    run's meta.json) says, else as ``config.labels`` (auto: aami where every record carries beat symbols)."""
    records = [r for r in ecg.read_folder(config.data_dir) if r.name not in config.exclude_records]
    if len(records) < 3:
        raise DataError(config.data_dir, f"expected at least 3 records after excluding "
                                         f"{', '.join(config.exclude_records)} (one per split), got {len(records)}")
    scheme = scheme or config.labels
    if scheme == "auto":
        scheme = "aami" if all(r.symbols is not None for r in records) else "pvc"
    parts = ecg.split_records([r.name for r in records], config.val_records, config.split_seed)
    # The windows of every record are kept together: their total must fit, not only each record's.
    beats = sum(min(len(r.beats), config.limit or len(r.beats)) for r in records)
    ecg.check_window_memory(beats, config.rate, config.before, config.after)
    per_record = {r.name: record_arrays(r, i, config, scheme) for i, r in enumerate(records)}
    for split, names in parts.items():
        if not any(len(per_record[n]["sample"]) for n in names):
            raise ConfigError("--before/--after", f"expected beat windows that fit inside the records, got none in "
                                                  f"the {split} records ({', '.join(names)}) with {config.before:g} s "
                                                  f"before and {config.after:g} s after the R peak")
    arrays, offset = {}, 0
    for split, names in parts.items():
        arrays[split] = {key: np.concatenate([per_record[n][key] for n in names]) for key in per_record[names[0]]}
        size = len(arrays[split]["sample"])
        arrays[split]["index"] = np.arange(offset, offset + size, dtype=np.int32)
        offset += size
    return BeatSet(records, parts, arrays, scheme)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """f32[classes]: ``n / (classes present · count_k)``, 0 for a class absent from train."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.where(present, labels.size / (present.sum() * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def loss(logits: jax.Array, batch, weights: tuple[float, ...]):
    """Class-weighted mean cross-entropy over the valid beats: Σ w_y·CE / Σ w_y."""
    labels, valid = batch["label"], batch["example_mask"]
    w = jnp.asarray(weights, jnp.float32)[labels] * valid
    per_beat = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[:, None], axis=-1)[:, 0]
    value = jnp.sum(w * per_beat) / jnp.maximum(jnp.sum(w), 1e-12)
    return value, {"accuracy": Mean.of(jnp.argmax(logits, -1) == labels, where=valid)}


def beat_scores(labels: np.ndarray, pred: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """Accuracy, macro F1 over the classes present, and per class ``se_``, ``ppv_``, ``f1_`` (scikit-learn)."""
    from sklearn.metrics import precision_recall_fscore_support

    k = len(class_names)
    ppv, se, f1, support = precision_recall_fscore_support(labels, pred, labels=range(k), zero_division=0)
    scores = {"accuracy": float(np.mean(labels == pred)), "macro_f1": float(np.mean(f1[support > 0]))}
    for i, name in enumerate(class_names):
        scores |= {f"se_{name}": float(se[i]), f"ppv_{name}": float(ppv[i]), f"f1_{name}": float(f1[i])}
    return scores


def fit_baseline(arrays: dict[str, np.ndarray]):
    """Linear discriminant analysis on [RR features, the window every 9th sample] with equal class priors."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    present = np.unique(arrays["label"])
    model = LinearDiscriminantAnalysis(priors=np.full(present.size, 1.0 / present.size))
    return model.fit(baseline_features(arrays), arrays["label"])


def baseline_features(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([arrays["rr"], arrays["window"][:, ::_BASELINE_DECIMATION]], axis=1)


@precision.follows_config
def build_model(config: Config, meta: dict):
    """The beat classifier ``config.model`` over ``window`` and ``rr``, one logit per class of ``meta``."""
    num_classes = len(meta["class_names"])
    if config.model == "cnn":
        module = BeatCNN(num_classes, hidden=config.hidden, dropout=config.dropout)
    elif config.model == "lstm":
        module = BeatLSTM(num_classes, config.hidden, config.num_layers, dropout=config.dropout)
    else:
        module = BeatTransformer(num_classes, config.width, config.patch, config.num_layers, config.num_heads,
                                 2 * config.width, config.dropout)
    return FromBatch(module, ("window", "rr"))


def inference(config: Config, meta: dict):
    """Class probabilities ``scores``, ``pred``, and each beat's ``record``, ``sample``, ``index`` (and label)."""
    return FromOutputs(softmax_head)


def build_task(config: Config, meta: dict | None = None) -> Task:
    """Reads the records, splits them by record, cuts the beats and assembles the task; with a run's ``meta``, its
    label scheme and class weights instead of those of train."""
    data = load_beats(config, meta["labels"] if meta else None)
    window = int(data.arrays["train"]["window"].shape[1])
    if config.model == "transformer" and window < config.patch:
        raise ConfigError("--patch", f"expected at most the window's {window} samples, got {config.patch}")
    names = CLASSES[data.scheme]
    k = len(names)
    if meta is None:
        weights = class_weights(data.arrays["train"]["label"], k) if config.class_weights else np.ones(k, np.float32)
        meta = {"class_names": list(names), "labels": data.scheme, "window_samples": window,
                "class_weights": weights.tolist()}

    @functools.cache
    def baseline() -> np.ndarray:
        """The baseline's label of every beat of every split, in ``index`` order."""
        fitted = fit_baseline(data.arrays["train"])
        print("linear-discriminant baseline fitted on RR + morphology", file=sys.stderr, flush=True)
        return fitted.predict(np.concatenate([baseline_features(a) for a in data.arrays.values()]))

    def score(predictions) -> dict[str, float]:
        labels, pred = np.asarray(predictions["labels"]), np.asarray(predictions["pred"])
        scores = beat_scores(labels, pred, names)
        if config.baseline:
            base = baseline()[np.asarray(predictions["index"])]
            scores |= {f"baseline_{key}": value for key, value in beat_scores(labels, base, names).items()}
        return scores

    counts = {split: np.bincount(a["label"], minlength=k).tolist() for split, a in data.arrays.items()}
    return Task(
        name="ecg",
        model=build_model(config, meta),
        splits={split: ArraySplit(arrays) for split, arrays in data.arrays.items()},
        loss=functools.partial(loss, weights=tuple(float(w) for w in meta["class_weights"])),
        predict=inference(config, meta),
        score=score,
        select_metric="f1_V" if names == ecg.PVC_CLASSES else "macro_f1",
        describe={"records": {split: list(names) for split, names in data.parts.items()},
                  "record_names": [r.name for r in data.records], "class_counts": counts,
                  "class_weights": meta["class_weights"], "window_samples": window},
        class_names=names,
        batch_spec={"window": ArraySpec("f", rank=2), "rr": ArraySpec("f", rank=2, low=0.0),
                    "label": ArraySpec("i", rank=1, low=0, high=k)},
        meta=meta,
    )


def read_inputs(arguments: list[str]) -> list[str]:
    """`medjax predict`'s arguments: record paths (WFDB without extension or its ``.hea``, or ``.npz`` copies)."""
    return arguments


def encode(config: Config, meta: dict, inputs) -> ArraySplit:
    """Every beat of each record (annotated, or found by the XQRS detector) as a window and its RR features;
    ``record`` is the input's position, ``index`` the beat's row over all records."""
    paths = [inputs] if isinstance(inputs, (str, pathlib.Path)) else list(inputs)
    whole = dataclasses.replace(config, limit=0)
    per_record = [record_arrays(ecg.read_record(path, detect_missing_annotations=True), i, whole, None)
                  for i, path in enumerate(paths)]
    if not per_record:
        raise DataError(None, "expected ECG record paths to predict, got none")
    arrays = {key: np.concatenate([a[key] for a in per_record]) for key in per_record[0]}
    if arrays["window"].shape[1] != meta["window_samples"]:  # a run trained at other --rate/--before/--after
        raise DataError(None, f"expected windows of the run's {meta['window_samples']} samples, got "
                              f"{arrays['window'].shape[1]}")
    return ArraySplit({**arrays, "index": np.arange(len(arrays["sample"]), dtype=np.int32)})


def decode(config: Config, meta: dict, predictions: dict, inputs, coverage: float | None = None) -> dict:
    """One row per beat: ``record`` (the input as given), ``sample`` (its R peak), ``probabilities``, ``label``,
    ``class`` (and ``set`` with ``coverage``)."""
    paths = [inputs] if isinstance(inputs, (str, pathlib.Path)) else list(inputs)
    names = meta["class_names"]
    return {"record": [str(paths[r]) for r in predictions["record"]],
            "sample": np.asarray(predictions["sample"], np.int64),
            **class_columns(predictions["scores"], names),
            **conformal_columns(config.workdir, coverage, predictions["scores"], names)}


def _read_named(folder: str | pathlib.Path, name: str) -> ecg.Record:
    """Record ``name`` of a data folder, as `medjax.data.ecg.read_folder` names it (``.npz`` copies first)."""
    folder = pathlib.Path(folder)
    npz = [p for p in sorted(folder.glob("*.npz")) if p.stem.removeprefix("mitdb_") == name]
    return ecg.read_npz(npz[0]) if npz else ecg.read_wfdb(folder / name)


def plot_workdir(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """`medjax plot`'s ECG figure: ten seconds of the test record with the most V beats, where the most V beats are,
    with the true label above each beat and the predicted one below (red where they differ): ``ecg_strip.png``.
    Reads the run's config.json, predictions and that one record; writes only the figure."""
    import io

    from matplotlib.figure import Figure

    from medjax.data.files import replace_atomically
    from medjax.train.workdir import read_json

    workdir = pathlib.Path(workdir)
    path = workdir / "predictions_test.npz"
    if not path.is_file():
        return []
    with np.load(path, allow_pickle=False) as saved:
        predictions = dict(saved)
    saved = read_json(workdir / "config.json", "the config.json of a run")
    names, config = saved["class_names"], saved["config"]
    v = names.index("V")
    counts = np.bincount(predictions["record"], weights=predictions["labels"] == v)
    chosen = int(np.argmax(counts))
    record = _read_named(config["data_dir"], saved["describe"]["record_names"][chosen])
    rows = np.flatnonzero(predictions["record"] == chosen)
    samples, span = predictions["sample"][rows], int(10 * record.fs)
    # The ten seconds holding the most true V beats.
    is_v = predictions["labels"][rows] == v
    start = int(samples[np.argmax([np.sum(is_v & (samples >= s) & (samples < s + span)) for s in samples])])
    start = max(start - int(record.fs), 0)
    inside = rows[(samples >= start) & (samples < start + span)]
    figure = Figure(figsize=(14, 3.5), layout="constrained")
    axes = figure.subplots()
    t = np.arange(start, min(start + span, record.signal.size))
    axes.plot(t / record.fs, record.signal[t], color="black", linewidth=0.7)
    top, bottom = record.signal[t].max(), record.signal[t].min()
    for row in inside:
        x, truth, guess = predictions["sample"][row] / record.fs, names[predictions["labels"][row]], \
            names[predictions["pred"][row]]
        axes.text(x, top + 0.15, truth, ha="center", fontsize="small")
        axes.text(x, bottom - 0.35, guess, ha="center", fontsize="small", color="red" if truth != guess else "blue")
    axes.set(xlabel="time (s)", ylabel="mV", ylim=(bottom - 0.6, top + 0.5),
             title=f"record {record.name}: true labels above, predicted below (red: wrong); model {config['model']}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return [replace_atomically(workdir / "ecg_strip.png", buffer.getvalue())]
