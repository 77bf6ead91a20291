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
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import abstracts
from medjax.data.vocab import Vocabulary, pad_batch, tokenize
from medjax.metrics.classification import accuracy, macro_f1
from medjax.nn.text_classifiers import LSTMTextClassifier, TransformerTextClassifier
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig
from medjax.train.losses import softmax_cross_entropy
from medjax.train.task import Task


@dataclasses.dataclass
class Config(TrainConfig):
    workdir: str = "runs/textclf"  # where config.json, metrics.jsonl, results.json and checkpoints/ go
    data_dir: str = "../shared/data/medical-abstracts-tc"  # folder with medical_tc_test.csv and medical_tc_labels.csv
    model: str = "lstm"  # one of MODELS: lstm (BiLSTM), transformer (encoder blocks), attention (one attention layer)
    split_seed: int = 0  # seeds the train/val/test split (independent of the training seed)
    val_fraction: float = 0.1  # share of the abstracts held out for model selection
    test_fraction: float = 0.1  # share of the abstracts held out for the final score
    limit: int = 0  # use at most this many abstracts per split (0: all); for smoke runs
    lower: bool = True  # lower-case tokens before the vocabulary lookup
    fold_digits: bool = True  # map every digit to 0 before the vocabulary lookup
    min_count: int = 2  # training-split words rarer than this become <unk>
    max_length: int = 320  # keep the first this many tokens of an abstract
    bucket: int = 64  # pad each batch's length up to a multiple of this (few shapes, few compilations)
    embed_dim: int = 64  # word embedding width (the model width of the attention models)
    hidden: int = 64  # LSTM state size per direction
    num_layers: int = 1  # LSTM layers, or transformer encoder blocks
    num_heads: int = 4  # attention heads
    mlp_dim: int = 128  # transformer feed-forward width
    pooling: str = "mean"  # LSTM: mean, max or last
    positions: str = "sinusoidal"  # transformer: sinusoidal, learned or none
    dropout: float = 0.5  # dropout on embeddings, between layers and on the pooled vector
    baseline: bool = True  # also fit and score the TF-IDF + logistic-regression baseline
    epochs: int = 20  # passes over the training split
    batch_size: int = 32  # examples per training step, split over all local devices
    lr: float = 2e-3  # peak learning rate
    optimizer: str = "adamw"  # one of medjax.train.optim.OPTIMIZERS: adam, adamw, sgd
    weight_decay: float = 1e-4  # decoupled weight decay (adamw) or L2 (sgd)
    schedule: str = "cosine"  # one of medjax.train.optim.SCHEDULES: constant, cosine, multistep
    clip_norm: float = 1.0  # clip gradients to this global norm; 0 turns clipping off


def smoke_config(**overrides: Any) -> Config:
    """A seconds-long run of the same pipeline: 40 abstracts per split, short documents, a tiny model, one epoch."""
    small = {"limit": 40, "epochs": 1, "batch_size": 8, "eval_batch_size": 8, "max_length": 48, "bucket": 48,
             "embed_dim": 16, "hidden": 16, "mlp_dim": 16, "num_heads": 2, "progress": False}
    return Config(**{**small, **overrides})


def _lstm(config: Config, vocab_size: int, num_classes: int) -> nn.Module:
    return LSTMTextClassifier(vocab_size, num_classes, config.embed_dim, config.hidden, config.num_layers,
                              bidirectional=True, dropout=config.dropout, pooling=config.pooling)


def _transformer(config: Config, vocab_size: int, num_classes: int, num_layers: int | None = None) -> nn.Module:
    positions = None if config.positions == "none" else config.positions
    return TransformerTextClassifier(vocab_size, num_classes, config.embed_dim,
                                     config.num_layers if num_layers is None else num_layers, config.num_heads,
                                     config.mlp_dim, config.dropout, positions, config.max_length)


MODELS = {"lstm": _lstm, "transformer": _transformer, "attention": functools.partial(_transformer, num_layers=0)}


class DocumentClassifier(nn.Module):
    """Reads ``ids`` and ``mask`` from the batch dict and calls the classifier (the loop's model contract)."""

    classifier: nn.Module

    def __call__(self, batch, train: bool = False) -> jax.Array:
        """``batch["ids"]: int32[batch, time]``, ``batch["mask"]: bool[batch, time]`` -> ``f32[batch, classes]``."""
        return self.classifier(batch["ids"], batch["mask"], train=train)


@dataclasses.dataclass(frozen=True)
class TextSplit:
    """Encoded abstracts of one split; batches are padded to a length bucket with a token mask.

    Attributes:
      ids: per document, its token ids ``int32[n_tokens]`` (already truncated to ``max_length``).
      labels: ``int32[n]`` class indices.
      rows: ``int32[n]`` each document's row in the corpus file (ties the baseline's predictions to it).
      bucket: lengths are rounded up to a multiple of this.
    """

    ids: tuple[np.ndarray, ...]
    labels: np.ndarray
    rows: np.ndarray
    bucket: int

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``{"ids", "mask", "label", "index"}`` with ``ids: int32[b, T]``, ``mask: bool[b, T]``."""
        order = np.arange(len(self)) if order is None else np.asarray(order)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            ids, mask = pad_batch([self.ids[i] for i in chosen], bucket=self.bucket)
            yield {"ids": ids, "mask": mask, "label": self.labels[chosen], "index": self.rows[chosen]}


def encode_texts(vocab: Vocabulary, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, ...]:
    """Tokenizes, truncates to the first ``max_length`` tokens and encodes each text (an empty text keeps one
    ``<unk>`` so that no document has zero valid steps)."""
    encoded = []
    for text in texts:
        ids = vocab.encode(tokenize(text)[:max_length])
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


def _loss(logits: jax.Array, batch) -> tuple[jax.Array, dict]:
    where = batch["example_mask"]
    loss = softmax_cross_entropy(logits, batch["label"], where=where)
    # Per-batch sum; the loop divides by the epoch's valid examples, giving the training accuracy.
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == batch["label"]) & where)
    return loss, {"accuracy": correct}


def _predict(logits: jax.Array, batch) -> dict:
    return {"scores": jax.nn.softmax(logits, axis=-1), "pred": jnp.argmax(logits, axis=-1).astype(jnp.int32),
            "labels": batch["label"], "index": batch["index"]}


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


def load_corpus(config: Config) -> Corpus:
    """Reads and splits the corpus and builds the vocabulary from the training split, as `build_task` does."""
    corpus = abstracts.load(config.data_dir)
    train_share = 1.0 - config.val_fraction - config.test_fraction
    parts = abstracts.split(corpus, (train_share, config.val_fraction, config.test_fraction), seed=config.split_seed)
    if config.limit:
        parts = {name: rows[: config.limit] for name, rows in parts.items()}
    vocab = Vocabulary.build((tokenize(corpus.texts[i]) for i in parts["train"]), min_count=config.min_count,
                             lower=config.lower, fold_digits=config.fold_digits)
    return Corpus(corpus, parts, vocab)


def build_task(config: Config) -> Task:
    """Reads and splits the corpus, builds the vocabulary from the training split, and the model named in config."""
    if config.model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {config.model!r}")
    if config.max_length < 1 or config.bucket < 1:
        raise ValueError(f"max_length and bucket must be >= 1, got {config.max_length} and {config.bucket}")
    data = load_corpus(config)
    corpus, parts, vocab = data.abstracts, data.parts, data.vocab
    splits = {
        name: TextSplit(encode_texts(vocab, data.texts(name), config.max_length), data.labels(name),
                        rows.astype(np.int32), config.bucket)
        for name, rows in parts.items()
    }
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

    return Task(
        name="textclf",
        model=DocumentClassifier(MODELS[config.model](config, len(vocab), num_classes)),
        splits=splits,
        loss=_loss,
        predict=_predict,
        score=score,
        select_metric="macro_f1",
        describe={
            "class_names": list(corpus.class_names),
            "vocab_size": len(vocab),
            "split_sizes": {name: len(rows) for name, rows in parts.items()},
            "split_class_counts": abstracts.class_counts(corpus, parts),
        },
        class_names=tuple(corpus.class_names),
        batch_spec={
            "ids": ArraySpec("i", rank=2, low=0, high=len(vocab), mask="mask"),
            "mask": ArraySpec("b", rank=2),
            "label": ArraySpec("i", rank=1, low=0, high=num_classes),
            "index": ArraySpec("i", rank=1, low=0, high=len(corpus)),
        },
    )
