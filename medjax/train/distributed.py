"""Multi-host start-up: `initialize()` joins the processes of a multi-host job, and does nothing on one machine.

Call it first thing in a program (before any JAX computation). It calls `jax.distributed.initialize()` only when the
environment says this process is one of several:

- ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0) with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``: an
  explicit launch (any cluster, or several shells);
- ``SLURM_JOB_ID`` with ``SLURM_NTASKS`` > 1: a Slurm job step of several tasks;
- ``OMPI_MCA_orte_hnp_uri``: a process started by Open MPI's ``mpirun``;
- ``TPU_WORKER_HOSTNAMES`` listing several hosts: a Cloud TPU pod slice.

In the last three JAX finds the coordinator, process count and index itself. Afterwards `jax.devices()` lists the
devices of every process, and `medjax.train.sharding.make_mesh` spans them all.

Example:
  >>> from medjax.train import distributed
  >>> distributed.initialize()  # False on a single machine
  False
"""

from __future__ import annotations

import os
from typing import Mapping

import jax


def multi_host_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The kind of multi-host launch the environment variables describe: "explicit", "slurm", "mpi", "tpu", or None."""
    environ = os.environ if environ is None else environ
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return "explicit"
    if environ.get("SLURM_JOB_ID") and int(environ.get("SLURM_NTASKS", "1")) > 1:
        return "slurm"
    if environ.get("OMPI_MCA_orte_hnp_uri"):
        return "mpi"
    if "," in environ.get("TPU_WORKER_HOSTNAMES", ""):
        return "tpu"
    return None


def initialize(environ: Mapping[str, str] | None = None) -> bool:
    """Calls `jax.distributed.initialize()` when running as one process of a multi-host job.

    Args:
      environ: the environment to read; ``os.environ`` by default.

    Returns:
      True if it initialised the distributed runtime, False (and did nothing) on a single host.

    Raises:
      ValueError: an explicit launch (``JAX_COORDINATOR_ADDRESS``) without ``JAX_NUM_PROCESSES`` or
        ``JAX_PROCESS_ID``.
    """
    environ = os.environ if environ is None else environ
    kind = multi_host_environment(environ)
    if kind is None:
        return False
    if kind == "explicit":
        missing = [name for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if not environ.get(name)]
        if missing:
            raise ValueError(
                f"JAX_COORDINATOR_ADDRESS is set but {' and '.join(missing)} is not: an explicit multi-host launch "
                f"needs all three (the coordinator's host:port, the number of processes, this process's index)"
            )
        jax.distributed.initialize(
            coordinator_address=environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(environ["JAX_NUM_PROCESSES"]),
            process_id=int(environ["JAX_PROCESS_ID"]),
        )
    else:
        jax.distributed.initialize()
    return True
