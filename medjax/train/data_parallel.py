"""The data-parallel step written out: `jax.shard_map` with explicit collectives, and `jax.pmap`.

`medjax.train.sharding` (``jit`` + ``NamedSharding``) is what the loop uses: XLA partitions the one-device step and
inserts the all-reduces itself, batch norm then sees the whole batch, and dropout masks are those of one device. Use
the explicit forms when the collectives must be yours (a custom reduction, gradient compression, per-device state):

- `shard_map_train_step(mesh, loss_fn)`: each device computes the loss of its rows; gradients, losses and metrics are
  summed over the ``data`` axis with `lax.psum`, each device's gradient weighted by its number of real rows, so the
  result is the gradient of the mean over the whole batch — the same as the NamedSharding step for any loss that
  averages over examples (or tokens).
- `pmap_train_step(loss_fn)`: the same through `jax.pmap` (a compatibility path: pmap is now jit + shard_map), the
  batch reshaped to ``[devices, rows per device, ...]`` and the state replicated along a leading device axis.

Two differences from the NamedSharding step are inherent, not bugs: batch norm normalises with each device's own
statistics (as PyTorch's DDP without SyncBatchNorm), and dropout masks are drawn per device.

Example:
  >>> step = shard_map_train_step(mesh, task.loss)
  >>> state, metrics = step(state, sharding.shard_batch(batch, mesh), rng)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from medjax.train.sharding import DATA_AXIS
from medjax.train.state import TrainState
from medjax.train.steps import apply_update, loss_and_grads
from medjax.train.task import LossFn


def _all_devices_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, loss_fn: LossFn,
                      rng_streams: tuple[str, ...]) -> tuple[TrainState, dict[str, Any]]:
    """One step inside a device-parallel context whose axis is ``DATA_AXIS``: local gradients, then psums."""
    local_rows = jnp.sum(batch["example_mask"]).astype(jnp.float32)
    rng = jax.random.fold_in(rng, lax.axis_index(DATA_AXIS))  # each device its own dropout masks
    loss, grads, task_metrics, collections = loss_and_grads(state, batch, rng, loss_fn, rng_streams)
    total_rows = lax.psum(local_rows, DATA_AXIS)
    # The local loss is a mean over the local rows: weighting by them makes the sum the whole batch's mean.
    share = local_rows / jnp.maximum(total_rows, 1.0)
    grads = lax.psum(jax.tree_util.tree_map(lambda g: g * share, grads), DATA_AXIS)
    loss = lax.psum(loss * share, DATA_AXIS)
    task_metrics = lax.psum(task_metrics, DATA_AXIS)
    collections = lax.pmean(collections, DATA_AXIS)
    return apply_update(state, loss, grads, task_metrics, collections, total_rows)


def shard_map_train_step(mesh: Mesh, loss_fn: LossFn, rng_streams: tuple[str, ...] = ("dropout",)) -> Callable:
    """``step(state, batch, rng) -> (state, metrics)`` as an explicit `jax.shard_map` over ``mesh``'s data axis.

    The state and key are replicated, the batch split along its leading axis (`medjax.train.sharding.shard_batch`).
    """
    body = functools.partial(_all_devices_step, loss_fn=loss_fn, rng_streams=rng_streams)
    mapped = jax.shard_map(body, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(DATA_AXIS), PartitionSpec()),
                           out_specs=PartitionSpec(), check_vma=False)
    return jax.jit(mapped, donate_argnums=0)


def pmap_train_step(loss_fn: LossFn, rng_streams: tuple[str, ...] = ("dropout",),
                    devices: list | None = None) -> Callable:
    """``step(state, batch, rng) -> (state, metrics)`` through `jax.pmap`, for state and key replicated along a leading
    device axis (`replicate_for_pmap`) and a batch of ``[devices, rows, ...]`` (`split_for_pmap`)."""
    body = functools.partial(_all_devices_step, loss_fn=loss_fn, rng_streams=rng_streams)
    return jax.pmap(body, axis_name=DATA_AXIS, devices=devices, donate_argnums=0)


def replicate_for_pmap(tree: Any, devices: int) -> Any:
    """A pytree (the state, a key) stacked ``devices`` times along a new leading axis, as `jax.pmap` takes it."""
    return jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf] * devices), tree)


def split_for_pmap(batch: Mapping[str, Any], devices: int) -> dict[str, Any]:
    """``[rows, ...] -> [devices, rows / devices, ...]`` for every entry of a host batch."""
    return {key: value.reshape(devices, value.shape[0] // devices, *value.shape[1:]) for key, value in batch.items()}
