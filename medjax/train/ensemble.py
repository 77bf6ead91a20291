"""Ensembles: N members (seeds) trained in one compiled step on the same batches, each its own train state and key.

The members' states are stacked along a leading axis. On GPU and TPU the step is `jax.vmap` of the one-model step.
On CPU, XLA runs a vmapped convolution as a grouped convolution (2.5-6.5x slower than sequential steps,
../shared/PERF-NOTES.md) and a convolution inside a loop slower still, so a model with convolutions gets one copy of
its step per member in the program and any other model `lax.map` (the members one after another in one loop): see
`strategy` and benchmarks/RESULTS.md.
Either way member i computes exactly what a single run does with seed ``seed + i`` and the ensemble's data order
(``--data-seed``): tested.

Predictions are combined by the task's ``combine`` (mean class probabilities by default); each member is scored too.

Example:
  >>> states = stack([init_train_state(model, tx, batch, key) for key in member_keys])
  >>> states, metrics = ensemble_train_step(states, batch, rngs, task.loss, task.rng_streams, strategy("cpu"))
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from medjax.train.metrics import Mean
from medjax.train.state import TrainState
from medjax.train import steps
from medjax.train.task import LossFn, PredictFn

STRATEGIES = ("vmap", "map", "unroll")


def strategy(backend: str | None = None, step_jaxpr: Any = None) -> str:
    """How to run the members: ``"vmap"`` on GPU and TPU. On CPU, where a vmapped convolution becomes a grouped one
    and a convolution inside a loop runs several times slower (benchmarks/RESULTS.md), ``"unroll"`` (one copy of the
    step per member in the program) for a model with convolutions, else ``"map"`` (``lax.map``: one loop, fastest for
    recurrent and dense models).

    Args:
      backend: the platform; default JAX's.
      step_jaxpr: the jaxpr of one member's step (`jax.make_jaxpr`), to find its convolutions; None: assume none.
    """
    if (backend or jax.default_backend()) != "cpu":
        return "vmap"
    return "unroll" if step_jaxpr is not None and _has_convolution(step_jaxpr.jaxpr) else "map"


def _has_convolution(jaxpr) -> bool:
    for equation in jaxpr.eqns:
        if equation.primitive.name == "conv_general_dilated":
            return True
        for value in equation.params.values():
            for inner in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns") and _has_convolution(inner):
                    return True
    return False


def choose_strategy(states: TrainState, batch: Mapping[str, Any], rngs: jax.Array, loss_fn: LossFn,
                    rng_streams: tuple[str, ...], backend: str | None = None) -> str:
    """`strategy` for this task's step, traced (not run) on member 0."""
    one = jax.make_jaxpr(lambda s, r: steps.step(s, batch, r, loss_fn, rng_streams))(member(states, 0), rngs[0])
    return strategy(backend, one)


def stack(trees: list[Any]) -> Any:
    """Member pytrees stacked along a new leading axis (static fields, such as a state's ``apply_fn``, shared)."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: Any, index: int) -> Any:
    """Member ``index`` of a stacked pytree."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def _over_members(fn: Callable, how: str, *stacked: Any) -> Any:
    if how == "vmap":
        return jax.vmap(fn)(*stacked)
    if how == "map":
        return lax.map(lambda args: fn(*args), stacked)
    count = len(jax.tree_util.tree_leaves(stacked[0])[0])
    return stack([fn(*(member(tree, index) for tree in stacked)) for index in range(count)])


@functools.partial(jax.jit, static_argnames=("loss_fn", "rng_streams", "how"), donate_argnames=("states",))
def ensemble_train_step(states: TrainState, batch: Mapping[str, jax.Array], rngs: jax.Array, loss_fn: LossFn,
                        rng_streams: tuple[str, ...], how: str) -> tuple[TrainState, dict[str, Any]]:
    """One optimizer step of every member on the same batch.

    Returns:
      ``(states, metrics)``: metrics as `medjax.train.steps.train_step`'s, pooled over the members (the losses and
      task metrics as sums over members, so their means are the members' mean; norms averaged) plus
      ``member_loss``: f32[members].
    """
    states, metrics = _over_members(lambda s, r: steps.step(s, batch, r, loss_fn, rng_streams), how, states, rngs)
    pooled = {
        "loss": Mean(jnp.sum(metrics["loss"].total), jnp.sum(metrics["loss"].count)),
        "grad_norm": jnp.mean(metrics["grad_norm"]),
        "param_norm": jnp.mean(metrics["param_norm"]),
        "lr": metrics["lr"][0],
        "task": jax.tree_util.tree_map(jnp.sum, metrics["task"]),
    }
    return states, pooled


@functools.partial(jax.jit, static_argnames=("predict_fn", "how"))
def ensemble_eval_step(states: TrainState, batch: Mapping[str, jax.Array], predict_fn: PredictFn, how: str) -> Any:
    """Every member's predictions on one batch, stacked along a leading member axis."""
    return _over_members(lambda s: predict_fn(s.apply_fn, s.variables, batch), how, states)


def mean_probabilities(stacked: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The default ``combine``: floating entries (class probabilities) averaged over members; ``pred`` recomputed as
    their arg-max when present; every other entry (labels, indices) taken from the first member."""
    combined = {key: value.mean(axis=0) if value.dtype.kind == "f" else value[0] for key, value in stacked.items()}
    if "pred" in combined and "scores" in combined:
        combined["pred"] = combined["scores"].argmax(axis=-1).astype(stacked["pred"].dtype)
    return combined
