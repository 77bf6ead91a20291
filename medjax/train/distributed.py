"""Several processes, one run: `initialize()` joins the processes of a multi-process job, and does nothing alone.

Call it first thing (before any JAX computation). It calls `jax.distributed.initialize()` only when the environment
says this process is one of several:

- ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0) with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (or, in
  a Kubernetes indexed Job, ``JOB_COMPLETION_INDEX``): an explicit launch (several shells on one machine, any
  cluster);
- ``SLURM_JOB_ID`` with ``SLURM_NTASKS`` > 1: a Slurm job step of several tasks (``srun``);
- ``OMPI_MCA_orte_hnp_uri``: a process started by Open MPI's ``mpirun``;
- ``TPU_WORKER_HOSTNAMES`` listing several hosts: a Cloud TPU pod slice.

In the last three JAX finds the coordinator, process count and index itself. Afterwards `jax.devices()` lists the
devices of every process, and `medjax.train.sharding.make_mesh` spans them all.

A job of several processes must never hang on one that failed. So, once joined:

- SIGTERM ends the process at once, as it does alone (JAX's preemption notifier caught it, to checkpoint at a sync
  point medjax never reaches, which left the process deaf to SIGTERM); its last checkpoint is whole, as after any
  kill, and the others end as below.
- A process that fails calls `fail_fast`: it posts its one-line error to the coordinator's key-value store and exits
  without JAX's shutdown barrier (which waits minutes for the others). A watcher thread in every other process reads
  the post within a second and ends its process with ``medjax: error: process <i> failed: <its line>``, exit status 2.
- A process that dies without a word (SIGKILL, SIGTERM, a lost machine) stops bumping its heartbeat key: after
  ``MEDJAX_HEARTBEAT_SECONDS`` (default 10) the watchers name it and end their processes the same way (JAX's own
  heartbeat, three times longer, is the backstop). A process that finished posts so (`finish`) and is not waited on.
- A coordinator that cannot be reached ends the wait after ``MEDJAX_CONNECT_SECONDS`` (default 120) in one line.

Example:
  >>> from medjax.train import distributed
  >>> distributed.initialize()  # False on a single machine
  False
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Mapping

import jax

from medjax.errors import ConfigError, UserError

STATE_PREFIX = "medjax/processes/"
FAILED_KEY = STATE_PREFIX + "failed"
ALIVE_PREFIX = STATE_PREFIX + "alive-"
DONE_PREFIX = STATE_PREFIX + "done-"
# What a collective's error says when the process at its other end went away (Gloo on CPU, NCCL on GPU).
_COLLECTIVE_FAILURES = ("Gloo", "NCCL", "Connection reset", "Connection closed", "by peer")
_heartbeat_seconds = 10  # MEDJAX_HEARTBEAT_SECONDS of the run, once joined


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


def explicit_launch(environ: Mapping[str, str]) -> dict[str, object]:
    """``coordinator_address``, ``num_processes`` and ``process_id`` of an explicit launch, checked.

    Raises:
      ConfigError: a variable missing, not a whole number, or a process id outside ``[0, JAX_NUM_PROCESSES)``,
        naming the variable.
    """
    values = {}
    for name, fallback in (("JAX_NUM_PROCESSES", None), ("JAX_PROCESS_ID", "JOB_COMPLETION_INDEX")):
        text = environ.get(name) or (environ.get(fallback) if fallback else None)
        if not text:
            raise ConfigError(name, "expected it beside JAX_COORDINATOR_ADDRESS: an explicit multi-process launch "
                                    "needs all three (the coordinator's host:port, the number of processes, this "
                                    "process's index), got nothing")
        try:
            values[name] = int(text)
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {text!r:.40}") from None
    count, index = values["JAX_NUM_PROCESSES"], values["JAX_PROCESS_ID"]
    if count < 1:
        raise ConfigError("JAX_NUM_PROCESSES", f"expected 1 or more processes, got {count}")
    if not 0 <= index < count:
        raise ConfigError("JAX_PROCESS_ID", f"expected a process index from 0 to {count - 1} "
                                            f"(JAX_NUM_PROCESSES={count}), got {index}")
    address = environ["JAX_COORDINATOR_ADDRESS"]
    if ":" not in address:
        raise ConfigError("JAX_COORDINATOR_ADDRESS", f"expected host:port of process 0, got {address!r:.60}")
    return {"coordinator_address": address, "num_processes": count, "process_id": index}


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(name, f"expected a whole number of seconds, got {text!r:.40}") from None
    if value < 1:
        raise ConfigError(name, f"expected 1 second or more, got {value}")
    return value


def initialize(environ: Mapping[str, str] | None = None) -> bool:
    """Calls `jax.distributed.initialize()` when running as one process of a multi-process job.

    Args:
      environ: the environment to read; ``os.environ`` by default.

    Returns:
      True if it joined the other processes, False (and did nothing) on a single host.

    Raises:
      ConfigError: a bad launch variable, named.
      UserError: the coordinator was not reached in ``MEDJAX_CONNECT_SECONDS``.
    """
    environ = os.environ if environ is None else environ
    kind = multi_host_environment(environ)
    if kind is None:
        return False
    launch = explicit_launch(environ) if kind == "explicit" else {}
    connect = _seconds(environ, "MEDJAX_CONNECT_SECONDS", 120)
    heartbeat = _seconds(environ, "MEDJAX_HEARTBEAT_SECONDS", 10)
    where = launch.get("coordinator_address", f"the {kind} launch's coordinator")
    expected = f"expected all {launch.get('num_processes', 'the')} processes to join through the coordinator"
    # JAX aborts the process with a C++ stack trace when joining times out; this timer speaks first, in one line.
    timer = threading.Timer(connect, _end, [f"{where}: {expected} within {connect} s (MEDJAX_CONNECT_SECONDS), "
                                            f"got no answer: is process 0 running, at that address?"])
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(**launch, initialization_timeout=connect + 60,
                                   heartbeat_timeout_seconds=3 * heartbeat)
    except (RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(where, f"{expected}, got: {first}") from None
    finally:
        timer.cancel()
    # JAX's preemption notifier caught SIGTERM (to checkpoint at a sync point medjax never reaches), leaving the process
    # deaf to it; Orbax still asks that notifier, which now never fires.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    global _heartbeat_seconds
    _heartbeat_seconds = heartbeat
    if _client() is not None:
        _Watcher(heartbeat).start()
    return True


def active() -> bool:
    """Whether this process is one of several joined by `initialize`."""
    return _client() is not None and jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes the run's files: process 0 of a multi-process run, or the only process."""
    return jax.process_index() == 0 if active() else True


def barrier(name: str) -> None:
    """Waits until every process reaches ``name``; a no-op with one process."""
    if active():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def fail_fast(message: str, status: int) -> None:
    """Ends this process of a multi-process run now, having told the others why; returns at once with one process.

    Posts ``message`` under ``medjax/failed`` (the first failure wins), flushes the output and exits with ``status``
    through `os._exit`, skipping JAX's shutdown barrier, which would wait for processes that are waiting for this one.
    """
    if not active():
        return
    try:
        _client().key_value_set(FAILED_KEY, f"{jax.process_index()}\t{message}")
    except Exception:  # noqa: BLE001 - another process posted first, or the coordinator is gone: exit regardless
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def await_the_cause(err: BaseException) -> None:
    """When ``err`` is a collective that failed because another process went away, waits for the watcher to end this
    process with the line that names that process (at most the heartbeat timeout and a little); returns at once for
    other errors, which are this process's own."""
    if active() and any(mark in str(err) for mark in _COLLECTIVE_FAILURES):
        time.sleep(_heartbeat_seconds + 3)


def finish() -> None:
    """Posts that this process finished its work, so that the others' watchers do not take its exit for a failure."""
    if active():
        _client().key_value_set(f"{DONE_PREFIX}{jax.process_index()}", "1", allow_overwrite=True)


def _end(message: str) -> None:
    """Ends this process now with one line and exit status 2, past JAX's exit barrier."""
    print(f"medjax: error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2)


def _client():
    """JAX's distributed-runtime client (its key-value store and liveness), None before joining; JAX has no public
    accessor for it (`jax.experimental.multihost_utils` uses the same)."""
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


class _Watcher(threading.Thread):
    """Every second: posts this process's heartbeat, and ends this process if another posted a failure, stopped
    posting heartbeats for ``heartbeat`` seconds without having posted that it finished, or the coordinator is gone.

    Its own key-value heartbeat (a counter each process bumps, judged by when it last changed on this process's clock)
    speaks before JAX's coordination service, whose timeout is set three times longer, would abort the process with a
    C++ stack trace.
    """

    def __init__(self, heartbeat: int):
        super().__init__(name="medjax-watch-processes", daemon=True)
        self.heartbeat = heartbeat

    def run(self) -> None:
        client, me, count = _client(), jax.process_index(), jax.process_count()
        started = time.monotonic()
        seen: dict[int, tuple[str | None, float]] = {}  # process -> (its last heartbeat, when it changed here)
        beat = 0
        while True:
            beat += 1
            try:
                client.key_value_set(f"{ALIVE_PREFIX}{me}", str(beat), allow_overwrite=True)
                entries = dict(client.key_value_dir_get(STATE_PREFIX))
            except Exception:  # noqa: BLE001 - the coordinator is gone
                _end("lost the coordinator (process 0): it stopped, or its machine is gone")
            failed = entries.get(FAILED_KEY)
            if failed:
                index, _, message = failed.partition("\t")
                if index != str(me):
                    _end(f"process {index} failed: {message}")
            now = time.monotonic()
            silent = []
            for other in range(count):
                if other == me or f"{DONE_PREFIX}{other}" in entries:
                    continue
                value = entries.get(f"{ALIVE_PREFIX}{other}")
                if value is None or seen.get(other, (None,))[0] != value:
                    seen[other] = (value, now if value is not None else started)
                if now - seen[other][1] > self.heartbeat:
                    silent.append(other)
            if silent:
                _end(f"process {', '.join(map(str, silent))} stopped without a word (killed, or its machine lost) "
                     f"for over {self.heartbeat} s (MEDJAX_HEARTBEAT_SECONDS); start all processes again to resume "
                     f"from the last checkpoint")
            time.sleep(1.0)

