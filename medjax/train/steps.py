"""The jitted training and evaluation steps: top-level pure functions, compiled once per task and batch shape.

The task's ``loss`` and ``predict`` (and its random stream names) are static arguments, hashed by identity, so a loop
that passes the same functions and same-shaped batches compiles each step exactly once. The state is donated to
`train_step`: its buffers are reused for the new state instead of holding two copies of the parameters and moments.

Example:
  >>> state, metrics = train_step(state, batch, key, task.loss, task.rng_streams)
  >>> predictions = eval_step(state, batch, task.predict)
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from medjax.train.metrics import Mean
from medjax.train.optim import current_lr
from medjax.train.state import TrainState
from medjax.train.task import LossFn, PredictFn


def global_norm(tree: Any) -> jax.Array:
    """f32[] the L2 norm of all the leaves of ``tree`` together (what clipping by global norm measures)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def step_rngs(rng: jax.Array, step: jax.Array, streams: tuple[str, ...]) -> dict[str, jax.Array]:
    """One key per named stream for optimizer step ``step``: fresh every step, the same on a resumed run."""
    key = jax.random.fold_in(rng, step)
    return {name: jax.random.fold_in(key, index) for index, name in enumerate(streams)}


def loss_and_grads(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, loss_fn: LossFn,
                   rng_streams: tuple[str, ...] = ("dropout",)):
    """The loss of one batch, its gradient with respect to the parameters, the task's metrics and the updated
    collections (new batch statistics): everything a step computes before the optimizer update."""

    def objective(params):
        variables = {**state.variables, "params": params}
        # Batch norm updates its running statistics in training mode; a model without state returns no mutations.
        outputs, mutated = state.apply_fn(
            variables, batch, train=True, rngs=step_rngs(rng, state.step, rng_streams), mutable=list(state.collections)
        )
        loss, metrics = loss_fn(outputs, batch)
        return loss, (metrics, {**state.collections, **mutated})

    (loss, (task_metrics, collections)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    return loss, grads, dict(task_metrics), collections


def apply_update(state: TrainState, loss: jax.Array, grads: Any, task_metrics: Mapping[str, Any], collections: Any,
                 examples: jax.Array) -> tuple[TrainState, dict[str, Any]]:
    """The optimizer update with ``grads`` and the step's metrics (see `train_step`)."""
    new_state = state.apply_gradients(grads, collections)
    metrics = {
        "loss": Mean.weighted(loss, examples),
        "grad_norm": global_norm(grads),
        "param_norm": global_norm(new_state.params),
        "lr": current_lr(new_state.opt_state),
        "task": dict(task_metrics),
    }
    return new_state, metrics


def step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, loss_fn: LossFn,
         rng_streams: tuple[str, ...] = ("dropout",)) -> tuple[TrainState, dict[str, Any]]:
    """`train_step` unjitted: what an ensemble maps over its members."""
    loss, grads, task_metrics, collections = loss_and_grads(state, batch, rng, loss_fn, rng_streams)
    return apply_update(state, loss, grads, task_metrics, collections, jnp.sum(batch["example_mask"]))


@functools.partial(jax.jit, static_argnames=("loss_fn", "rng_streams"), donate_argnames=("state",))
def train_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, loss_fn: LossFn,
               rng_streams: tuple[str, ...] = ("dropout",)) -> tuple[TrainState, dict[str, Any]]:
    """One optimizer step on one batch.

    Args:
      state: the train state (donated: do not use it after the call).
      batch: a dict of arrays with a leading batch axis, including ``example_mask`` bool[batch].
      rng: the run's key; each stream's key folds in ``state.step``.
      loss_fn: ``loss_fn(outputs, batch) -> (f32[] mean loss over valid items, {name: Mean})``.
      rng_streams: the model's named random streams.

    Returns:
      ``(new_state, metrics)``: ``loss`` (a `Mean` over the batch's valid examples), ``grad_norm`` (before
      clipping), ``param_norm`` (after the update), ``lr`` (the rate of this step), and ``task`` (the loss's metrics).
    """
    return step(state, batch, rng, loss_fn, rng_streams)


@functools.partial(jax.jit, static_argnames=("predict_fn",))
def eval_step(state: TrainState, batch: Mapping[str, jax.Array], predict_fn: PredictFn) -> Any:
    """The task's predictions on one batch, with the model in inference mode (no dropout, running statistics).

    Args:
      state: the train state (not donated).
      batch: a dict of arrays with a leading batch axis, including ``example_mask``.
      predict_fn: ``predict_fn(apply, variables, batch) -> pytree of arrays``, each with a leading batch axis.

    Returns:
      What ``predict_fn`` returns, padding rows included (the host drops them using ``example_mask``).
    """
    return predict_fn(state.apply_fn, state.variables, batch)
