"""The train state: everything a training step reads and writes, as one pytree.

`TrainState` holds the step counter, parameters, optimizer state and batch-norm statistics as pytree leaves, and the
model's ``apply`` and the Optax transformation as static fields: jitting a step over a state traces ``apply`` and
``tx`` once, and checkpointing saves only the arrays.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from medjax.train.task import Batch


class TrainState(struct.PyTreeNode):
    """Step, parameters, optimizer state and batch statistics of one model.

    Attributes:
      step: i32[] optimizer steps taken; folds into the dropout key, so a resumed run draws the same masks.
      params: the ``params`` collection.
      opt_state: the Optax state of ``tx``.
      batch_stats: the ``batch_stats`` collection (running means and variances of batch norm); ``{}`` for models
        without batch norm.
      apply_fn: the model's ``apply`` (static).
      tx: the optimizer (static).
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    batch_stats: Any
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, apply_fn: Callable, variables: Any, tx: optax.GradientTransformation) -> "TrainState":
        """A state at step 0 from a model's initial ``variables`` (``{"params": ..., "batch_stats": ...?}``)."""
        unknown = set(variables) - {"params", "batch_stats"}
        if unknown:
            raise ValueError(
                f"the model's variables have collections {sorted(variables)}; the train state keeps only 'params' "
                f"and 'batch_stats' (unexpected: {sorted(unknown)})"
            )
        params = variables["params"]
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            batch_stats=variables.get("batch_stats", {}),
            apply_fn=apply_fn,
            tx=tx,
        )

    @property
    def variables(self) -> dict[str, Any]:
        """The model's variables, as ``apply`` takes them."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}

    def apply_gradients(self, grads: Any, batch_stats: Any) -> "TrainState":
        """One optimizer update with ``grads``; ``batch_stats`` replaces the running statistics."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            batch_stats=batch_stats,
        )


def init_train_state(model: nn.Module, tx: optax.GradientTransformation, batch: Batch, key: jax.Array) -> TrainState:
    """Initialises ``model`` on one (padded) batch and wraps it in a `TrainState`.

    Args:
      model: a Linen module called as ``model.apply(variables, batch, train=...)``.
      tx: the optimizer.
      batch: a batch dict with the shapes and dtypes of the training batches.
      key: the initialisation key (split into the ``params`` and ``dropout`` streams).

    Returns:
      The state at step 0.
    """
    return _create(model, tx, batch, key)


# One jitted program, compiled once per (model, optimizer, batch shapes): initialising a model and its optimizer state
# op by op would compile and run each op apart.
@functools.partial(jax.jit, static_argnames=("model", "tx"))
def _create(model: nn.Module, tx: optax.GradientTransformation, batch: Batch, key: jax.Array) -> TrainState:
    params_key, dropout_key = jax.random.split(key)
    variables = model.init({"params": params_key, "dropout": dropout_key}, batch, train=False)
    return TrainState.create(model.apply, dict(variables), tx)
