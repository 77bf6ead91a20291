"""Molecular property prediction from SMILES (FreeSolv by default) with a BiLSTM or a transformer, beside baselines.

`medjax train molecules` reads SMILES and a target from CSV (`medjax.data.molecules`), cuts them into atom-level
tokens (`medjax.data.smiles`) and trains the text classifiers of `medjax.nn.text_classifiers` with one output: a
regression head on targets standardised with the training mean and sd (loss: MSE in sd units; predictions are put
back in the target's units), or two logits for a 0/1 target (softmax cross-entropy, ROC-AUC). The epoch is selected
on validation ``neg_rmse`` (minus the RMSE, so that higher is better) or ``auc``.

In the same command, fitted on first use and scored on exactly the examples the model is scored on (by row index):
ridge regression (logistic regression for classification) on Morgan fingerprints (radius 2, 2048 bits; RDKit) or on
character 1-3-gram counts without RDKit, its regularisation chosen on validation (``baseline_rmse``, ...); and, when the
CSV has the reference column (FreeSolv's ``calc``: molecular-dynamics free energies), that column as a second baseline
(``calc_rmse``, ...). SMILES enumeration (augmenting with random SMILES of each molecule) is not implemented.

`medjax predict molecules --workdir W --smiles CCO` prints ``smiles,prediction`` rows; `plot_parity(workdir)` draws
predicted against true on the test split (``parity.png``). Command, expected result and runtime:
experiments/molecules/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import pathlib
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import molecules as mol_data
from medjax.data.smiles import tokenize_smiles
from medjax.data.splits import SequenceSplit, length_buckets
from medjax.data.vocab import Vocabulary
from medjax.errors import ConfigError, UserError
from medjax.metrics.classification import accuracy, roc_auc
from medjax.tasks.common import carried, conformal_columns, softmax_head, split_fractions, texts, vocabulary
from medjax.tasks.textclf import build_classifier
from medjax.train import precision
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.losses import mse, softmax_cross_entropy
from medjax.train.metrics import Mean
from medjax.train.task import FromOutputs, Task


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    workdir: str = option("runs/molecules", "where config.json, metrics.jsonl, results.json, vocab.json and "
                                            "checkpoints/ go")
    data_dir: str = option("../shared/data/freesolv", "a CSV file, a folder with one CSV, or a folder with train.csv "
                                                      "and test.csv (and optionally valid.csv)")
    smiles_column: str = option("smiles", "the CSV column of SMILES strings")
    target_column: str = option("expt", "the CSV column of the target (FreeSolv: hydration free energy, kcal/mol)")
    reference_column: str = option("calc", "a CSV column of another method's estimates, scored as a baseline when "
                                           "present (empty: none)")
    task_type: str = option("auto", "regression, classification (0/1 targets), or auto: classification when every "
                                    "target is 0 or 1", choices=("auto", "regression", "classification"))
    split: str = option("random", "random (seeded, as MoleculeNet) or scaffold (Bemis-Murcko groups, RDKit)",
                        choices=("random", "scaffold"))
    split_seed: int = option(0, "seeds the random split (independent of the training seed)", minimum=0)
    val_fraction: float = option(0.1, "share of the molecules held out for model selection", above=0.0)
    test_fraction: float = option(0.1, "share of the molecules held out for the final score", above=0.0)
    limit: int = option(0, "use at most this many molecules per split (0: all); for smoke runs", minimum=0)
    min_count: int = option(1, "training-split tokens rarer than this become <unk>", minimum=1)
    buckets: tuple[int, ...] = option((), "padded SMILES lengths in tokens (empty: powers of two from 16 up to the "
                                          "longest SMILES); one bucket compiles one step", minimum=1)
    model: str = option("lstm", "lstm (BiLSTM) or transformer (encoder blocks)", choices=("lstm", "transformer"))
    embed_dim: int = option(64, "token embedding width (the transformer's model width)", minimum=1)
    hidden: int = option(128, "LSTM state size per direction", minimum=1)
    num_layers: int = option(1, "LSTM layers, or transformer encoder blocks", minimum=1)
    num_heads: int = option(4, "attention heads", minimum=1)
    mlp_dim: int = option(128, "transformer feed-forward width", minimum=1)
    pooling: str = option("mean", "LSTM: how the outputs become one vector", choices=("mean", "max", "last"))
    positions: str = option("sinusoidal", "transformer: position encoding", choices=("sinusoidal", "learned", "none"))
    dropout: float = option(0.1, "dropout on embeddings, between layers and on the pooled vector", minimum=0.0)
    baseline: bool = option(True, "also fit and score the fingerprint ridge (or logistic) baseline")
    strict: bool = option(False, "refuse a file with SMILES that RDKit cannot parse (default: drop those rows and "
                                 "list their lines on stderr)", missing=True)
    epochs: int = option(60, "passes over the training split", minimum=1)
    batch_size: int = option(32, "examples per training step, split over all local devices", minimum=1)
    eval_batch_size: int = option(64, "examples per evaluation step", minimum=1)
    lr: float = option(2e-3, "peak learning rate", above=0.0)
    optimizer: str = option("adamw", "the optimizer", choices=("adam", "adamw", "sgd"))
    weight_decay: float = option(1e-4, "decoupled weight decay (adamw) or L2 (adam, sgd)", minimum=0.0)
    schedule: str = option("cosine", "the learning-rate schedule", choices=("constant", "cosine", "multistep"))
    clip_norm: float = option(1.0, "clip gradients to this global norm; 0 turns clipping off", minimum=0.0)


def smoke_config(**overrides: Any) -> Config:
    """A seconds-long run of the same pipeline: 32 molecules per split, a tiny model, one epoch."""
    small = {"limit": 32, "epochs": 1, "batch_size": 8, "eval_batch_size": 8, "embed_dim": 16, "hidden": 16,
             "mlp_dim": 16, "num_heads": 2, "progress": False}
    return Config(**{**small, **overrides})


def regression_loss(outputs: jax.Array, batch, std: float):
    """MSE on standardised targets; reports the mean absolute error in the target's units."""
    where_ = batch["example_mask"]
    error = outputs[:, 0] - batch["target"]
    return mse(outputs[:, 0], batch["target"], where=where_), {"mae": Mean.of(jnp.abs(error) * std, where=where_)}


def regression_predict(outputs: jax.Array, batch, mean: float, std: float) -> dict:
    """``outputs: f32[batch, 1]`` in sd units -> ``prediction`` (and ``true`` when the batch has targets) f32[batch]
    in the target's units."""
    out = {"prediction": outputs[:, 0] * std + mean, **carried(batch)}
    return out | ({"true": batch["target"] * std + mean} if "target" in batch else {})


def classification_loss(logits: jax.Array, batch):
    """Softmax cross-entropy of ``logits: f32[batch, 2]`` against the 0/1 ``label``; reports the accuracy."""
    where_ = batch["example_mask"]
    value = softmax_cross_entropy(logits, batch["label"], where=where_)
    return value, {"accuracy": Mean.of(jnp.argmax(logits, axis=-1) == batch["label"], where=where_)}


def regression_figures(true: np.ndarray, pred: np.ndarray, prefix: str = "") -> dict[str, float]:
    """``{prefix}rmse``, ``mae`` and ``r2`` (scikit-learn's) of predictions against true values."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {f"{prefix}rmse": float(np.sqrt(mean_squared_error(true, pred))),
            f"{prefix}mae": float(mean_absolute_error(true, pred)), f"{prefix}r2": float(r2_score(true, pred))}


def has_rdkit() -> bool:
    """Whether RDKit is installed (the ``chem`` extra); looked up without importing it."""
    return importlib.util.find_spec("rdkit") is not None


def baseline_features(data: mol_data.Molecules, train_rows: np.ndarray):
    """Morgan fingerprints (radius 2, 2048 bits) with RDKit, else character 1-3-gram counts fitted on train.

    Returns:
      ``(features, name)``: an ``[n, d]`` matrix (dense or sparse) for every molecule, and a name for messages.
    """
    if has_rdkit():
        from rdkit.Chem import rdFingerprintGenerator

        generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
        rows = [generator.GetFingerprintAsNumPy(m) for m in mol_data.parse_all(data)]
        return np.stack(rows).astype(np.float32), "Morgan fingerprints (r=2, 2048 bits)"
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False)
    vectorizer.fit([data.smiles[i] for i in train_rows])
    return vectorizer.transform(list(data.smiles)), "character 1-3-gram counts"


def fit_baseline(features, targets: np.ndarray, parts: dict[str, np.ndarray], task_type: str, seed: int = 0):
    """Ridge (alpha) or logistic regression (C) on ``features``, the setting chosen on validation RMSE or AUC.

    Returns:
      ``(predictions, setting)``: f64[n] predicted values (or positive-class probabilities) of every molecule, and
      the regularisation strength kept.
    """
    from sklearn.linear_model import LogisticRegression, Ridge

    train, val = parts["train"], parts["val"]
    best = None
    for strength in (0.01, 0.1, 1.0, 10.0, 100.0):
        if task_type == "regression":
            model = Ridge(alpha=strength).fit(features[train], targets[train])
            pred = model.predict(features)
            value = -regression_figures(targets[val], pred[val])["rmse"]
        else:
            model = LogisticRegression(C=strength, max_iter=2000, random_state=seed)
            pred = model.fit(features[train], targets[train]).predict_proba(features)[:, 1]
            value = roc_auc(targets[val].astype(np.int32), pred[val]) if len(set(targets[val])) > 1 else 0.0
        if best is None or value > best[0]:
            best = (value, pred, strength)
    return best[1], best[2]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The molecules, their split, the task type, the training vocabulary and target statistics.

    Attributes:
      molecules: every molecule read.
      parts: ``{"train" | "val" | "test": int64[n_split]}`` row indices into ``molecules``.
      task_type: ``"regression"`` or ``"classification"``.
      vocab: the atom-level tokens of the training split.
      mean, std: the training targets' mean and (population) sd, which standardise the regression targets.
    """

    molecules: mol_data.Molecules
    parts: dict[str, np.ndarray]
    task_type: str
    vocab: Vocabulary
    mean: float
    std: float


def load_dataset(config: Config, meta: dict | None = None) -> Dataset:
    """Reads and splits the data and builds the vocabulary and target statistics from the training split alone (or
    takes them from ``meta``, a run's)."""
    data, given = mol_data.load(config.data_dir, config.smiles_column, config.target_column, config.reference_column)
    if has_rdkit() and config.strict:
        mol_data.parse_all(data)  # an unparsable SMILES is the user's to fix: name its line now, not mid-run
    elif has_rdkit():
        data, given, dropped = mol_data.drop_unparsable(data, given)
        if dropped:
            shown = ", ".join(dropped[:10]) + (f" and {len(dropped) - 10} more" if len(dropped) > 10 else "")
            print(f"dropped {len(dropped)} SMILES that RDKit cannot parse ({shown}); --strict refuses them instead",
                  file=sys.stderr)
    if given:
        parts = mol_data.complete_given(data, given, config.split, config.val_fraction, config.split_seed)
    else:
        parts = mol_data.split(data, config.split, split_fractions(config), config.split_seed)
    if config.limit:
        parts = {name: rows[:config.limit] for name, rows in parts.items()}
    task_type = mol_data.infer_task_type(data.targets) if config.task_type == "auto" else config.task_type
    if task_type == "classification" and not np.isin(data.targets, (0.0, 1.0)).all():
        shown = ", ".join(f"{value:g}" for value in sorted(set(data.targets.tolist()))[:3])
        raise ConfigError("--task-type", f"expected 0/1 targets in column {config.target_column!r} for "
                                         f"classification, got values such as {shown}")
    if meta:
        return Dataset(data, parts, meta["task_type"], vocabulary(meta), meta["target_mean"], meta["target_std"])
    train_targets = data.targets[parts["train"]]
    vocab = Vocabulary.build((data.tokens[i] for i in parts["train"]), min_count=config.min_count)
    # A constant training target would make the sd 0; 1 then leaves the targets as they are.
    return Dataset(data, parts, task_type, vocab, float(train_targets.mean()), float(train_targets.std()) or 1.0)


@precision.follows_config
def build_model(config: Config, meta: dict):
    """The BiLSTM or transformer of a run, with one output (regression) or two logits."""
    outputs = 1 if meta["task_type"] == "regression" else 2
    return build_classifier(config, len(meta["vocab"]["tokens"]), outputs, meta["buckets"][-1])


def inference(config: Config, meta: dict):
    if meta["task_type"] == "regression":
        return FromOutputs(functools.partial(regression_predict, mean=meta["target_mean"], std=meta["target_std"]))
    return FromOutputs(softmax_head)


def build_task(config: Config, meta: dict | None = None) -> Task:
    """Reads and splits the molecules, builds the vocabulary from the training split (or takes the run's, from
    ``meta``) and the model named in config."""
    dataset = load_dataset(config, meta)
    data, parts, vocab, regression = dataset.molecules, dataset.parts, dataset.vocab, dataset.task_type == "regression"
    ids = {name: tuple(vocab.encode(data.tokens[i]) for i in rows) for name, rows in parts.items()}
    longest = max(len(doc) for docs in ids.values() for doc in docs)
    buckets = tuple(meta["buckets"]) if meta else tuple(sorted(config.buckets)) or length_buckets([longest])
    if longest > buckets[-1]:
        raise ConfigError("--buckets", f"expected a largest bucket of at least {longest} tokens (the longest SMILES), "
                                       f"got {buckets[-1]}")
    standardised = ((data.targets - dataset.mean) / dataset.std).astype(np.float32)
    labels = {"target": standardised} if regression else {"label": data.targets.astype(np.int32)}
    fields = {name: {"index": rows.astype(np.int32), **{key: values[rows] for key, values in labels.items()}}
              for name, rows in parts.items()}
    splits = {name: SequenceSplit({"ids": ids[name]}, fields[name], buckets, sort_chunk=4) for name in parts}
    meta = meta or {"vocab": json.loads(vocab.to_json()), "task_type": dataset.task_type,
                    "target_mean": dataset.mean, "target_std": dataset.std, "buckets": list(buckets)}

    # Fitted on first use only: `medjax predict` and `evaluate` rebuild the task without needing it.
    @functools.cache
    def baseline_predictions() -> np.ndarray:
        features, name = baseline_features(data, parts["train"])
        pred, strength = fit_baseline(features, data.targets, parts, dataset.task_type, config.seed)
        if regression:
            said = {n: regression_figures(data.targets[r], pred[r])["rmse"] for n, r in parts.items()}
        else:
            said = {n: roc_auc(data.targets[r].astype(np.int32), pred[r]) for n, r in parts.items()
                    if len(set(data.targets[r])) > 1}
        print(f"{'ridge' if regression else 'logistic'} baseline on {name} (strength {strength:g}): "
              f"{'RMSE' if regression else 'AUC'} " + ", ".join(f"{n} {v:.4f}" for n, v in said.items()), flush=True)
        return pred

    def score(predictions) -> dict[str, float]:
        index = np.asarray(predictions["index"])
        true = data.targets[index]
        if regression:
            metrics = regression_figures(true, np.asarray(predictions["prediction"], np.float64))
            metrics["neg_rmse"] = -metrics["rmse"]
            if config.baseline:
                metrics |= regression_figures(true, baseline_predictions()[index], "baseline_")
            if data.reference is not None:
                metrics |= regression_figures(true, data.reference[index], "calc_")
            return metrics
        labels, probability = true.astype(np.int32), np.asarray(predictions["scores"])[:, 1]
        both = len(set(labels)) > 1  # the AUC is undefined on a split (or --limit) with one class
        metrics = {"auc": roc_auc(labels, probability) if both else float("nan"),
                   "accuracy": accuracy(labels, np.asarray(predictions["pred"]))}
        if config.baseline:
            base = baseline_predictions()[index]
            metrics |= {"baseline_auc": roc_auc(labels, base) if both else float("nan"),
                        "baseline_accuracy": accuracy(labels, (base > 0.5).astype(np.int32))}
        return metrics

    head = {"target": ArraySpec("f", rank=1)} if regression else {"label": ArraySpec("i", rank=1, low=0, high=2)}
    return Task(
        name="molecules",
        model=build_model(config, meta),
        splits=splits,
        loss=functools.partial(regression_loss, std=dataset.std) if regression else classification_loss,
        predict=inference(config, meta),
        score=score,
        select_metric="neg_rmse" if regression else "auc",
        describe={"task_type": dataset.task_type, "target_mean": dataset.mean, "target_std": dataset.std,
                  "vocab_size": len(vocab), "molecules": len(data), "split_sizes": {name: len(rows) for name, rows in parts.items()},
                  "split": config.split, "buckets": list(buckets)},
        class_names=() if regression else ("0", "1"),
        batch_spec={"ids": ArraySpec("i", rank=2, low=0, high=len(vocab), mask="mask"), "mask": ArraySpec("b", rank=2),
                    "index": ArraySpec("i", rank=1, low=0, high=len(data)), **head},
        meta=meta,
    )


def read_inputs(arguments: list[str]) -> list[str]:
    """`medjax predict`'s arguments: SMILES strings."""
    return arguments


def parse(meta: dict, smiles: str) -> tuple[np.ndarray | None, str]:
    """``(token ids, "")`` of a SMILES the model can read, or ``(None, why not)``: atoms no tokenizer knows, a
    molecule RDKit cannot parse (when installed), or more tokens than the model was built for."""
    try:
        tokens = tokenize_smiles(smiles)
    except UserError as err:
        return None, str(err)
    if has_rdkit() and mol_data.parse_smiles(smiles) is None:
        return None, "RDKit cannot parse it"
    longest = meta["buckets"][-1]
    if not 0 < len(tokens) <= longest:
        return None, f"{len(tokens)} tokens; the model reads 1 to {longest}"
    return vocabulary(meta).encode(tokens), ""


def encode(config: Config, meta: dict, inputs) -> SequenceSplit:
    """The valid SMILES of ``inputs`` as a run's batches; `decode` marks the others invalid."""
    ids = [found for found, _ in (parse(meta, s) for s in texts(inputs, "SMILES")) if found is not None]
    return SequenceSplit({"ids": tuple(ids)}, {"index": np.arange(len(ids), dtype=np.int32)}, tuple(meta["buckets"]))


def decode(config: Config, meta: dict, predictions: dict, inputs, coverage: float | None = None) -> dict:
    """``smiles``, ``valid``, ``error`` (why a SMILES was not read) and ``prediction`` (the target's units; NaN for an
    invalid SMILES), or ``probability`` and ``label`` for a 0/1 target; ``lower``/``upper`` or ``set`` with
    ``coverage``."""
    smiles = texts(inputs, "SMILES")
    parsed = [parse(meta, s) for s in smiles]
    valid = np.array([found is not None for found, _ in parsed])
    columns = {"smiles": smiles, "valid": valid, "error": [why for _, why in parsed]}
    if meta["task_type"] == "regression":
        values = np.full(len(smiles), np.nan, np.float32)
        values[valid] = predictions.get("prediction", [])
        columns["prediction"] = values
    else:
        values = np.full((len(smiles), 2), np.nan, np.float32)
        values[valid] = predictions["scores"] if valid.any() else values[valid]
        columns |= {"probability": values[:, 1], "label": np.where(valid, np.nan_to_num(values).argmax(-1), -1)}
        values = np.nan_to_num(values)
    return columns | conformal_columns(config.workdir, coverage, values, ("0", "1"))


def plot_parity(workdir: str | pathlib.Path) -> pathlib.Path:
    """``<workdir>/parity.png``: predicted against true on the test split of a finished regression run, with y = x
    and the test RMSE in the title.

    Raises:
      UserError: the folder has no ``predictions_test.npz`` of a regression run.
    """
    from matplotlib.figure import Figure

    path = pathlib.Path(workdir) / "predictions_test.npz"
    if not path.is_file():
        raise UserError(workdir, "expected the work folder of a finished `medjax train molecules` run, found no "
                                 "predictions_test.npz")
    with np.load(path, allow_pickle=False) as saved:
        if "prediction" not in saved:
            raise UserError(path, "expected the predictions of a regression run, got a classification run's")
        true, pred = saved["true"].astype(np.float64), saved["prediction"].astype(np.float64)
    rmse = regression_figures(true, pred)["rmse"]
    figure = Figure(figsize=(4.5, 4.5), dpi=110)
    axes = figure.subplots()
    axes.scatter(true, pred, s=12, alpha=0.7)
    low, high = min(true.min(), pred.min()), max(true.max(), pred.max())
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="y = x")
    axes.set(xlabel="true", ylabel="predicted", title=f"test RMSE {rmse:.3f} (n = {len(true)})", aspect="equal")
    axes.legend(loc="upper left")
    figure.tight_layout()
    from medjax.train.plots import save_png

    return save_png(figure, pathlib.Path(workdir) / "parity.png")


def plot_workdir(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """`medjax plot`'s molecule figure: the parity plot of a regression run (none for classification)."""
    saved = pathlib.Path(workdir) / "predictions_test.npz"
    if not saved.is_file():
        return []
    with np.load(saved, allow_pickle=False) as predictions:
        regression = "prediction" in predictions
    return [plot_parity(workdir)] if regression else []
