"""The jitted training and evaluation steps: top-level pure functions, compiled once per task and batch shape.

The task's ``loss`` and ``predict`` are static arguments (hashed by identity), so a loop that passes the same
functions and same-shaped batches compiles each step exactly once. The state is donated to `train_step`: its buffers
are reused for the new state instead of holding two copies of the parameters and optimizer moments.

Example:
  >>> state, metrics = train_step(state, batch, key, task.loss)
  >>> predictions = eval_step(state, batch, task.predict)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from medjax.train.optim import current_lr
from medjax.train.state import TrainState

LossFn = Callable[[Any, Mapping[str, jax.Array]], tuple[jax.Array, Mapping[str, jax.Array]]]
PredictFn = Callable[[Any, Mapping[str, jax.Array]], Any]


def global_norm(tree: Any) -> jax.Array:
    """f32[] the L2 norm of all the leaves of ``tree`` together (what clipping by global norm measures)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


@functools.partial(jax.jit, static_argnames=("loss_fn",), donate_argnames=("state",))
def train_step(
    state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, loss_fn: LossFn
) -> tuple[TrainState, dict[str, Any]]:
    """One optimizer step on one batch.

    Args:
      state: the train state (donated: do not use it after the call).
      batch: a dict of arrays with a leading batch axis, including ``example_mask`` bool[batch].
      rng: the run's dropout key; the step folds in ``state.step``, so every step draws fresh masks and a resumed run
        draws the same ones.
      loss_fn: ``loss_fn(outputs, batch) -> (f32[] mean loss over valid examples, {name: f32[] per-batch sum})``.

    Returns:
      ``(new_state, metrics)``, metrics being f32[] ``loss``, ``grad_norm`` (before clipping), ``param_norm`` (after
      the update), ``lr`` (the rate of this step), i32[] ``examples`` (valid rows) and ``sums`` (the loss's sums).
    """
    dropout_key = jax.random.fold_in(rng, state.step)

    def objective(params):
        variables = {**state.variables, "params": params}
        # Batch norm updates its running statistics in training mode; a model without it returns no mutations.
        outputs, mutated = state.apply_fn(
            variables, batch, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
        )
        loss, sums = loss_fn(outputs, batch)
        return loss, (sums, mutated.get("batch_stats", state.batch_stats))

    (loss, (sums, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, batch_stats)
    metrics = {
        "loss": loss,
        "grad_norm": global_norm(grads),
        "param_norm": global_norm(new_state.params),
        "lr": current_lr(new_state.opt_state),
        "examples": jnp.sum(batch["example_mask"].astype(jnp.int32)),
        "sums": dict(sums),
    }
    return new_state, metrics


@functools.partial(jax.jit, static_argnames=("predict_fn",))
def eval_step(state: TrainState, batch: Mapping[str, jax.Array], predict_fn: PredictFn) -> Any:
    """The task's predictions on one batch, with the model in inference mode (no dropout, running batch-norm stats).

    Args:
      state: the train state (not donated).
      batch: a dict of arrays with a leading batch axis, including ``example_mask``.
      predict_fn: ``predict_fn(outputs, batch) -> pytree of arrays``, each with a leading batch axis.

    Returns:
      What ``predict_fn`` returns, padding rows included (the host drops them using ``example_mask``).
    """
    outputs = state.apply_fn(state.variables, batch, train=False)
    return predict_fn(outputs, batch)
