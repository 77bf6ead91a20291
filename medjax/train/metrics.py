"""Typed training metrics: a pytree of sums and counts, made inside the jitted step and normalised once on the host.

A task's loss returns its metrics as ``{name: Mean}``; each `Mean` carries its own total and count, so a per-token
accuracy, a per-sentence likelihood and a per-example error can sit side by side, padding never counts (build them
with ``where=``), and an epoch's figure is the exact ratio of its sums, not a mean of batch means.

Example:
  >>> correct = Mean.of(jnp.argmax(logits, -1) == labels, where=batch["example_mask"])
  >>> epoch = merge(epoch, jax.device_get({"accuracy": correct}))   # on the host, after each step
  >>> compute(epoch)
  {'accuracy': 0.75}
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Mean:
    """A mean as its two sums: ``total`` (f32[]) over ``count`` (f32[]) items."""

    total: Any
    count: Any

    @classmethod
    def of(cls, values: jax.Array, where: jax.Array | None = None) -> "Mean":
        """The mean of ``values`` (any shape) over the positions where ``where`` (broadcastable, bool) is True."""
        values = jnp.asarray(values, jnp.float32)
        where = jnp.ones(values.shape, bool) if where is None else jnp.broadcast_to(where, values.shape)
        return cls(jnp.sum(jnp.where(where, values, 0.0)), jnp.sum(where).astype(jnp.float32))

    @classmethod
    def weighted(cls, mean: jax.Array, count: jax.Array) -> "Mean":
        """A mean already taken over ``count`` items (a batch's loss, say), kept as its total and count."""
        count = jnp.asarray(count, jnp.float32)
        return cls(jnp.asarray(mean, jnp.float32) * count, count)

    def value(self) -> float:
        """``total / count`` as a float; NaN when nothing was counted."""
        count = float(self.count)
        return float(self.total) / count if count else math.nan


def merge(total: Mapping[str, Mean] | None, new: Mapping[str, Mean]) -> dict[str, Mean]:
    """Adds ``new`` (host arrays, from `jax.device_get`) into ``total`` in float64; ``total=None`` starts a sum."""
    new = {name: Mean(np.float64(m.total), np.float64(m.count)) for name, m in new.items()}
    if total is None:
        return new
    if set(total) != set(new):
        raise ValueError(f"metrics changed between steps: {sorted(total)} then {sorted(new)}")
    return {name: Mean(total[name].total + m.total, total[name].count + m.count) for name, m in new.items()}


def compute(metrics: Mapping[str, Mean]) -> dict[str, float]:
    """Each metric's value, ``{name: total / count}``."""
    return {name: m.value() for name, m in metrics.items()}
