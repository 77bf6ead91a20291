"""Biomedical named-entity recognition on CoNLL/IOB files (NCBI-disease) with a BiLSTM, BiLSTM-CRF or transformer.

`medjax train ner --data-dir ../shared/data/ncbi-disease --model bilstm-crf` trains on ``train.tsv``, selects the
epoch with the best entity F1 on ``devel.tsv`` and reports entity precision, recall and F1 on ``test.tsv`` (seqeval's
default, conlleval-style scoring). The word vocabulary comes from the training split only and is saved in the work
folder (``vocab.json``); character features (UTF-8 bytes) and a case-pattern feature cover the words it misses.

Sentences are batched by length: within chunks of ``sort_chunk`` batches the loop's shuffled order is sorted by
length, and each batch is padded to the smallest of ``buckets`` that fits (by default powers of two up to the longest
sentence of the corpus, so any valid corpus trains), so only a few shapes ever compile and little time goes to
padding. Padded tokens never count in the loss or the scores. ``--max-length`` truncates, and says how many
sentences it cut.

Command, expected result and runtime: see experiments/ner/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import sys
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from medjax.data.conll import Sentence, read_conll, tag_names
from medjax.data.splits import SequenceSplit, length_buckets
from medjax.data.vocab import CHAR_VOCAB_SIZE, UNK_ID, Vocabulary, char_ids
from medjax.errors import DataError, where
from medjax.metrics.entities import entity_prf
from medjax.nn.crf import constrain, crf_log_likelihood, iob2_allowed, viterbi_decode
from medjax.nn.taggers import BiLSTMTagger, TransformerTagger
from medjax.tasks.common import vocabulary
from medjax.train import precision
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.losses import masked_mean, softmax_cross_entropy
from medjax.train.metrics import Mean
from medjax.train.task import FromBatch, FromOutputs, Task

# Model name -> (tagger class, use a CRF).
MODELS = {
    "bilstm": (BiLSTMTagger, False),
    "bilstm-crf": (BiLSTMTagger, True),
    "transformer": (TransformerTagger, False),
    "transformer-crf": (TransformerTagger, True),
}


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    workdir: str = option("runs/ner", "where config.json, metrics.jsonl, results.json, vocab.json and checkpoints/ go")
    data_dir: str = option("../shared/data/ncbi-disease", "folder with the CoNLL files named below")
    train_file: str = option("train.tsv", "training split (the vocabulary comes from it alone)")
    val_file: str = option("devel.tsv", "model-selection split")
    test_file: str = option("test.tsv", "reported split")
    limit: int = option(0, "use only the first this many sentences of each split (0: all); for smoke runs", minimum=0)
    model: str = option("bilstm-crf", "the tagger", choices=tuple(MODELS))
    lower: bool = option(True, "lower-case words before the vocabulary lookup (the case feature keeps what is lost)")
    fold_digits: bool = option(True, "map every digit to 0 before the vocabulary lookup")
    min_count: int = option(1, "training words rarer than this become <unk>", minimum=1)
    embed_dim: int = option(100, "word embedding width", minimum=1)
    char_features: int = option(50, "character-CNN filters per word (0: no character features)", minimum=0)
    max_word_len: int = option(20, "characters per word seen by the character CNN (longer words keep their start)",
                               minimum=1)
    case_feature: bool = option(True, "add an embedding of each word's case pattern (lower, upper, title, ...)")
    hidden: int = option(100, "BiLSTM hidden size per direction", minimum=1)
    num_layers: int = option(1, "stacked BiLSTM layers", minimum=1)
    width: int = option(128, "transformer model width", minimum=1)
    transformer_layers: int = option(2, "transformer encoder blocks", minimum=1)
    num_heads: int = option(4, "transformer attention heads", minimum=1)
    mlp_dim: int = option(256, "transformer feed-forward width", minimum=1)
    attention_dropout: float = option(0.1, "transformer dropout on attention weights, MLP and residual branches",
                                      minimum=0.0)
    dropout: float = option(0.5, "dropout on the word features and on the encoder outputs", minimum=0.0)
    word_dropout: float = option(0.05, "in training, replace each word by <unk> with this probability", minimum=0.0)
    buckets: tuple[int, ...] = option((), "padded sentence lengths (empty: powers of two from 16 up to the longest "
                                          "sentence)", minimum=1)
    max_length: int = option(0, "truncate sentences to this many tokens, counting what is cut (0: never)", minimum=0)
    sort_chunk: int = option(50, "sort sentences by length within chunks of this many batches (0: no sorting)",
                             minimum=0)
    epochs: int = option(15, "passes over the training split", minimum=1)
    batch_size: int = option(64, "sentences per training step, split over all local devices", minimum=1)
    eval_batch_size: int = option(128, "sentences per evaluation step", minimum=1)
    lr: float = option(2e-3, "peak learning rate", above=0.0)
    schedule: str = option("cosine", "the learning-rate schedule", choices=("constant", "cosine", "multistep"))
    clip_norm: float = option(5.0, "clip gradients to this global norm; 0 turns clipping off", minimum=0.0)
    # Runs made before this option existed decoded without constraints.
    constrained_decoding: bool = option(True, "CRF models: Viterbi keeps to valid IOB2 paths (no I-X after O or "
                                              "after another type)", missing=False)


# Case patterns of a word (id 0 is padding): what lower-casing removes, and whether it is a number.
CASES = ("<pad>", "lower", "upper", "title", "mixed", "digits", "has_digit", "other")


def published_rows(config: dict) -> list[dict]:
    """The published row beside which `medjax report --html` shows an NCBI-disease run."""
    if "ncbi" not in str(config.get("data_dir", "")):
        return []
    return [{"label": "BiLSTM-CRF, Crichton et al. 2017", "test_f1": 0.804}]


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


@precision.follows_config
def build_model(config: Config, meta: dict):
    """The tagger of a run, from its config and meta (vocabulary, tags, buckets)."""
    return build_tagger(config, len(meta["vocab"]["tokens"]), len(meta["tags"]), meta["buckets"][-1])


def inference(config: Config, meta: dict):
    """Viterbi (CRF models, also kept to valid IOB2 paths) or arg-max tags of every sentence."""
    allowed = iob2_allowed(meta["tags"]) if MODELS[config.model][1] else None
    return FromOutputs(functools.partial(predict, allowed=allowed))


def build_tagger(config: Config, vocab_size: int, num_tags: int, max_length: int):
    """The tagger named by ``config.model``, reading words, mask, characters and case from the batch."""
    tagger, crf = MODELS[config.model]
    features = (num_tags, vocab_size, config.embed_dim, config.char_features,
                len(CASES) if config.case_feature else 0)
    if tagger is BiLSTMTagger:
        module = tagger(*features, hidden=config.hidden, num_layers=config.num_layers, dropout=config.dropout,
                        word_dropout=config.word_dropout, crf=crf)
    else:
        module = tagger(*features, width=config.width, num_layers=config.transformer_layers,
                        num_heads=config.num_heads, mlp_dim=config.mlp_dim, dropout=config.dropout,
                        attention_dropout=config.attention_dropout, word_dropout=config.word_dropout,
                        max_length=max_length, crf=crf)
    return FromBatch(module, ("words", "mask", "chars", "case"))


def encode_split(sentences: Sequence[Sentence], vocab: Vocabulary, tags: Sequence[str] | None, config: Config,
                 buckets: tuple[int, ...], source: str = "") -> SequenceSplit:
    """Word, character and case ids (and tag ids, unless ``tags`` is None) of each sentence, as a length-bucketed
    split (``index``: file order)."""
    tag_ids = {tag: i for i, tag in enumerate(tags or ())}
    sequences = {"words": [vocab.encode(sentence.tokens) for sentence in sentences]}
    if tags is not None:
        sequences["tags"] = []
        for sentence in sentences:
            unknown = sorted(set(sentence.tags) - set(tag_ids))
            if unknown:
                raise DataError(where(source, sentence.line), f"expected tags of the training split "
                                                              f"({', '.join(tags)}), got {', '.join(unknown)}")
            sequences["tags"].append(np.array([tag_ids[t] for t in sentence.tags], np.int32))
    if config.char_features:
        sequences["chars"] = [char_ids(s.tokens, config.max_word_len) for s in sentences]
    if config.case_feature:
        sequences["case"] = [np.array([case_pattern(t) for t in s.tokens], np.int32) for s in sentences]
    return SequenceSplit(sequences, {"index": np.arange(len(sentences), dtype=np.int32)}, buckets, config.sort_chunk)


def _vocabulary_options(config: Config) -> dict:
    """What the vocabulary depends on: a saved vocab.json is reused only when all of it is the same."""
    return {"data_dir": str(pathlib.Path(config.data_dir).resolve()), "train_file": config.train_file,
            "limit": config.limit, "min_count": config.min_count, "lower": config.lower,
            "fold_digits": config.fold_digits}


def load_vocabulary(config: Config, train: Sequence[Sentence]) -> tuple[Vocabulary, list[str]]:
    """The word vocabulary and tag names of the training split; a run made before meta.json kept them in
    ``<workdir>/vocab.json``, which is read (never written) when it was built with the same data and options."""
    options = _vocabulary_options(config)
    path = pathlib.Path(config.workdir) / "vocab.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("options") == options:
            return Vocabulary.from_json(saved["words"]), list(saved["tags"])
    vocab = Vocabulary.build((s.tokens for s in train), min_count=config.min_count, lower=config.lower,
                             fold_digits=config.fold_digits)
    return vocab, tag_names(train)


def loss(outputs, batch):
    """CRF: mean negative log-likelihood per sentence; softmax: mean cross-entropy per real token."""
    mask = batch["mask"] & batch["example_mask"][:, None]
    if "crf" in outputs:
        log_likelihood = crf_log_likelihood(outputs["emissions"], batch["tags"], mask, **outputs["crf"])
        return masked_mean(-log_likelihood, batch["example_mask"]), {}
    token_loss = softmax_cross_entropy(outputs["emissions"], batch["tags"], where=mask)
    correct = jnp.argmax(outputs["emissions"], -1) == batch["tags"]
    return token_loss, {"token_loss": Mean.weighted(token_loss, jnp.sum(mask)),
                        "token_accuracy": Mean.of(correct, where=mask)}


def predict(outputs, batch, allowed=None) -> dict:
    """Decoded and gold tag ids, ``int32[b, T]`` with -1 past each sentence, and each sentence's ``index``.

    CRF models are decoded both ways, plain Viterbi (``pred_tags``) and, when ``allowed`` is given, Viterbi kept to
    valid IOB2 paths (``constrained_tags``), so a run reports both side by side.
    """
    mask = batch["mask"]
    result = {"index": batch["index"]} if "index" in batch else {}
    if "tags" in batch:
        result["gold_tags"] = jnp.where(mask, batch["tags"], -1).astype(jnp.int32)
    if "crf" not in outputs:
        return result | {"pred_tags": jnp.where(mask, jnp.argmax(outputs["emissions"], axis=-1), -1).astype(jnp.int32)}
    result["pred_tags"] = viterbi_decode(outputs["emissions"], mask, **outputs["crf"])[0].astype(jnp.int32)
    if allowed is not None:
        constrained = viterbi_decode(outputs["emissions"], mask, **constrain(outputs["crf"], allowed))[0]
        result["constrained_tags"] = constrained.astype(jnp.int32)
    return result


def score_tags(predictions, tags: Sequence[str], constrained: bool = False) -> dict[str, float]:
    """Entity precision/recall/F1 and token accuracy of the decoding used (constrained when asked and available);
    for CRF models also ``plain_f1`` and ``constrained_f1`` side by side."""
    labels = np.asarray(predictions["gold_tags"])
    decodings = {"plain": np.asarray(predictions["pred_tags"])}
    if "constrained_tags" in predictions:
        decodings["constrained"] = np.asarray(predictions["constrained_tags"])
    real = labels >= 0
    truth = [[tags[i] for i in row[keep]] for row, keep in zip(labels, real)]
    scores = {name: entity_prf(truth, [[tags[i] for i in row[keep]] for row, keep in zip(pred, real)])
              for name, pred in decodings.items()}
    used = "constrained" if constrained and "constrained" in decodings else "plain"
    metrics = dict(scores[used])
    metrics["token_accuracy"] = float(np.mean(decodings[used][real] == labels[real]))
    if len(decodings) > 1:
        metrics.update({f"{name}_f1": s["f1"] for name, s in scores.items()})
    return metrics


def vote(stacked) -> dict:
    """An ensemble's tags: for each token the tag most members decoded (ties to the lowest id, ``O`` first)."""
    combined = {key: value[0] for key, value in stacked.items()}
    for key in ("pred_tags", "constrained_tags"):
        if key in stacked:
            votes = np.asarray(stacked[key])
            counts = (votes[..., None] == np.arange(votes.max() + 1)).sum(axis=0)
            combined[key] = np.where(votes[0] >= 0, counts.argmax(axis=-1), -1).astype(votes.dtype)
    return combined


def build_task(config: Config, meta: dict | None = None) -> Task:
    """Reads the three CoNLL files, builds the training vocabulary (or takes the run's, from ``meta``) and the tagger
    named in config."""
    data_dir = pathlib.Path(config.data_dir)
    files = {"train": config.train_file, "val": config.val_file, "test": config.test_file}
    sentences = {name: read_conll(data_dir / file) for name, file in files.items()}
    if config.limit:
        sentences = {name: split[:config.limit] for name, split in sentences.items()}
    if config.max_length:
        cut = {name: sum(len(s.tokens) > config.max_length for s in split) for name, split in sentences.items()}
        if any(cut.values()):
            print(f"--max-length {config.max_length} truncates " + ", ".join(f"{n} {name} sentences"
                                                                              for name, n in cut.items()), file=sys.stderr)
        sentences = {name: [Sentence(s.tokens[:config.max_length], s.tags[:config.max_length], s.line)
                            for s in split] for name, split in sentences.items()}
    longest = max(len(s.tokens) for split in sentences.values() for s in split)
    buckets = tuple(meta["buckets"]) if meta else tuple(sorted(config.buckets)) or length_buckets([longest])
    if longest > buckets[-1]:
        raise DataError(data_dir, f"expected sentences of at most {buckets[-1]} tokens (the largest of --buckets), "
                                  f"got one of {longest}; add a larger bucket or leave --buckets empty")
    vocab, tags = (vocabulary(meta), list(meta["tags"])) if meta else load_vocabulary(config, sentences["train"])
    meta = meta or {"vocab": json.loads(vocab.to_json()), "tags": tags, "buckets": list(buckets)}
    splits = {name: encode_split(split, vocab, tags, config, buckets, str(data_dir / files[name]))
              for name, split in sentences.items()}
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
    oov = {name: float(np.mean(np.concatenate(split.sequences["words"]) == UNK_ID)) for name, split in splits.items()}
    return Task(
        name="ner",
        model=build_model(config, meta),
        splits=splits,
        loss=loss,
        predict=inference(config, meta),
        score=functools.partial(score_tags, tags=tags, constrained=config.constrained_decoding),
        select_metric="f1",
        describe={"tags": tags, "vocab_size": len(vocab), "unknown_word_rate": oov, "buckets": list(buckets),
                  "sentences": {name: len(split) for name, split in sentences.items()}},
        class_names=tuple(tags),
        batch_spec=spec,
        combine=vote,
        meta=meta,
    )


combine = vote


def read_inputs(arguments: list[str]) -> list[str]:
    """`medjax predict`'s arguments: one sentence each, its tokens separated by spaces."""
    return arguments


def sentences_of(inputs) -> list[list[str]]:
    """Sentences as token lists: a string is split on white space; a list of strings is a list of sentences unless
    given inside another list (``[["Breast", "cancer"]]``)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    sentences = [item.split() if isinstance(item, str) else [str(token) for token in item] for item in inputs]
    empty = [i for i, tokens in enumerate(sentences) if not tokens]
    if empty:
        raise DataError(None, f"expected sentences with at least one token, got an empty one (input {empty[0]})")
    return sentences


def encode(config: Config, meta: dict, inputs) -> SequenceSplit:
    """Sentences as a run's batches (cut to the longest bucket the model was built for, counted on stderr)."""
    longest = meta["buckets"][-1]
    sentences = sentences_of(inputs)
    cut = sum(len(tokens) > longest for tokens in sentences)
    if cut:
        print(f"{cut} of {len(sentences)} sentences cut to {longest} tokens (what the model was built for)",
              file=sys.stderr)
    kept = [Sentence(tuple(tokens[:longest]), (), 0) for tokens in sentences]
    return encode_split(kept, vocabulary(meta), None, dataclasses.replace(config, sort_chunk=0),
                        tuple(meta["buckets"]))


def decode(config: Config, meta: dict, predictions: dict, inputs) -> dict:
    """``tokens`` and ``tags`` (the names, one per token) of each sentence."""
    constrained = config.constrained_decoding and "constrained_tags" in predictions
    decoded = np.asarray(predictions["constrained_tags" if constrained else "pred_tags"])
    sentences = sentences_of(inputs)
    return {"tokens": sentences,
            "tags": [[meta["tags"][t] for t in row[:min(len(tokens), meta["buckets"][-1])]]
                     for tokens, row in zip(sentences, decoded)]}
