"""Machine translation of medical text (TICO-19 English-French by default) with an attentive LSTM or a transformer.

`medjax train translation` reads sentence pairs from a TMX file or from two line-aligned plain files
(`medjax.data.parallel`), holds out whole documents for validation and test, trains one joint SentencePiece model on
the training pairs only (`medjax.data.subwords`; kept inside the run's ``meta.json``, so a resumed or loaded run
segments as training did and no stale model file is ever picked up) and trains `medjax.nn.seq2seq.LSTMSeq2Seq`
(Bahdanau attention) or `medjax.nn.transformer_seq2seq.TransformerSeq2Seq` with label-smoothed cross-entropy over
the target tokens (teacher forcing). Each epoch is selected on validation BLEU of greedy decoding; the test split is
decoded with beam search (``--beam``, GNMT length penalty ``--alpha``). BLEU and chrF are sacrebleu's corpus scores
against the untruncated references; their signatures are in ``config.json``.

Training pairs longer than ``--max-length`` subwords on either side are dropped; validation and test sources are cut
to it. Source and target are padded separately to power-of-two length buckets, so few shapes compile.

`medjax translate --workdir W "text" ...` prints one translation a line (no text: reads stdin, one sentence a line);
`medjax.load(W).predict(sentences)["translation"]` is the same, beam-decoded, without the training data.
Not implemented: dropout (the seq2seq models have none), a configurable feed-forward width, stacked LSTM layers.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import pathlib
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from medjax.data import parallel, subwords
from medjax.data.splits import SequenceSplit, length_buckets
from medjax.data.vocab import pad_batch
from medjax.errors import ConfigError, DataError, MissingPath
from medjax.nn import decoding
from medjax.tasks.common import split_fractions, texts
from medjax.train import precision
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.losses import masked_mean
from medjax.train.metrics import Mean
from medjax.train.task import Task


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    workdir: str = option("runs/translation", "where config.json, meta.json, metrics.jsonl, results.json and "
                                              "checkpoints/ go")
    data_dir: str = option("../shared/data/tico19-en-fr", "a .tmx file, a folder with one .tmx, or a folder with "
                                                          "<name>.<source> and <name>.<target> line-aligned files")
    source: str = option("en", "the source language (TMX xml:lang, or the plain files' extension)")
    target: str = option("fr", "the target language")
    split_seed: int = option(0, "seeds the split by document (independent of the training seed)", minimum=0)
    val_fraction: float = option(0.1, "share of the pairs (whole documents) held out for model selection", above=0.0)
    test_fraction: float = option(0.1, "share of the pairs (whole documents) held out for the final score",
                                  above=0.0)
    limit: int = option(0, "use at most this many pairs per split (0: all); for smoke runs", minimum=0)
    vocab_size: int = option(4000, "joint SentencePiece vocabulary size (a small corpus may yield fewer)", minimum=8)
    max_length: int = option(64, "subwords per side, EOS included: longer training pairs are dropped, longer "
                                 "validation/test sources cut", minimum=2)
    model: str = option("transformer", "lstm (Bahdanau attention) or transformer (encoder-decoder)",
                        choices=("lstm", "transformer"))
    embed_dim: int = option(128, "embedding width (the transformer's model width)", minimum=1)
    hidden: int = option(256, "LSTM: encoder and decoder state size", minimum=1)
    num_layers: int = option(2, "transformer: encoder and decoder blocks each", minimum=1)
    num_heads: int = option(4, "transformer: attention heads (must divide --embed-dim)", minimum=1)
    label_smoothing: float = option(0.1, "label smoothing of the target-token cross-entropy", minimum=0.0)
    beam: int = option(4, "beam width on the test split and in `medjax translate` (1: greedy)", minimum=1)
    alpha: float = option(0.6, "GNMT length-penalty exponent of the beam search", minimum=0.0)
    epochs: int = option(30, "passes over the training split", minimum=1)
    batch_size: int = option(64, "sentence pairs per training step, split over all local devices", minimum=1)
    eval_batch_size: int = option(64, "sentences per evaluation step", minimum=1)
    lr: float = option(1e-3, "peak learning rate", above=0.0)
    optimizer: str = option("adamw", "the optimizer", choices=("adam", "adamw", "sgd"))
    weight_decay: float = option(1e-4, "decoupled weight decay (adamw) or L2 (adam, sgd)", minimum=0.0)
    schedule: str = option("cosine", "the learning-rate schedule", choices=("constant", "cosine", "multistep"))
    clip_norm: float = option(1.0, "clip gradients to this global norm; 0 turns clipping off", minimum=0.0)


def read_pairs(config: Config) -> parallel.Pairs:
    """The pairs of ``config.data_dir``: a TMX file, a folder with one, or ``<name>.<source>`` + ``<name>.<target>``."""
    path = pathlib.Path(config.data_dir)
    if path.is_file():
        return parallel.read_tmx(path, config.source, config.target)
    if not path.is_dir():
        raise MissingPath(path, "expected a .tmx file or a folder of parallel text, got no such file or folder")
    tmx = sorted(path.glob("*.tmx"))
    if len(tmx) == 1:
        return parallel.read_tmx(tmx[0], config.source, config.target)
    if len(tmx) > 1:
        raise DataError(path, f"expected one .tmx file, got {len(tmx)}: {', '.join(p.name for p in tmx)}")
    stems = sorted(p.with_suffix("") for p in path.glob(f"*.{config.source}")
                   if p.with_suffix(f".{config.target}").is_file())
    if len(stems) != 1:
        raise DataError(path, f"expected a .tmx file or one pair <name>.{config.source} and <name>.{config.target}, "
                              f"got {len(stems)} such pairs")
    pairs = parallel.read_plain(f"{stems[0]}.{config.source}", f"{stems[0]}.{config.target}")
    # One file is one document: blocks of 50 consecutive lines stand in for documents so that a split is possible.
    return dataclasses.replace(pairs, documents=tuple(f"{d}#{i // 50}" for i, d in enumerate(pairs.documents)))


@dataclasses.dataclass(frozen=True)
class PairSplit:
    """Source and target subword ids, each side padded to its own length bucket (of the same ``buckets``).

    Batches: ``src`` i32[B, S], ``src_mask`` bool[B, S], ``tgt_in`` (BOS + y) and ``tgt_out`` (y + EOS) i32[B, T],
    ``tgt_mask`` bool[B, T], ``index`` i32[B] (the pair's row in the task's reference list), and with ``beam`` a
    marker ``beam`` bool[B]: its presence (a static batch structure) makes `Decode` run beam search on that split.
    """

    src: tuple[np.ndarray, ...]
    tgt: tuple[np.ndarray, ...]  # y without BOS or EOS
    index: np.ndarray
    buckets: tuple[int, ...]
    sort_chunk: int = 4
    beam: bool = False

    def __len__(self) -> int:
        return len(self.src)

    def batches(self, batch_size: int, order=None):
        # Batches grouped by source length as `SequenceSplit` groups them (sorted within chunks of sort_chunk batches).
        sources = SequenceSplit({"src": self.src}, {"row": np.arange(len(self))}, self.buckets, self.sort_chunk,
                                mask="src_mask")
        for batch in sources.batches(batch_size, order):
            rows = batch.pop("row")
            ys = [self.tgt[i] for i in rows]
            tgt_in, tgt_mask = pad_batch([np.r_[subwords.BOS, y].astype(np.int32) for y in ys], bucket=self.buckets)
            tgt_out, _ = pad_batch([np.r_[y, subwords.EOS].astype(np.int32) for y in ys], bucket=self.buckets)
            batch |= {"tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_mask": tgt_mask, "index": self.index[rows]}
            if self.beam:
                batch["beam"] = np.ones(len(rows), bool)
            yield batch


class Translator(nn.Module):
    """The batch adapter around a seq2seq model: teacher forcing on a batch, `start` and `decode_step` for search."""

    seq2seq: nn.Module

    def __call__(self, batch, train: bool = False):
        return self.seq2seq(batch["src"], batch["src_mask"], batch["tgt_in"])

    def start(self, batch):
        return self.seq2seq.start(batch["src"], batch["src_mask"])

    def decode_step(self, state, token):
        return self.seq2seq.decode_step(state, token)


def _step(apply, variables, state, token):
    logits, state = apply(variables, state, token, method=Translator.decode_step)
    return jax.nn.log_softmax(logits), state


@dataclasses.dataclass(frozen=True)
class Decode:
    """The task's predict: greedy decoding of ``max_len`` tokens, or beam search on batches that carry ``beam``."""

    max_len: int
    beam: int = 1
    alpha: float = 0.0

    def __call__(self, apply, variables, batch):
        state = apply(variables, batch, method=Translator.start)
        step = functools.partial(_step, apply)
        bos = jnp.full(batch["src"].shape[:1], subwords.BOS, jnp.int32)
        if "beam" in batch and self.beam > 1:
            tokens, _ = decoding.beam_search(step, variables, decoding.repeat_beams(state, self.beam), bos,
                                             self.max_len, beam=self.beam, eos=subwords.EOS, pad=subwords.PAD,
                                             alpha=self.alpha)
        else:
            tokens = decoding.greedy(step, variables, state, bos, self.max_len, eos=subwords.EOS, pad=subwords.PAD)
        return {"tokens": tokens, "index": batch["index"]}


def translation_loss(logits: jax.Array, batch, smoothing: float):
    """Label-smoothed cross-entropy over the real target tokens of the real examples; token accuracy and plain NLL."""
    mask = batch["tgt_mask"] & batch["example_mask"][:, None]
    labels = batch["tgt_out"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype), smoothing)
    loss = masked_mean(optax.softmax_cross_entropy(logits, targets), mask)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss, {"token_accuracy": Mean.of(jnp.argmax(logits, -1) == labels, where=mask),
                  "nll": Mean.of(nll, where=mask)}


@precision.follows_config
def build_model(config: Config, meta: dict) -> nn.Module:
    """The seq2seq model over the run's subword vocabulary (``meta["vocab_size"]``), positions up to its last bucket."""
    vocab, max_len = meta["vocab_size"], meta["buckets"][-1]
    if config.model == "lstm":
        from medjax.nn.seq2seq import LSTMSeq2Seq

        return Translator(LSTMSeq2Seq(vocab=vocab, embed=config.embed_dim, hidden=config.hidden))
    if config.embed_dim % config.num_heads:
        raise ConfigError("--num-heads", f"expected a divisor of --embed-dim {config.embed_dim}, got "
                                         f"{config.num_heads}")
    from medjax.nn.transformer_seq2seq import TransformerSeq2Seq

    return Translator(TransformerSeq2Seq(vocab=vocab, width=config.embed_dim, heads=config.num_heads,
                                         layers=config.num_layers, max_len=max_len))


def inference(config: Config, meta: dict) -> Decode:
    """Greedy decoding, or beam search (``--beam``) on batches that carry ``beam`` (the test split, new sentences)."""
    return Decode(meta["buckets"][-1], config.beam, config.alpha)


def train_subwords(config: Config, train: parallel.Pairs) -> str:
    """SentencePiece trained on the training pairs, as base64 of the model's bytes (what ``meta.json`` keeps); its
    file is written into a temporary folder only, never into the run's."""
    with tempfile.TemporaryDirectory() as folder:
        subwords.train(train.source + train.target, pathlib.Path(folder) / "subwords", vocab_size=config.vocab_size)
        return base64.b64encode((pathlib.Path(folder) / "subwords.model").read_bytes()).decode("ascii")


@functools.lru_cache(maxsize=4)
def subword_model(encoded: str):
    """The SentencePiece processor of a run's ``meta["subwords"]``."""
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_proto=base64.b64decode(encoded, validate=True))
    except (RuntimeError, ValueError, OSError):
        raise DataError("meta.json", "expected a SentencePiece model (base64) under 'subwords', got damaged "
                                     "contents") from None


def signatures() -> dict[str, str]:
    """sacrebleu's BLEU and chrF signatures (one reference, default tokenisation)."""
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        metric.corpus_score(["a"], [["a"]])
        out[name] = str(metric.get_signature())
    return out


def _cut(ids: list[int], longest: int) -> np.ndarray:
    """Source ids (ending with EOS) cut to ``longest``, still ending with EOS."""
    return np.asarray(ids if len(ids) <= longest else ids[:longest - 1] + [subwords.EOS], np.int32)


def _sentences(sp, tokens: np.ndarray) -> list[str]:
    """The text of decoded token rows (-1 is padding between batches)."""
    return subwords.decode(sp, [[int(t) for t in row if t >= 0] for row in np.asarray(tokens)])


def split_pairs(config: Config) -> dict[str, parallel.Pairs]:
    """``{"train", "val", "test": Pairs}``: whole documents to each split, seeded; at most ``--limit`` pairs each."""
    fractions = split_fractions(config)  # before reading: an impossible split needs no data to be refused
    parts = dict(zip(("train", "val", "test"), parallel.split_by_document(read_pairs(config), fractions,
                                                                          config.split_seed)))
    if config.limit:
        parts = {name: p.subset(range(min(config.limit, len(p)))) for name, p in parts.items()}
    return parts


def build_task(config: Config, meta: dict | None = None) -> Task:
    """Reads and splits the pairs, trains the subword model on train (or takes the run's from ``meta``), and builds
    the model."""
    if config.ensemble > 1:
        raise ConfigError("--ensemble", f"expected 1 for translation (no way to combine decoded sentences yet), got "
                                        f"{config.ensemble}")
    parts = split_pairs(config)
    longest = config.max_length
    if meta is None:
        encoded = train_subwords(config, parts["train"])
        meta = {"subwords": encoded, "vocab_size": subword_model(encoded).get_piece_size(),
                "buckets": list(length_buckets([longest], smallest=min(16, longest)))}
    sp, vocab, buckets = subword_model(meta["subwords"]), meta["vocab_size"], tuple(meta["buckets"])
    references, splits, dropped = [], {}, 0
    for name, part in parts.items():
        src, tgt = subwords.encode(sp, part.source), sp.encode(list(part.target))
        keep = range(len(src))
        if name == "train":
            keep = [i for i in keep if len(src[i]) <= longest and len(tgt[i]) + 1 <= longest]
            dropped = len(src) - len(keep)
            if not keep:
                raise DataError(config.data_dir, f"expected training pairs of at most --max-length {longest} "
                                                 "subwords, got none")
        src = [_cut(src[i], longest) for i in keep]
        tgt = [np.asarray(tgt[i][:longest - 1], np.int32) for i in keep]
        index = np.arange(len(references), len(references) + len(keep), dtype=np.int32)
        references += [part.target[i] for i in keep]
        splits[name] = PairSplit(tuple(src), tuple(tgt), index, buckets, beam=name == "test")

    def score(predictions) -> dict[str, float]:
        from sacrebleu.metrics import BLEU, CHRF

        hypotheses = _sentences(sp, predictions["tokens"])
        refs = [[references[int(i)] for i in np.asarray(predictions["index"])]]
        return {"bleu": BLEU().corpus_score(hypotheses, refs).score,
                "chrf": CHRF().corpus_score(hypotheses, refs).score}

    ids = ArraySpec("i", rank=2, low=0, high=vocab)
    return Task(
        name="translation",
        model=build_model(config, meta),
        splits=splits,
        loss=functools.partial(translation_loss, smoothing=config.label_smoothing),
        predict=inference(config, meta),
        score=score,
        select_metric="bleu",
        rng_streams=(),
        describe={"vocab_size": vocab, "split_sizes": {name: len(s) for name, s in splits.items()},
                  "dropped_long_training_pairs": dropped, "buckets": list(buckets),
                  "decoding": f"val greedy; test beam {config.beam}, alpha {config.alpha:g}",
                  "signatures": signatures()},
        batch_spec={"src": ids, "tgt_in": ids, "tgt_out": ids, "src_mask": ArraySpec("b", rank=2),
                    "tgt_mask": ArraySpec("b", rank=2),
                    "index": ArraySpec("i", rank=1, low=0, high=len(references))},
        meta=meta,
    )


def read_inputs(arguments: list[str]) -> list[str]:
    """`medjax predict`'s arguments: source sentences."""
    return arguments


def encode(config: Config, meta: dict, inputs) -> PairSplit:
    """Source sentences (a string or a list) as the run's subwords, cut to ``--max-length``, marked for beam search."""
    src = [_cut(ids, config.max_length) for ids in subwords.encode(subword_model(meta["subwords"]),
                                                                     texts(inputs, "source sentences"))]
    return PairSplit(tuple(src), tuple(np.zeros(0, np.int32) for _ in src), np.arange(len(src), dtype=np.int32),
                     tuple(meta["buckets"]), beam=True)


def decode(config: Config, meta: dict, predictions: dict, inputs) -> dict:
    """``translation``: each input's beam-decoded sentence."""
    return {"translation": _sentences(subword_model(meta["subwords"]), predictions["tokens"])}
