"""The medjax side of a benchmark: one training step (forward, backward, Adam) compiled once, timed in this process.

The step is a top-level pure function jitted with the state donated, so parameters and Adam moments are updated in
place rather than copied each step; it is lowered and compiled explicitly, which times compilation apart from the steps
and makes a silent recompilation impossible (a compiled executable refuses inputs of another shape instead of tracing
again). The batch is put on the device once, as the PyTorch side builds its tensors once.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping

import flax
import jax
import numpy as np
import optax

from benchmarks import measure, workloads
from medjax.train.precision import policy_of

# Both sides train with Adam at the tutorial's learning rate and the libraries' common defaults (b1 0.9, b2 0.999,
# eps 1e-8), so the update does the same arithmetic.
LEARNING_RATE = 1e-3

State = dict[str, Any]


def train_step(loss: Callable, model: Any, tx: optax.GradientTransformation, state: State,
               batch: Mapping[str, jax.Array]):
    """One training step: ``(state, batch) -> (state, loss before the update)``.

    Args:
      loss: the workload's ``loss(model, variables, batch) -> (scalar, updated collections)``.
      model: the workload's Linen module, under the run's precision policy (`medjax.train.precision`: with ``bf16``
        the forward and backward passes compute in bfloat16 on a copy of the float32 parameters, as `medjax train
        --precision bf16` does; the update stays float32).
      tx: the optimizer.
      state: ``{"params", "collections" (batch statistics and the like, possibly empty), "opt_state"}``.
      batch: the workload's inputs and targets (float32; the policy casts what the model's layers receive).
    """

    def objective(params):
        return loss(model, {"params": params, **state["collections"]}, batch)

    (value, collections), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "collections": {**state["collections"], **collections}, "opt_state": opt_state}, value


def initial_state(variables: Mapping[str, Any], tx: optax.GradientTransformation) -> State:
    """The step's state from initial variables (``{"params": ..., other collections}``), on the default device."""
    variables = jax.device_put(dict(variables))
    params = variables.pop("params")
    return {"params": params, "collections": variables, "opt_state": tx.init(params)}


def compile_step(name: str, sizes: Mapping[str, int], state: State, batch: Mapping[str, jax.Array],
                 precision: str = "fp32"):
    """Lowers and compiles workload ``name``'s training step for these shapes under ``precision`` (`train_step`).

    Returns:
      (compiled step, seconds to trace and lower, seconds to compile).
    """
    module = workloads.medjax_module(name)
    step = jax.jit(
        functools.partial(train_step, module.loss, policy_of(precision).wrap(module.make_model(sizes)),
                          optax.adam(LEARNING_RATE)),
        donate_argnums=0,
    )
    start = time.perf_counter()
    lowered = step.lower(state, batch)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    return compiled, lowered_at - start, time.perf_counter() - lowered_at


def prepare(name: str, sizes: Mapping[str, int], seed: int, path: str) -> float:
    """Builds workload ``name``'s batch and initial variables, saves them for both sides, returns the medjax loss."""
    module = workloads.medjax_module(name)
    batch = module.make_batch(sizes, seed)
    model = module.make_model(sizes)
    # Jitted: one compilation instead of one per operation. The non-partitionable threefry (jax's default before 0.5)
    # because XLA CPU compiles ResNet-18's ~100 partitionable random draws 4x slower (54 s against 13 s, loaded CPU).
    with jax.threefry_partitionable(False):
        variables = jax.jit(functools.partial(module.init, model))(jax.random.PRNGKey(seed), batch)
    variables = flax.core.unfreeze(variables)
    workloads.save_start(path, batch, jax.device_get(variables))
    value, _ = jax.jit(functools.partial(module.loss, model))(variables, batch)
    return float(value)


def run(name: str, sizes: Mapping[str, int], start_path: str, steps: int, warmup: int, precision: str = "fp32"
        ) -> dict:
    """Times workload ``name``'s training step under ``precision`` (`train_step`) from the start saved at
    ``start_path``; returns the record."""
    batch_np, variables = workloads.load_start(start_path)
    tx = optax.adam(LEARNING_RATE)
    state = initial_state(variables, tx)
    batch = jax.device_put(batch_np)
    compiled, lower_s, compile_s = compile_step(name, sizes, state, batch, precision)

    start = time.perf_counter()
    state, first_loss = jax.block_until_ready(compiled(state, batch))
    first_step_s = time.perf_counter() - start

    def one_step():
        nonlocal state
        state, value = compiled(state, batch)
        # Blocking on the whole state, not only the loss, so the optimizer update is inside the measured time.
        return jax.block_until_ready((state, value))

    for _ in range(warmup):
        one_step()
    seconds, faults = measure.time_steps(one_step, steps)
    _, last_loss = one_step()
    return {
        "framework": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "lower_s": lower_s,
        "compile_s": lower_s + compile_s,
        "first_step_s": first_step_s,
        "first_loss": float(first_loss),
        "last_loss": float(last_loss),
        "timing": measure.summarize(seconds),
        "step_ms": [float(s * 1e3) for s in seconds],
        "faults_per_step": faults,
        "peak_rss_bytes": measure.peak_rss_bytes(),
        "device_peak_bytes": (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use"),
        "precision": precision,
        "param_count": int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(state["params"]))),
    }
