"""Biomedical named-entity recognition on CoNLL/IOB files (NCBI-disease) with a BiLSTM, BiLSTM-CRF or transformer.

`medjax train ner --data-dir ../shared/data/ncbi-disease --model bilstm-crf` trains on ``train.tsv``, selects the
epoch with the best entity F1 on ``devel.tsv`` and reports entity precision, recall and F1 on ``test.tsv`` (seqeval's
default, conlleval-style scoring). The word vocabulary comes from the training split only and is saved in the work
folder (``vocab.json``); character features (UTF-8 bytes) and a case-pattern feature cover the words it misses.

Sentences are batched by length: within chunks of ``sort_chunk`` batches the loop's shuffled order is sorted by
length, and each batch is padded to the smallest of ``buckets`` that fits, so only a few shapes ever compile and
little time goes to padding. Padded tokens never count in the loss or the scores.

Command, expected result and runtime: see experiments/ner/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medjax.data.conll import Sentence, read_conll, tag_names
from medjax.data.vocab import CHAR_VOCAB_SIZE, UNK_ID, Vocabulary, bucket_length, char_ids, pad_batch
from medjax.metrics.entities import entity_prf
from medjax.nn.crf import constrain, crf_log_likelihood, iob2_allowed, viterbi_decode
from medjax.nn.taggers import BiLSTMTagger, TransformerTagger
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig
from medjax.train.losses import masked_mean, softmax_cross_entropy
from medjax.train.task import Task


@dataclasses.dataclass
class Config(TrainConfig):
    workdir: str = "runs/ner"  # where config.json, metrics.jsonl, results.json, vocab.json and checkpoints/ go
    data_dir: str = "../shared/data/ncbi-disease"  # folder with the CoNLL files named below
    train_file: str = "train.tsv"  # training split (the vocabulary comes from it alone)
    val_file: str = "devel.tsv"  # model-selection split
    test_file: str = "test.tsv"  # reported split
    limit: int = 0  # use only the first this many sentences of each split (0: all); for smoke runs
    model: str = "bilstm-crf"  # one of MODELS: bilstm, bilstm-crf, transformer, transformer-crf
    lower: bool = True  # lower-case words before the vocabulary lookup (the case feature keeps what is lost)
    fold_digits: bool = True  # map every digit to 0 before the vocabulary lookup
    min_count: int = 1  # training words rarer than this become <unk>
    embed_dim: int = 100  # word embedding width
    char_features: int = 50  # character-CNN filters per word (0: no character features)
    max_word_len: int = 20  # characters per word seen by the character CNN (longer words keep their start)
    case_feature: bool = True  # add an embedding of each word's case pattern (lower, upper, title, mixed, digits)
    hidden: int = 100  # BiLSTM hidden size per direction
    num_layers: int = 1  # stacked BiLSTM layers
    width: int = 128  # transformer model width
    transformer_layers: int = 2  # transformer encoder blocks
    num_heads: int = 4  # transformer attention heads
    mlp_dim: int = 256  # transformer feed-forward width
    attention_dropout: float = 0.1  # transformer dropout on attention weights, MLP and residual branches
    dropout: float = 0.5  # dropout on the word features and on the encoder outputs
    word_dropout: float = 0.05  # in training, replace each word by <unk> with this probability
    buckets: tuple[int, ...] = (16, 32, 64, 128)  # padded sentence lengths (few shapes, few compilations)
    sort_chunk: int = 50  # sort sentences by length within chunks of this many batches (0: no sorting)
    epochs: int = 15  # passes over the training split
    batch_size: int = 64  # sentences per training step, split over all local devices
    eval_batch_size: int = 128  # sentences per evaluation step
    lr: float = 2e-3  # peak learning rate
    schedule: str = "cosine"  # one of medjax.train.optim.SCHEDULES: constant, cosine, multistep
    clip_norm: float = 5.0  # clip gradients to this global norm; 0 turns clipping off
    constrained_decoding: bool = True  # CRF models: Viterbi keeps to valid IOB2 paths (no I-X after O or after another type)


# Case patterns of a word (id 0 is padding): what lower-casing removes, and whether it is a number.
CASES = ("<pad>", "lower", "upper", "title", "mixed", "digits", "has_digit", "other")


def case_pattern(token: str) -> int:
    """The `CASES` id of a token: ``"cancer"`` lower, ``"BRCA"`` upper, ``"Breast"`` title, ``"mRNA"`` mixed, ..."""
    if token.isdigit():
        return CASES.index("digits")
    if any(c.isdigit() for c in token):
        return CASES.index("has_digit")
    if not any(c.isalpha() for c in token):
        return CASES.index("other")
    if token.islower():
        return CASES.index("lower")
    if token.isupper():
        return CASES.index("upper")
    if token[0].isupper() and token[1:].islower():
        return CASES.index("title")
    return CASES.index("mixed")


def _bilstm(config: Config, vocab_size: int, num_tags: int, crf: bool) -> nn.Module:
    return BiLSTMTagger(
        num_tags, vocab_size, config.embed_dim, config.char_features, len(CASES) if config.case_feature else 0,
        hidden=config.hidden, num_layers=config.num_layers, dropout=config.dropout, word_dropout=config.word_dropout,
        crf=crf,
    )


def _transformer(config: Config, vocab_size: int, num_tags: int, crf: bool) -> nn.Module:
    return TransformerTagger(
        num_tags, vocab_size, config.embed_dim, config.char_features, len(CASES) if config.case_feature else 0,
        width=config.width, num_layers=config.transformer_layers, num_heads=config.num_heads, mlp_dim=config.mlp_dim,
        dropout=config.dropout, attention_dropout=config.attention_dropout, word_dropout=config.word_dropout,
        max_length=max(config.buckets), crf=crf,
    )


# Model name -> (builder, use a CRF).
MODELS = {
    "bilstm": (_bilstm, False),
    "bilstm-crf": (_bilstm, True),
    "transformer": (_transformer, False),
    "transformer-crf": (_transformer, True),
}


class SentenceTagger(nn.Module):
    """Reads the batch dict and calls the tagger (the loop's model contract)."""

    tagger: nn.Module

    def __call__(self, batch, train: bool = False) -> dict:
        """``batch["words"]``, ``"mask"`` and, if present, ``"chars"``, ``"case"`` -> the tagger's outputs dict."""
        return self.tagger(batch["words"], batch["mask"], batch.get("chars"), batch.get("case"), train=train)


@dataclasses.dataclass(frozen=True)
class TaggedSplit:
    """One split's sentences as id arrays; batches group sentences of similar length and pad to a bucket.

    Attributes:
      words: per sentence, ``int32[n]`` word ids.
      tags: per sentence, ``int32[n]`` IOB2 tag ids.
      chars: per sentence, ``int32[n, max_word_len]`` character ids, or None (no character features).
      case: per sentence, ``int32[n]`` case-pattern ids, or None.
      buckets: allowed padded lengths, ascending.
      sort_chunk: sort by length within chunks of this many batches (0: keep the given order).
    """

    words: tuple[np.ndarray, ...]
    tags: tuple[np.ndarray, ...]
    chars: tuple[np.ndarray, ...] | None
    case: tuple[np.ndarray, ...] | None
    buckets: tuple[int, ...]
    sort_chunk: int

    def __len__(self) -> int:
        return len(self.words)

    def _groups(self, batch_size: int, order: np.ndarray) -> list[np.ndarray]:
        if not self.sort_chunk:
            return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        lengths = np.array([len(w) for w in self.words])
        chunk = batch_size * self.sort_chunk
        groups = []
        # Chunks are whole numbers of batches, so only the split's very last batch can be short.
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            groups += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        # Sorting made batches short-to-long within each chunk; shuffle the batches with the order itself (a random
        # permutation in training, the identity for evaluation), so no new source of randomness is needed.
        return [groups[i] for i in np.argsort(order[: len(groups)], kind="stable")]

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``{"words", "mask", "tags", "index"}`` (+ ``"chars"``, ``"case"``) padded to a bucket length T.

        ``words``, ``tags``, ``case``: int32[b, T]; ``mask``: bool[b, T]; ``chars``: int32[b, T, max_word_len];
        ``index``: int32[b], each sentence's position in its file.
        """
        order = np.arange(len(self)) if order is None else np.asarray(order)
        for chosen in self._groups(batch_size, order):
            words, mask = pad_batch([self.words[i] for i in chosen], bucket=self.buckets)
            tags, _ = pad_batch([self.tags[i] for i in chosen], bucket=self.buckets)
            batch = {"words": words, "mask": mask, "tags": tags, "index": chosen.astype(np.int32)}
            if self.chars is not None:
                batch["chars"], _ = pad_batch([self.chars[i] for i in chosen], bucket=self.buckets)
            if self.case is not None:
                batch["case"], _ = pad_batch([self.case[i] for i in chosen], bucket=self.buckets)
            yield batch


def encode_split(sentences: Sequence[Sentence], vocab: Vocabulary, tags: Sequence[str], config: Config) -> TaggedSplit:
    """Turns sentences into a `TaggedSplit` (word, tag, character and case ids as the config asks)."""
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    encoded_tags = []
    for number, sentence in enumerate(sentences):
        unknown = sorted(set(sentence.tags) - set(tag_ids))
        if unknown:
            raise ValueError(f"sentence {number} has tags {unknown} that the training split lacks; known: {list(tags)}")
        encoded_tags.append(np.array([tag_ids[t] for t in sentence.tags], np.int32))
    chars = case = None
    if config.char_features:
        chars = tuple(char_ids(s.tokens, config.max_word_len) for s in sentences)
    if config.case_feature:
        case = tuple(np.array([case_pattern(t) for t in s.tokens], np.int32) for s in sentences)
    words = tuple(vocab.encode(s.tokens) for s in sentences)
    return TaggedSplit(words, tuple(encoded_tags), chars, case, tuple(sorted(config.buckets)), config.sort_chunk)


def load_vocabulary(config: Config, train: Sequence[Sentence]) -> tuple[Vocabulary, list[str]]:
    """The word vocabulary and tag names of the training split, reused from ``<workdir>/vocab.json`` if it was
    built with the same data and options (so `medjax evaluate` sees the ids the model was trained with)."""
    options = {"data_dir": str(pathlib.Path(config.data_dir).resolve()), "train_file": config.train_file,
               "limit": config.limit, "min_count": config.min_count,
               "lower": config.lower, "fold_digits": config.fold_digits}
    path = pathlib.Path(config.workdir) / "vocab.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("options") == options:
            return Vocabulary.from_json(saved["words"]), list(saved["tags"])
    vocab = Vocabulary.build((s.tokens for s in train), min_count=config.min_count, lower=config.lower,
                             fold_digits=config.fold_digits)
    tags = tag_names(train)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"options": options, "words": vocab.to_json(), "tags": tags}))
    return vocab, tags


def _token_mask(batch) -> jax.Array:
    return batch["mask"] & batch["example_mask"][:, None]


def _loss(outputs, batch) -> tuple[jax.Array, dict]:
    """CRF: mean negative log-likelihood per sentence; softmax: mean cross-entropy per real token."""
    mask = _token_mask(batch)
    sentences = jnp.sum(batch["example_mask"])
    if "crf" in outputs:
        log_likelihood = crf_log_likelihood(outputs["emissions"], batch["tags"], mask, **outputs["crf"])
        loss = masked_mean(-log_likelihood, batch["example_mask"])
        return loss, {"loss": loss * sentences, "count": sentences}
    loss = softmax_cross_entropy(outputs["emissions"], batch["tags"], where=mask)
    tokens = jnp.sum(mask)
    return loss, {"loss": loss * tokens, "count": tokens}


def _predict(outputs, batch, width: int, allowed=None) -> dict:
    """Decoded and gold tag ids, ``int32[b, width]`` with -1 past each sentence, and each sentence's ``index``.

    The keys are not ``pred`` / ``labels``: those name per-example classes, which `medjax plot` turns into a
    confusion matrix, and the -1 padding of per-token tags is not a class.
    """
    mask = batch["mask"]
    if "crf" in outputs:
        scores = outputs["crf"] if allowed is None else constrain(outputs["crf"], allowed)
        pred, _ = viterbi_decode(outputs["emissions"], mask, **scores)
    else:
        pred = jnp.where(mask, jnp.argmax(outputs["emissions"], axis=-1), -1)
    labels = jnp.where(mask, batch["tags"], -1)
    # Batches come in several bucket lengths; one common width lets the loop concatenate a split's predictions.
    pad = ((0, 0), (0, width - mask.shape[1]))
    return {"pred_tags": jnp.pad(pred.astype(jnp.int32), pad, constant_values=-1),
            "gold_tags": jnp.pad(labels.astype(jnp.int32), pad, constant_values=-1),
            "index": batch["index"]}


def score_tags(predictions, tags: Sequence[str]) -> dict[str, float]:
    """Entity precision/recall/F1 (and token accuracy) from `_predict`'s padded ``pred_tags`` and ``gold_tags``."""
    pred, labels = np.asarray(predictions["pred_tags"]), np.asarray(predictions["gold_tags"])
    true_tags, pred_tags = [], []
    for guess, truth in zip(pred, labels):
        real = truth >= 0
        true_tags.append([tags[i] for i in truth[real]])
        pred_tags.append([tags[i] for i in guess[real]])
    metrics = entity_prf(true_tags, pred_tags)
    metrics["token_accuracy"] = float(np.mean(pred[labels >= 0] == labels[labels >= 0]))
    return metrics


def build_task(config: Config) -> Task:
    """Reads the three CoNLL files, builds (or reloads) the training vocabulary and the tagger named in config."""
    if config.model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {config.model!r}")
    if not config.buckets or min(config.buckets) < 1:
        raise ValueError(f"buckets must be positive lengths, got {config.buckets}")
    data_dir = pathlib.Path(config.data_dir)
    sentences = {name: read_conll(data_dir / file) for name, file in
                 (("train", config.train_file), ("val", config.val_file), ("test", config.test_file))}
    if config.limit:
        sentences = {name: split[: config.limit] for name, split in sentences.items()}
    longest = {name: max(len(s.tokens) for s in split) for name, split in sentences.items()}
    if max(longest.values()) > max(config.buckets):
        raise ValueError(f"the longest sentences have {longest} tokens; the largest bucket {max(config.buckets)} must "
                         f"hold them (add a larger size to --buckets)")
    vocab, tags = load_vocabulary(config, sentences["train"])
    splits = {name: encode_split(split, vocab, tags, config) for name, split in sentences.items()}
    builder, crf = MODELS[config.model]
    width = bucket_length(max(longest.values()), sorted(config.buckets))

    spec = {
        "words": ArraySpec("i", rank=2, low=0, high=len(vocab)),
        "mask": ArraySpec("b", rank=2),
        "tags": ArraySpec("i", rank=2, low=0, high=len(tags), mask="mask"),
        "index": ArraySpec("i", rank=1, low=0),
    }
    if config.char_features:
        spec["chars"] = ArraySpec("i", rank=3, low=0, high=CHAR_VOCAB_SIZE)
    if config.case_feature:
        spec["case"] = ArraySpec("i", rank=2, low=0, high=len(CASES))
    oov = {name: float(np.mean(np.concatenate(split.words) == UNK_ID)) for name, split in splits.items()}
    return Task(
        name="ner",
        model=SentenceTagger(builder(config, len(vocab), len(tags), crf)),
        splits=splits,
        loss=_loss,
        predict=functools.partial(_predict, width=width,
                                  allowed=iob2_allowed(tags) if config.constrained_decoding else None),
        score=functools.partial(score_tags, tags=tags),
        select_metric="f1",
        describe={"tags": tags, "vocab_size": len(vocab), "unknown_word_rate": oov,
                  "sentences": {name: len(split) for name, split in sentences.items()}},
        class_names=tuple(tags),
        batch_spec=spec,
    )
