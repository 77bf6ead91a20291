"""Losses: each is the mean of a per-entry loss over the valid entries, so padding rows and tokens never count.

A task's `loss(outputs, batch)` usually calls one of these with ``where=batch["example_mask"]`` (or a token mask).
``where`` may have fewer axes than the per-entry loss; it then applies to every entry of the trailing axes (an
example mask ``bool[batch]`` over a multi-label loss ``f32[batch, labels]``). With no valid entry at all the mean is 0,
not NaN, so a fully padded batch cannot poison the gradients.

Example:
  >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
  >>> loss = softmax_cross_entropy(logits, jnp.array([0, 0]), where=jnp.array([True, False]))  # log(1 + e^-2): row 0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def masked_mean(values: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Mean of ``values`` over the entries where ``where`` is True.

    Args:
      values: f32[*shape] per-entry values.
      where: bool[*shape[:k]] for some k <= len(shape), or None (every entry counts). A shorter mask covers all the
        trailing entries of each of its positions.

    Returns:
      f32[] the mean over valid entries; 0 when there is none.
    """
    if where is None:
        return jnp.mean(values)
    where = jnp.asarray(where)
    if where.shape != values.shape[: where.ndim]:
        raise ValueError(
            f"where has shape {where.shape}; expected a prefix of the per-entry loss shape {values.shape}"
        )
    # Explicit trailing axes: the strict rank-promotion mode used in tests forbids implicit broadcasting.
    where = jnp.broadcast_to(where.reshape(where.shape + (1,) * (values.ndim - where.ndim)), values.shape)
    total = jnp.sum(jnp.where(where, values, 0.0))
    count = jnp.sum(where)
    return total / jnp.maximum(count, 1).astype(values.dtype)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Cross-entropy of integer class labels under a softmax over the last axis.

    Args:
      logits: f32[*batch, classes] unnormalised class scores.
      labels: int[*batch] class indices in [0, classes).
      where: bool[*batch] (or a prefix of it), True on entries that count; None: all of them.

    Returns:
      f32[] the mean of ``-log softmax(logits)[label]`` over valid entries.
    """
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer class indices; got dtype {labels.dtype}")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits f32[*batch, classes] and labels int[*batch] disagree: logits {logits.shape}, labels {labels.shape}"
        )
    per_entry = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return masked_mean(per_entry, where)


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Binary cross-entropy of independent labels (multi-label tasks), averaged over every valid (example, label).

    Args:
      logits: f32[*batch, labels] one logit per label.
      labels: {0, 1}[*batch, labels], any numeric dtype.
      where: bool[*batch] (an example mask) or bool[*batch, labels]; None: all of them.

    Returns:
      f32[] the mean binary cross-entropy over valid entries (PyTorch's ``BCEWithLogitsLoss`` with a mask).
    """
    if logits.shape != labels.shape:
        raise ValueError(
            f"logits and labels must have the same shape; got logits {logits.shape}, labels {labels.shape}"
        )
    per_entry = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
    return masked_mean(per_entry, where)


def mse(predictions: jax.Array, targets: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Mean squared error over valid entries.

    Args:
      predictions: f32[*shape].
      targets: f32[*shape].
      where: bool[*shape[:k]] or None.

    Returns:
      f32[] mean of ``(predictions - targets) ** 2`` over valid entries.
    """
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions and targets must have the same shape; got {predictions.shape} and {targets.shape}"
        )
    return masked_mean(jnp.square(predictions - targets.astype(predictions.dtype)), where)
