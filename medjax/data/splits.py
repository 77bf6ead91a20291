"""Generic splits the loop batches: examples held as arrays, or as variable-length sequences bucketed by length.

Every task uses one of these two: `ArraySplit` for fixed-shape examples (images, beat windows, feature vectors) and
`SequenceSplit` for sequences (sentences, documents, SMILES strings, patient histories), whose batches are padded to a
length bucket with a mask, so only a few shapes ever compile. `length_buckets` picks buckets from the data.

Example:
  >>> split = SequenceSplit({"ids": docs}, {"label": labels}, buckets=length_buckets([len(d) for d in docs]))
  >>> next(split.batches(32))["mask"].shape        # bool[32, T], T the smallest bucket that fits the batch
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, Sequence

import numpy as np

from medjax.data.vocab import pad_batch


def length_buckets(lengths: Sequence[int], smallest: int = 16) -> tuple[int, ...]:
    """Powers of two from ``smallest`` up to the first one that holds the longest sequence: what the data needs.

    Args:
      lengths: every sequence's length (over all splits, so that no split is refused).
      smallest: the shortest bucket.

    Returns:
      Ascending bucket lengths, e.g. ``(16, 32, 64, 128, 256)`` for a longest sentence of 225 tokens.
    """
    longest = max(max(lengths, default=1), 1)
    buckets = [smallest]
    while buckets[-1] < longest:
        buckets.append(buckets[-1] * 2)
    return tuple(buckets)


@dataclasses.dataclass(frozen=True)
class ArraySplit:
    """Fixed-shape examples as a dict of arrays with a common leading example axis.

    Attributes:
      arrays: ``{key: array[N, ...]}``; a batch is ``{key: array[B, ...]}``.
      fill_last: complete a short last batch with the first examples of the same order, marked False in
        ``example_mask`` (they count in no loss or metric). For training with batch norm: the loop would otherwise
        pad with copies of the last example, and the statistics of that batch would be (mostly) one example's.
    """

    arrays: Mapping[str, np.ndarray]
    fill_last: bool = False

    def __post_init__(self):
        sizes = {key: len(value) for key, value in self.arrays.items()}
        if not sizes or len(set(sizes.values())) != 1:
            raise ValueError(f"ArraySplit needs arrays with one common length; got {sizes}")

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
        index = np.arange(len(self)) if order is None else np.asarray(order)
        for start in range(0, len(index), batch_size):
            rows = index[start:start + batch_size]
            short = batch_size - len(rows)
            batch = {}
            if self.fill_last and 0 < short <= start:
                rows = np.concatenate([rows, index[:short]])
                batch["example_mask"] = np.arange(batch_size) < batch_size - short
            yield {key: value[rows] for key, value in self.arrays.items()} | batch


@dataclasses.dataclass(frozen=True)
class SequenceSplit:
    """Variable-length examples; each batch is padded to the smallest bucket that holds its longest sequence.

    Attributes:
      sequences: ``{key: (array[n_i, ...] per example)}``; all keys share each example's length n_i (words, their
        tags, their characters). A batch holds ``{key: array[B, T, ...]}`` zero-padded, and ``mask`` bool[B, T].
      fields: ``{key: array[N, ...]}`` fixed-size entries per example (labels, row indices).
      buckets: ascending padded lengths; the longest sequence must fit the last (see `length_buckets`).
      sort_chunk: within chunks of this many batches of the given order, sort by length (little padding), then
        shuffle the batches with the order itself; 0 keeps the order as given.
      mask: the name of the mask entry.
    """

    sequences: Mapping[str, Sequence[np.ndarray]]
    fields: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    buckets: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    sort_chunk: int = 0
    mask: str = "mask"

    def __post_init__(self):
        lengths = self.lengths()
        for key, values in self.sequences.items():
            if [len(v) for v in values] != list(lengths):
                raise ValueError(f"SequenceSplit: sequences[{key!r}] disagree in length with the others")
        for key, values in self.fields.items():
            if len(values) != len(lengths):
                raise ValueError(f"SequenceSplit: fields[{key!r}] has {len(values)} rows for {len(lengths)} examples")
        if len(lengths) and lengths.max() > max(self.buckets):
            raise ValueError(f"the longest sequence has {lengths.max()} steps; the largest bucket {max(self.buckets)} "
                             f"must hold it")

    def lengths(self) -> np.ndarray:
        """int64[N] each example's length."""
        first = next(iter(self.sequences.values()))
        return np.array([len(v) for v in first], np.int64)

    def __len__(self) -> int:
        return len(next(iter(self.sequences.values())))

    def _groups(self, batch_size: int, order: np.ndarray) -> list[np.ndarray]:
        if not self.sort_chunk:
            return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        lengths = self.lengths()
        chunk = batch_size * self.sort_chunk
        groups = []
        # Chunks are whole numbers of batches, so only the split's very last batch can be short.
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            groups += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        # Sorting made batches short-to-long within each chunk; shuffle the batches with the order itself (a random
        # permutation in training, the identity for evaluation), so no new source of randomness is needed.
        return [groups[i] for i in np.argsort(order[:len(groups)], kind="stable")]

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
        order = np.arange(len(self)) if order is None else np.asarray(order)
        for chosen in self._groups(batch_size, order):
            batch = {}
            for key, values in self.sequences.items():
                batch[key], batch[self.mask] = pad_batch([values[i] for i in chosen], bucket=self.buckets)
            for key, values in self.fields.items():
                batch[key] = values[chosen]
            yield batch
