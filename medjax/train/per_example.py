"""Per-example gradients: `jax.vmap` of `jax.grad` over the examples of a batch, for any task's loss.

Each example is run through the model alone, as a batch of one (its own ``example_mask``), so the gradient is that of
its loss by itself; what DP-SGD clips, and what influence and data-valuation methods start from. Collections the model
updates in training (batch statistics) are read, not updated: a batch of one has no batch statistics worth keeping.

Example:
  >>> grads = per_example_grads(state, batch, task.loss, rng)   # each leaf: [batch, *param.shape]
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from medjax.train.state import TrainState
from medjax.train.steps import loss_and_grads
from medjax.train.task import LossFn


def per_example_grads(state: TrainState, batch: Mapping[str, jax.Array], loss_fn: LossFn, rng: jax.Array,
                      rng_streams: tuple[str, ...] = ("dropout",)) -> Any:
    """The gradient of each example's own loss with respect to ``state.params``.

    Args:
      state: the train state (not changed).
      batch: a dict of arrays with a leading batch axis B, including ``example_mask``; a padding row's gradient is
        whatever the loss gives an example masked out (zero for the masked means of medjax's losses).
      loss_fn: the task's ``loss(outputs, batch) -> (loss, metrics)``.
      rng: the key; example i draws its dropout from ``fold_in(rng, i)``.
      rng_streams: the model's named random streams.

    Returns:
      A pytree like ``state.params`` whose leaves have a leading axis B.
    """
    return per_example_losses_and_grads(state, batch, loss_fn, rng, rng_streams)[1]


def per_example_losses_and_grads(state: TrainState, batch: Mapping[str, jax.Array], loss_fn: LossFn, rng: jax.Array,
                                 rng_streams: tuple[str, ...] = ("dropout",)) -> tuple[jax.Array, Any, Any]:
    """As `per_example_grads`, with each example's loss (f32[B]) and metrics (leaves with a leading axis B) too."""

    def one(example, index):
        alone = jax.tree_util.tree_map(lambda leaf: leaf[None], example)
        loss, grads, metrics, _ = loss_and_grads(state, alone, jax.random.fold_in(rng, index), loss_fn, rng_streams)
        return loss, grads, metrics

    rows = batch["example_mask"].shape[0]
    return jax.vmap(one)(dict(batch), jnp.arange(rows))
