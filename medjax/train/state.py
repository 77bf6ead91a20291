"""The train state: everything a training step reads and writes, as one pytree.

`TrainState` holds the step counter, parameters, optimizer state and the model's other variable collections
(``batch_stats`` of batch norm, or any other a model declares) as pytree leaves, and the model's ``apply`` and the Optax
transformation as static fields: jitting a step over a state traces ``apply`` and ``tx`` once, and checkpointing saves
only the arrays.
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
    """Step, parameters, optimizer state and the other variable collections of one model.

    Attributes:
      step: i32[] optimizer steps taken; folds into the random keys, so a resumed run draws the same numbers.
      params: the ``params`` collection.
      opt_state: the Optax state of ``tx``.
      collections: every other collection ``init`` made, by name (``{"batch_stats": ...}`` for batch norm; ``{}``
        for a model with none); all of them are mutable in training.
      apply_fn: the model's ``apply`` (static).
      tx: the optimizer (static).
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    collections: dict[str, Any]
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, apply_fn: Callable, variables: Any, tx: optax.GradientTransformation) -> "TrainState":
        """A state at step 0 from a model's initial ``variables`` (``{"params": ..., other collections...}``)."""
        params = variables["params"]
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            collections={name: value for name, value in variables.items() if name != "params"},
            apply_fn=apply_fn,
            tx=tx,
        )

    @property
    def variables(self) -> dict[str, Any]:
        """The model's variables, as ``apply`` takes them."""
        return {"params": self.params, **self.collections}

    def apply_gradients(self, grads: Any, collections: Any) -> "TrainState":
        """One optimizer update with ``grads``; ``collections`` replaces the other collections (new statistics)."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            collections=collections,
        )


def init_train_state(model: nn.Module, tx: optax.GradientTransformation, batch: Batch, key: jax.Array,
                     rng_streams: tuple[str, ...] = ("dropout",)) -> TrainState:
    """Initialises ``model`` on one (padded) batch and wraps it in a `TrainState`.

    Args:
      model: a Linen module called as ``model.apply(variables, batch, train=...)``.
      tx: the optimizer.
      batch: a batch dict with the shapes and dtypes of the training batches.
      key: the initialisation key (split into ``params`` and one key per stream of ``rng_streams``).
      rng_streams: the model's named random streams.

    Returns:
      The state at step 0.
    """
    return _create(model, tx, batch, key, tuple(rng_streams))


# One jitted program, compiled once per (model, optimizer, batch shapes): initialising a model and its optimizer state
# op by op would compile and run each op apart.
@functools.partial(jax.jit, static_argnames=("model", "tx", "rng_streams"))
def _create(model: nn.Module, tx: optax.GradientTransformation, batch: Batch, key: jax.Array,
            rng_streams: tuple[str, ...]) -> TrainState:
    keys = jax.random.split(key, 1 + len(rng_streams))
    rngs = {"params": keys[0], **{name: k for name, k in zip(rng_streams, keys[1:])}}
    variables = model.init(rngs, batch, train=False)
    # Sown or cached values are outputs of a call, not state to carry from step to step.
    variables = {name: value for name, value in variables.items() if name not in ("intermediates", "cache")}
    return TrainState.create(model.apply, dict(variables), tx)
