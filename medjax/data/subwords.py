"""Subword vocabularies for translation: one joint SentencePiece model trained on the training split only.

A run keeps its model inside ``meta.json`` (the serialised proto, base64), so a loaded run segments exactly as
training did. Ids: 0 pad, 1 bos, 2 eos, 3 unk (fixed here, so models and decoding can name them).
The file is written through a fresh temporary file and a rename (a symlink at its path is replaced, not followed);
a damaged one, or a model with other special ids, is a `DataError` naming it.

Example:
  >>> sp = train(train_pairs.source + train_pairs.target, "runs/mt/subwords", vocab_size=4000)
  >>> ids = encode(sp, ["Wash your hands."])                  # [[...ids..., 2]]
  >>> decode(sp, ids)                                          # ['Wash your hands.']
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import sentencepiece

from medjax.data.files import replace_atomically
from medjax.errors import DataError, MissingPath

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def train(sentences: Sequence[str], prefix: str | os.PathLike, vocab_size: int = 4000,
          model_type: str = "unigram") -> sentencepiece.SentencePieceProcessor:
    """Trains SentencePiece on ``sentences`` (the training split) and writes ``<prefix>.model``.

    One thread, so the same sentences give the same model. ``hard_vocab_limit=False`` lets a small corpus yield
    fewer pieces than asked instead of failing.
    """
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type=model_type,
        pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=UNK, hard_vocab_limit=False, character_coverage=1.0,
        minloglevel=2, num_threads=1)
    prefix = str(prefix)
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    replace_atomically(prefix + ".model", model.getvalue())
    return load(prefix + ".model")


def load(path: str | os.PathLike) -> sentencepiece.SentencePieceProcessor:
    """The SentencePiece model a training run saved.

    Raises:
      MissingPath: no such file.
      DataError: bytes that are no SentencePiece model (truncated, garbage), or a model whose pad, bos, eos and
        unk ids are not 0, 1, 2, 3.
    """
    if not os.path.isfile(path):
        raise MissingPath(path, "expected the subword model a translation run saves, got no such file")
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:  # sentencepiece would take no bytes for no model and fail on first use
        raise DataError(path, "expected a SentencePiece model, got an empty file")
    try:
        sp = sentencepiece.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, ValueError, OSError):
        raise DataError(path, f"expected a SentencePiece model, got {len(data)} bytes that do not parse as one "
                              f"(truncated or another file)") from None
    ids = (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id())
    if ids != (PAD, BOS, EOS, UNK):
        raise DataError(path, f"expected a model with pad, bos, eos, unk ids {PAD}, {BOS}, {EOS}, {UNK}, got "
                              f"{', '.join(map(str, ids))}")
    return sp


def encode(sp: sentencepiece.SentencePieceProcessor, sentences: Sequence[str]) -> list[list[int]]:
    """Subword ids of each sentence, ending with EOS."""
    return [ids + [EOS] for ids in sp.encode(list(sentences))]


def decode(sp: sentencepiece.SentencePieceProcessor, ids) -> list[str]:
    """Text of each id row, cut at the first EOS, PAD and BOS dropped."""
    texts = []
    for row in ids:
        row = [int(i) for i in row]
        row = row[:row.index(EOS)] if EOS in row else row
        texts.append(sp.decode([i for i in row if i not in (PAD, BOS)]))
    return texts
