"""Text to integer ids: a regex tokenizer, a vocabulary built from the training split, padded batches with masks.

Shared by every text task (abstract classification, NER). The vocabulary is built from the *training* split only, so
validation and test words the model never saw become ``<unk>``, as they would in use.

Example:
  >>> vocab = Vocabulary.build([tokenize("Aspirin 100 mg."), tokenize("aspirin 50 mg")], lower=True, fold_digits=True)
  >>> vocab.encode(tokenize("ASPIRIN 75 mg!")).tolist()
  [2, 5, 3, 1]
  >>> ids, mask = pad_batch([vocab.encode(["mg"]), vocab.encode(["aspirin", "mg"])], bucket=4)
  >>> ids.tolist(), mask.tolist()
  ([[3, 0, 0, 0], [2, 3, 0, 0]], [[True, False, False, False], [True, True, False, False]])
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import re
from typing import Iterable, Sequence

import numpy as np

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1

# Decimal numbers ("0.25", "1,000") stay whole; otherwise runs of letters/digits form a token and every other
# non-space character (%, +, /, parentheses) is a token of its own.
_TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)+|\w+|[^\w\s]")
_DIGIT_RE = re.compile(r"\d")

# Character ids are UTF-8 bytes shifted by one, so 0 stays free for padding: no character vocabulary has to be built,
# saved or kept in sync with the training split, and no character is ever unknown.
CHAR_PAD_ID = 0
CHAR_VOCAB_SIZE = 257


def tokenize(text: str) -> list[str]:
    """Splits text into words, numbers and single punctuation characters.

    Args:
      text: any string.

    Returns:
      The tokens in order, e.g. ``tokenize("age 39 +/- 5.3 yr") == ["age", "39", "+", "/", "-", "5.3", "yr"]``.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    return _TOKEN_RE.findall(text)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A token <-> id table with ``<pad>`` = 0 and ``<unk>`` = 1.

    Attributes:
      tokens: the token of each id; ``tokens[0] == "<pad>"``, ``tokens[1] == "<unk>"``.
      lower: tokens are lower-cased before lookup.
      fold_digits: every digit is replaced by ``0`` before lookup ("12.5" and "47.1" share an id).
    """

    tokens: tuple[str, ...]
    lower: bool = False
    fold_digits: bool = False

    def __post_init__(self):
        if tuple(self.tokens[:2]) != (PAD, UNK):
            raise ValueError(f"a Vocabulary starts with ({PAD!r}, {UNK!r}), got {tuple(self.tokens[:2])}")
        if len(set(self.tokens)) != len(self.tokens):
            duplicates = [t for t, n in collections.Counter(self.tokens).items() if n > 1]
            raise ValueError(f"duplicate tokens in Vocabulary: {duplicates[:5]}")
        object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        min_count: int = 1,
        lower: bool = False,
        fold_digits: bool = False,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Counts normalised tokens and keeps those seen at least ``min_count`` times.

        Args:
          token_lists: the training split's documents or sentences, each a list of tokens.
          min_count: tokens rarer than this map to ``<unk>``.
          lower: lower-case before counting and lookup.
          fold_digits: replace every digit by ``0`` before counting and lookup.
          max_size: keep at most this many ids in all (including ``<pad>`` and ``<unk>``); ``None`` keeps all.

        Returns:
          A vocabulary ordered by decreasing count, ties broken alphabetically, so the same data gives the same ids.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must be >= 2 (room for {PAD!r} and {UNK!r}), got {max_size}")
        counts: collections.Counter[str] = collections.Counter()
        for tokens in token_lists:
            if isinstance(tokens, str):
                raise TypeError("Vocabulary.build expects lists of tokens, got a str (call tokenize first)")
            counts.update(_normalize(t, lower, fold_digits) for t in tokens)
        for special in (PAD, UNK):
            counts.pop(special, None)
        kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls((PAD, UNK, *kept), lower=lower, fold_digits=fold_digits)

    def __len__(self) -> int:
        return len(self.tokens)

    def normalize(self, token: str) -> str:
        """The form of ``token`` that is looked up (lower-cased and digit-folded as configured)."""
        return _normalize(token, self.lower, self.fold_digits)

    def id(self, token: str) -> int:
        """The id of one token, ``UNK_ID`` if unknown."""
        return self._ids.get(self.normalize(token), UNK_ID)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token ids, ``int32[len(tokens)]``; unknown tokens get ``UNK_ID``."""
        if isinstance(tokens, str):
            raise TypeError("Vocabulary.encode expects a list of tokens, got a str (call tokenize first)")
        return np.fromiter((self.id(t) for t in tokens), dtype=np.int32, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of ``ids`` (in normalised form); padding ids are dropped."""
        return [self.tokens[i] for i in (int(i) for i in ids) if i != PAD_ID]

    def to_json(self) -> str:
        """The vocabulary as a JSON string (tokens in id order and the options), for the work folder."""
        return json.dumps({"tokens": list(self.tokens), "lower": self.lower, "fold_digits": self.fold_digits})

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Inverse of `to_json`."""
        data = json.loads(text)
        missing = {"tokens", "lower", "fold_digits"} - set(data)
        if missing:
            raise ValueError(f"vocabulary JSON lacks keys {sorted(missing)}; has {sorted(data)}")
        return cls(tuple(data["tokens"]), lower=bool(data["lower"]), fold_digits=bool(data["fold_digits"]))


def _normalize(token: str, lower: bool, fold_digits: bool) -> str:
    if lower:
        token = token.lower()
    if fold_digits:
        token = _DIGIT_RE.sub("0", token)
    return token


def char_ids(tokens: Sequence[str], max_word_len: int) -> np.ndarray:
    """The characters of each token as ids, for character-level word features (rare and unknown words).

    Ids are the UTF-8 bytes plus one (``CHAR_VOCAB_SIZE`` = 257 ids, 0 = padding); words longer than
    ``max_word_len`` bytes keep their first ``max_word_len`` bytes.

    Args:
      tokens: n tokens.
      max_word_len: L, the number of character slots per token.

    Returns:
      ``int32[n, L]``, zero-padded on the right.
    """
    if isinstance(tokens, str):
        raise TypeError("char_ids expects a list of tokens, got a str")
    if max_word_len < 1:
        raise ValueError(f"max_word_len must be >= 1, got {max_word_len}")
    out = np.zeros((len(tokens), max_word_len), np.int32)
    for i, token in enumerate(tokens):
        data = np.frombuffer(token.encode("utf-8")[:max_word_len], np.uint8)
        out[i, : data.size] = data.astype(np.int32) + 1
    return out


def bucket_length(length: int, bucket: int | Sequence[int]) -> int:
    """The padded length for a longest sequence of ``length``.

    Args:
      length: the longest sequence in the batch.
      bucket: an int rounds up to a multiple of it (at least one bucket); a sorted sequence of sizes picks the
        smallest size >= ``length``. Few distinct lengths mean few recompilations of the jitted step.
    """
    if isinstance(bucket, int):
        if bucket < 1:
            raise ValueError(f"bucket must be >= 1, got {bucket}")
        return max(1, math.ceil(length / bucket)) * bucket
    sizes = sorted(bucket)
    for size in sizes:
        if size >= length:
            return size
    raise ValueError(f"sequence of length {length} is longer than the largest bucket {sizes[-1] if sizes else None}")


def pad_batch(
    seqs: Sequence[np.ndarray],
    bucket: int | Sequence[int] = 16,
    max_length: int | None = None,
    pad_id: int = PAD_ID,
) -> tuple[np.ndarray, np.ndarray]:
    """Stacks variable-length sequences into one padded array and a validity mask.

    Args:
      seqs: B arrays of shape ``[n_b, ...]`` (token ids ``int32[n_b]``, or character ids ``int32[n_b, L]``); the
        trailing axes must agree.
      bucket: see `bucket_length`.
      max_length: sequences longer than this are truncated (their first ``max_length`` steps kept) and T is at most
        ``max_length``.
      pad_id: the value of padded steps.

    Returns:
      ``(ids, mask)``: ``ids`` of shape ``[B, T, ...]`` with the dtype of the inputs, ``mask`` ``bool[B, T]``,
      True on real steps.
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    arrays = [np.asarray(s) for s in seqs]
    trailing = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.ndim == 0 or a.shape[1:] != trailing:
            raise ValueError(
                f"pad_batch: sequence {i} has shape {a.shape}; expected [length, *{trailing}] like sequence 0"
            )
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        arrays = [a[:max_length] for a in arrays]
    length = bucket_length(max(a.shape[0] for a in arrays), bucket)
    if max_length is not None:
        length = min(length, max_length)
    # np.asarray([]) is float64: empty sequences must not decide the dtype.
    filled = [a for a in arrays if a.size]
    dtype = np.result_type(*filled) if filled else np.dtype(np.int32)
    ids = np.full((len(arrays), length, *trailing), pad_id, dtype=dtype)
    mask = np.zeros((len(arrays), length), bool)
    for i, a in enumerate(arrays):
        ids[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return ids, mask
