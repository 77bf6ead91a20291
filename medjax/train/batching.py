"""From a task's split to the fixed-shape, checked batches the jitted steps see.

The loop shuffles with `epoch_order` (a permutation that depends only on the seed and the epoch, so a resumed run
replays it), pads every batch to the full batch size with `pad_batch` (shapes never change, so nothing recompiles) and
checks each batch on the host with `check_batch` before it reaches a device, where a NaN or a bad label would only
show up later as a non-finite loss or a silent wrong answer.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import numpy as np

from medjax.errors import DataError
from medjax.train.task import Batch, Split

_KINDS = {"f": ("f", "a floating dtype"), "i": ("iu", "an integer dtype"), "b": ("b", "bool")}


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """What one entry of a batch must be; a task declares these in ``Task.batch_spec``.

    Attributes:
      dtype_kind: "f" (floating), "i" (signed or unsigned integer) or "b" (bool).
      rank: the number of axes, batch axis included; None: any.
      low: smallest allowed value (inclusive), e.g. 0 for class labels; None: no bound.
      high: bound on the values (exclusive), e.g. the number of classes; None: no bound.
      mask: the name of a bool batch entry, shaped like a prefix of this one, whose False positions are not
        range-checked (padded tokens may carry a filler label); None: every entry of a valid example is checked.
    """

    dtype_kind: str
    rank: int | None = None
    low: float | None = None
    high: float | None = None
    mask: str | None = None

    def __post_init__(self):
        if self.dtype_kind not in _KINDS:
            raise ValueError(f"dtype_kind must be one of {sorted(_KINDS)}; got {self.dtype_kind!r}")


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The training order of ``epoch``: int64[size], a permutation that depends only on ``(seed, epoch)``."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0; got seed={seed}, epoch={epoch}")
    return np.random.default_rng([seed, epoch]).permutation(size)


def pad_batch(batch: Batch, size: int) -> dict[str, np.ndarray]:
    """Pads a batch to ``size`` rows and sets ``example_mask`` (bool[size], False on the added rows).

    The added rows repeat the last real example rather than zeros: a zero-length sequence or an all-False token mask
    could make a model's forward pass NaN, and NaN times a zero weight is still NaN in the gradient.

    Args:
      batch: a dict of arrays with a common leading batch axis of at most ``size`` rows; an ``example_mask`` it
        already carries is kept (and extended with False).
      size: the batch size.

    Returns:
      A new dict of NumPy arrays, each with ``size`` rows.
    """
    rows = _batch_rows(batch, "batch")
    if rows == 0 or rows > size:
        raise ValueError(f"a batch must have between 1 and {size} rows; got {rows}")
    padded = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if rows < size:
            value = np.concatenate([value, np.repeat(value[-1:], size - rows, axis=0)])
        padded[key] = value
    mask = np.arange(size) < rows
    if "example_mask" in batch:
        mask &= padded["example_mask"].astype(bool)
    padded["example_mask"] = mask
    return padded


def padded_batches(split: Split, batch_size: int, order: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The batches of ``split`` in ``order``, each padded to ``batch_size`` rows."""
    for batch in split.batches(batch_size, order):
        yield pad_batch(batch, batch_size)


def check_batch(batch: Batch, spec: Mapping[str, ArraySpec], where: str) -> None:
    """Raises ValueError if a batch holds non-finite floats or breaks the task's declared spec.

    Args:
      batch: a padded batch (with ``example_mask``).
      spec: ``{key: ArraySpec}`` the task declares; keys it does not name are only checked for NaN and inf.
      where: names the batch in messages, e.g. ``"train batch 3 of epoch 1"``.

    Raises:
      ValueError: naming the key, what was expected and what came.
    """
    rows = _batch_rows(batch, where)
    for key, value in batch.items():
        if value.dtype.kind not in "biuf":
            raise DataError(where, f"batch[{key!r}] has dtype {value.dtype}; expected numbers or bools")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = np.argwhere(~np.isfinite(value))
            raise DataError(where,
                f"batch[{key!r}] has {len(bad)} non-finite values (NaN or inf), the first at index "
                f"{tuple(int(i) for i in bad[0])}; expected finite floats"
            )
    if batch["example_mask"].dtype != bool:
        raise DataError(where, f"batch['example_mask'] has dtype {batch['example_mask'].dtype}; expected bool")
    for key, want in spec.items():
        if key not in batch:
            raise DataError(where, f"the task declares batch[{key!r}] but the batch has keys {sorted(batch)}")
        value = batch[key]
        kinds, description = _KINDS[want.dtype_kind]
        if value.dtype.kind not in kinds:
            raise DataError(where, f"batch[{key!r}] has dtype {value.dtype}; expected {description}")
        if want.rank is not None and value.ndim != want.rank:
            raise DataError(where,
                f"batch[{key!r}] has shape {value.shape} (rank {value.ndim}); expected rank {want.rank}"
            )
        if want.low is not None or want.high is not None:
            _check_range(batch, key, want, rows, where)


def _check_range(batch: Batch, key: str, want: ArraySpec, rows: int, where: str) -> None:
    value = batch[key]
    valid = batch["example_mask"].reshape((rows,) + (1,) * (value.ndim - 1))
    valid = np.broadcast_to(valid, value.shape)
    if want.mask is not None:
        if want.mask not in batch:
            raise DataError(where, f"batch[{key!r}] is range-checked under mask {want.mask!r}, which is missing")
        token_mask = batch[want.mask].astype(bool)
        token_mask = token_mask.reshape(token_mask.shape + (1,) * (value.ndim - token_mask.ndim))
        valid = valid & np.broadcast_to(token_mask, value.shape)
    low = -np.inf if want.low is None else want.low
    high = np.inf if want.high is None else want.high
    outside = valid & ((value < low) | (value >= high))
    if outside.any():
        first = tuple(int(i) for i in np.argwhere(outside)[0])
        raise DataError(where,
            f"batch[{key!r}] has values outside [{want.low}, {want.high}): {value[first].item()} at index "
            f"{first} (observed range [{value[valid].min().item()}, {value[valid].max().item()}])"
        )


def _batch_rows(batch: Batch, where: str) -> int:
    if not isinstance(batch, Mapping) or not batch:
        raise DataError(where, f"a batch must be a non-empty dict of arrays; got {type(batch).__name__}")
    sizes = {}
    for key, value in batch.items():
        if not hasattr(value, "shape") or len(value.shape) == 0:
            raise DataError(where, f"batch[{key!r}] must be an array with a leading batch axis; got {value!r:.60}")
        sizes[key] = value.shape[0]
    if len(set(sizes.values())) != 1:
        raise DataError(where, f"batch entries disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))
