"""Medical abstract classification (5 disease classes) with an LSTM or an attention classifier, beside TF-IDF + LR.

`medjax train textclf --model lstm` trains on the seeded, stratified 80/10/10 split of the corpus's 2,888 abstracts
(`medjax.data.abstracts.split`), selects the epoch on validation macro-F1 and reports accuracy and macro-F1 on test.
In the same command a TF-IDF + logistic-regression baseline (scikit-learn; its C chosen on validation macro-F1) is
fitted on the same training abstracts and scored on exactly the examples the model is scored on: its figures appear
in every metrics line and in results.json as ``baseline_accuracy`` / ``baseline_macro_f1`` (``test_baseline_...`` on
test), so the model's figures are always read beside the anchor they must beat.

Command, expected result and runtime: see experiments/textclf/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import abstracts
from medjax.data.splits import SequenceSplit, length_buckets
from medjax.data.vocab import Vocabulary, tokenize
from medjax.errors import ConfigError
from medjax.metrics.classification import accuracy, macro_f1
from medjax.nn.text_classifiers import LSTMTextClassifier, TransformerTextClassifier
from medjax.tasks.common import class_columns, conformal_columns, softmax_head, split_fractions, texts, vocabulary
from medjax.train import precision
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.losses import softmax_cross_entropy
from medjax.train.metrics import Mean
from medjax.train.task import FromBatch, FromOutputs, Task

MODELS = ("lstm", "transformer", "attention")


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    workdir: str = option("runs/textclf", "where config.json, metrics.jsonl, results.json and checkpoints/ go")
    data_dir: str = option("../shared/data/medical-abstracts-tc", "folder with medical_tc_test.csv and "
                                                                  "medical_tc_labels.csv")
    model: str = option("lstm", "lstm (BiLSTM), transformer (encoder blocks), attention (one attention layer)",
                        choices=MODELS)
    split_seed: int = option(0, "seeds the train/val/test split (independent of the training seed)", minimum=0)
    val_fraction: float = option(0.1, "share of the abstracts held out for model selection", above=0.0)
    test_fraction: float = option(0.1, "share of the abstracts held out for the final score", above=0.0)
    limit: int = option(0, "use at most this many abstracts per split (0: all); for smoke runs", minimum=0)
    lower: bool = option(True, "lower-case tokens before the vocabulary lookup")
    fold_digits: bool = option(True, "map every digit to 0 before the vocabulary lookup")
    min_count: int = option(2, "training-split words rarer than this become <unk>", minimum=1)
    max_length: int = option(0, "keep the first this many tokens of an abstract, counting what is cut (0: all)",
                             minimum=0)
    buckets: tuple[int, ...] = option((), "padded document lengths (empty: powers of two from 64 up to the longest "
                                          "document)", minimum=1)
    sort_chunk: int = option(20, "sort documents by length within chunks of this many batches (0: no sorting)",
                             minimum=0)
    embed_dim: int = option(64, "word embedding width (the model width of the attention models)", minimum=1)
    hidden: int = option(64, "LSTM state size per direction", minimum=1)
    num_layers: int = option(1, "LSTM layers, or transformer encoder blocks", minimum=1)
    num_heads: int = option(4, "attention heads", minimum=1)
    mlp_dim: int = option(128, "transformer feed-forward width", minimum=1)
    pooling: str = option("mean", "LSTM: how the outputs become one vector", choices=("mean", "max", "last"))
    positions: str = option("sinusoidal", "transformer: position encoding", choices=("sinusoidal", "learned", "none"))
    dropout: float = option(0.5, "dropout on embeddings, between layers and on the pooled vector", minimum=0.0)
    baseline: bool = option(True, "also fit and score the TF-IDF + logistic-regression baseline")
    epochs: int = option(20, "passes over the training split", minimum=1)
    batch_size: int = option(32, "examples per training step, split over all local devices", minimum=1)
    lr: float = option(2e-3, "peak learning rate", above=0.0)
    optimizer: str = option("adamw", "the optimizer", choices=("adam", "adamw", "sgd"))
    weight_decay: float = option(1e-4, "decoupled weight decay (adamw) or L2 (adam, sgd)", minimum=0.0)
    schedule: str = option("cosine", "the learning-rate schedule", choices=("constant", "cosine", "multistep"))
    clip_norm: float = option(1.0, "clip gradients to this global norm; 0 turns clipping off", minimum=0.0)


def smoke_config(**overrides: Any) -> Config:
    """A seconds-long run of the same pipeline: 40 abstracts per split, short documents, a tiny model, one epoch."""
    small = {"limit": 40, "epochs": 1, "batch_size": 8, "eval_batch_size": 8, "max_length": 48, "buckets": (48,),
             "embed_dim": 16, "hidden": 16, "mlp_dim": 16, "num_heads": 2, "progress": False}
    return Config(**{**small, **overrides})


@precision.follows_config
def build_model(config: Config, meta: dict):
    """The classifier of a run, from its config and meta (vocabulary, classes, buckets)."""
    return build_classifier(config, len(meta["vocab"]["tokens"]), len(meta["class_names"]), meta["buckets"][-1])


def inference(config: Config, meta: dict):
    return FromOutputs(softmax_head)


def build_classifier(config: Config, vocab_size: int, num_classes: int, max_length: int):
    """The classifier named by ``config.model``, reading ``ids`` and ``mask`` from the batch."""
    if config.model == "lstm":
        module = LSTMTextClassifier(vocab_size, num_classes, config.embed_dim, config.hidden, config.num_layers,
                                    bidirectional=True, dropout=config.dropout, pooling=config.pooling)
    else:
        layers = 0 if config.model == "attention" else config.num_layers
        module = TransformerTextClassifier(vocab_size, num_classes, config.embed_dim, layers, config.num_heads,
                                           config.mlp_dim, config.dropout,
                                           None if config.positions == "none" else config.positions, max_length)
    return FromBatch(module, ("ids", "mask"))


def encode_texts(vocab: Vocabulary, texts: Sequence[str], max_length: int = 0) -> tuple[np.ndarray, ...]:
    """Tokenizes and encodes each text, keeping its first ``max_length`` tokens when that is set (an empty text keeps
    one ``<unk>`` so that no document has zero valid steps)."""
    encoded = []
    for text in texts:
        tokens = tokenize(text)
        ids = vocab.encode(tokens[:max_length] if max_length else tokens)
        encoded.append(ids if ids.size else np.ones(1, np.int32))
    return tuple(encoded)


def fit_tfidf_baseline(train_texts, train_labels, val_texts, val_labels, seed: int = 0,
                       ngram_grid: Sequence[tuple[int, int]] = ((1, 1), (1, 2)),
                       c_grid: Sequence[float] = (3.0, 10.0, 30.0, 100.0)):
    """TF-IDF (sublinear tf, words seen in >= 2 abstracts) + multinomial logistic regression.

    The n-gram range and the inverse regularisation C are chosen on validation macro-F1, as the neural models' epoch
    is, so the anchor is tuned as fairly as the models it is compared with.

    Returns:
      ``(pipeline, choice)``: the fitted scikit-learn pipeline (``predict(texts)``, ``named_steps``) and
      ``{"ngram_range", "C", "val_macro_f1"}`` of the setting kept.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    best = None
    for ngram_range in ngram_grid:
        tfidf = TfidfVectorizer(ngram_range=ngram_range, min_df=2, sublinear_tf=True)
        train_x, val_x = tfidf.fit_transform(list(train_texts)), tfidf.transform(list(val_texts))
        for c in c_grid:
            # newton-cg converges in a handful of iterations here; lbfgs needed ~90 and was 10x slower.
            classifier = LogisticRegression(C=c, solver="newton-cg", max_iter=1000, random_state=seed)
            classifier.fit(train_x, train_labels)
            f1 = macro_f1(val_labels, classifier.predict(val_x))
            if best is None or f1 > best[0]:
                best = (f1, Pipeline([("tfidf", tfidf), ("logreg", classifier)]), ngram_range, c)
    f1, pipeline, ngram_range, c = best
    return pipeline, {"ngram_range": ngram_range, "C": c, "val_macro_f1": f1}


def loss(logits: jax.Array, batch):
    where = batch["example_mask"]
    value = softmax_cross_entropy(logits, batch["label"], where=where)
    return value, {"accuracy": Mean.of(jnp.argmax(logits, axis=-1) == batch["label"], where=where)}


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The abstracts, their split and the vocabulary built from the training split (deterministic given the config).

    Attributes:
      abstracts: every abstract of the file.
      parts: ``{"train" | "val" | "test": int64[n_split]}`` row indices into ``abstracts``.
      vocab: built from the training abstracts only.
    """

    abstracts: abstracts.Abstracts
    parts: dict[str, np.ndarray]
    vocab: Vocabulary

    def texts(self, split: str) -> list[str]:
        return [self.abstracts.texts[i] for i in self.parts[split]]

    def labels(self, split: str) -> np.ndarray:
        return self.abstracts.labels[self.parts[split]]


def load_corpus(config: Config, vocab: Vocabulary | None = None) -> Corpus:
    """Reads and splits the corpus and builds the vocabulary from the training split (or takes ``vocab``, a run's),
    as `build_task` does."""
    corpus = abstracts.load(config.data_dir)
    parts = abstracts.split(corpus, split_fractions(config), seed=config.split_seed)
    if config.limit:
        parts = {name: rows[: config.limit] for name, rows in parts.items()}
    vocab = vocab or Vocabulary.build((tokenize(corpus.texts[i]) for i in parts["train"]),
                                      min_count=config.min_count, lower=config.lower, fold_digits=config.fold_digits)
    return Corpus(corpus, parts, vocab)


def build_task(config: Config, meta: dict | None = None) -> Task:
    """Reads and splits the corpus, builds the vocabulary from the training split (or takes the run's, from
    ``meta``), and the model named in config."""
    data = load_corpus(config, vocabulary(meta) if meta else None)
    corpus, parts, vocab = data.abstracts, data.parts, data.vocab
    ids = {name: encode_texts(vocab, data.texts(name)) for name in parts}
    if config.max_length:
        cut = {name: sum(len(doc) > config.max_length for doc in docs) for name, docs in ids.items()}
        if any(cut.values()):
            print(f"--max-length {config.max_length} truncates " + ", ".join(f"{n} {name} abstracts"
                                                                              for name, n in cut.items()), file=sys.stderr)
        ids = {name: tuple(doc[:config.max_length] for doc in docs) for name, docs in ids.items()}
    longest = max(len(doc) for docs in ids.values() for doc in docs)
    buckets = tuple(meta["buckets"]) if meta else tuple(sorted(config.buckets)) or length_buckets([longest],
                                                                                                   smallest=64)
    if longest > buckets[-1]:
        raise ConfigError("--buckets", f"expected a largest bucket of at least {longest} tokens (the longest "
                                       f"abstract), got {buckets[-1]}; leave --buckets empty or set --max-length")
    splits = {name: SequenceSplit({"ids": ids[name]}, {"label": data.labels(name), "index": rows.astype(np.int32)},
                                  buckets, config.sort_chunk)
              for name, rows in parts.items()}
    num_classes = len(corpus.class_names)

    # Fitted on first use only: `medjax keywords` and `evaluate` rebuild the task without needing it.
    @functools.cache
    def baseline_predictions() -> np.ndarray:
        pipeline, choice = fit_tfidf_baseline(data.texts("train"), data.labels("train"), data.texts("val"),
                                         data.labels("val"), seed=config.seed)
        pred = pipeline.predict(list(corpus.texts))
        figures = {n: macro_f1(corpus.labels[r], pred[r], num_classes) for n, r in parts.items()}
        print(f"TF-IDF + logistic regression baseline ({choice['ngram_range']}-grams, C={choice['C']:g}): macro-F1 "
              + ", ".join(f"{n} {f:.4f}" for n, f in figures.items()), flush=True)
        return pred

    def score(predictions) -> dict[str, float]:
        labels, pred = np.asarray(predictions["labels"]), np.asarray(predictions["pred"])
        metrics = {"accuracy": accuracy(labels, pred), "macro_f1": macro_f1(labels, pred, num_classes)}
        if config.baseline:
            base = baseline_predictions()[np.asarray(predictions["index"])]
            metrics["baseline_accuracy"] = accuracy(labels, base)
            metrics["baseline_macro_f1"] = macro_f1(labels, base, num_classes)
        return metrics

    meta = meta or {"vocab": json.loads(vocab.to_json()), "class_names": list(corpus.class_names),
                    "buckets": list(buckets)}
    return Task(
        name="textclf",
        model=build_model(config, meta),
        splits=splits,
        loss=loss,
        predict=inference(config, meta),
        score=score,
        select_metric="macro_f1",
        describe={
            "class_names": list(corpus.class_names),
            "vocab_size": len(vocab),
            "split_sizes": {name: len(rows) for name, rows in parts.items()},
            "split_class_counts": abstracts.class_counts(corpus, parts),
            "buckets": list(buckets),
        },
        class_names=tuple(corpus.class_names),
        batch_spec={
            "ids": ArraySpec("i", rank=2, low=0, high=len(vocab), mask="mask"),
            "mask": ArraySpec("b", rank=2),
            "label": ArraySpec("i", rank=1, low=0, high=num_classes),
            "index": ArraySpec("i", rank=1, low=0, high=len(corpus)),
        },
        meta=meta,
    )


def read_inputs(arguments: list[str]) -> list[str]:
    """`medjax predict`'s arguments: one text (abstract) each."""
    return arguments


def encode(config: Config, meta: dict, inputs) -> SequenceSplit:
    """Texts as a run's batches: tokens looked up in its vocabulary, cut to ``--max-length`` (or the longest bucket
    the model was built for; the cut is counted on stderr)."""
    documents = texts(inputs)
    longest = min(config.max_length or meta["buckets"][-1], meta["buckets"][-1])
    ids = encode_texts(vocabulary(meta), documents)
    cut = sum(len(doc) > longest for doc in ids)
    if cut:
        print(f"{cut} of {len(ids)} texts cut to {longest} tokens (what the model was built for)", file=sys.stderr)
    return SequenceSplit({"ids": tuple(doc[:longest] for doc in ids)},
                         {"index": np.arange(len(ids), dtype=np.int32)}, tuple(meta["buckets"]))



def decode(config: Config, meta: dict, predictions: dict, inputs, coverage: float | None = None) -> dict:
    """``probabilities`` f32[n, classes], ``label`` and ``class`` (and ``set`` with ``coverage``)."""
    return (class_columns(predictions["scores"], meta["class_names"])
            | conformal_columns(config.workdir, coverage, predictions["scores"], meta["class_names"]))
