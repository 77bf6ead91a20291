"""Data parallelism with `jax.jit` and `NamedSharding`: the batch is split over a one-axis mesh, the state replicated.

The jitted steps need no change for this: XLA sees a batch sharded along its leading axis and a replicated state,
computes each device's part of the loss and inserts the all-reduce of the gradients (and of batch-norm statistics,
which are therefore those of the whole batch, as on one device).

Multi-host (after `medjax.train.distributed.initialize()`): the mesh spans every device of every process, every
process reads the same global batch and hands its own contiguous slice to its devices
(`jax.make_array_from_process_local_data`); predictions are gathered back with `process_allgather`.

Example:
  >>> mesh = make_mesh(num_devices=2)
  >>> state = replicate(state, mesh)
  >>> batch = shard_batch({"x": np.zeros((8, 3), np.float32)}, mesh)  # 4 rows per device
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from medjax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
    """A one-axis mesh (axis ``"data"``) over the first ``num_devices`` devices; 0 means all of them.

    With several processes the mesh always spans all devices of all processes (``num_devices`` must be 0 or that
    total).
    """
    devices = jax.devices() if jax.process_count() > 1 else jax.local_devices()
    if num_devices < 0 or num_devices > len(devices):
        raise ConfigError("--num-devices", f"expected 0 (all) to {len(devices)} (the devices present), got "
                                           f"{num_devices}")
    if jax.process_count() > 1 and num_devices not in (0, len(devices)):
        raise ValueError(
            f"with {jax.process_count()} processes the mesh spans all {len(devices)} devices; "
            f"got num_devices={num_devices}"
        )
    return Mesh(np.asarray(devices[: num_devices or len(devices)]), (DATA_AXIS,))


def check_divisible(batch_size: int, mesh: Mesh, name: str) -> None:
    """Raises ValueError unless ``batch_size`` splits evenly over the mesh (and over the processes)."""
    if batch_size < 1 or batch_size % mesh.size:
        raise ConfigError("--" + name.replace("_", "-"), f"expected a positive multiple of the {mesh.size} devices "
                                                         f"the batch is split over, got {batch_size}")


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts a pytree (the train state, a key) on every device of ``mesh``; with several processes, each process
    passes the same values and builds its own devices' copies (`jax.device_put` of a process's local arrays onto a
    mesh spanning processes made arrays whose shards Orbax could not read)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, replicated)

    def global_copy(leaf):
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_callback(host.shape, replicated, lambda index: host[index])

    return jax.tree_util.tree_map(global_copy, tree)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Splits a host batch along its leading axis over the mesh.

    Args:
      batch: a dict of NumPy arrays with a common leading axis of ``global_batch`` rows, divisible by the mesh size;
        every process passes the same global batch.
      mesh: from `make_mesh`.

    Returns:
      The same dict of global `jax.Array`, each device holding ``global_batch / mesh.size`` rows.
    """
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    processes, index = jax.process_count(), jax.process_index()
    sharded = {}
    for key, value in batch.items():
        rows = value.shape[0]
        if rows % mesh.size:
            raise ValueError(f"batch[{key!r}] has {rows} rows, not a multiple of the {mesh.size} devices")
        local = rows // processes
        sharded[key] = jax.make_array_from_process_local_data(
            sharding, value[index * local : (index + 1) * local], value.shape
        )
    return sharded


def to_host(tree: Any) -> Any:
    """Gathers a pytree of (possibly sharded, possibly multi-process) arrays into NumPy arrays on every host."""
    return multihost_utils.process_allgather(tree, tiled=True)
