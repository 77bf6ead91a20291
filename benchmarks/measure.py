"""Timing a training step and reading the process's own costs, the same way for both frameworks.

Nothing here imports JAX or PyTorch: a step is any zero-argument callable that returns only once its work is done (the
JAX side blocks on its outputs, PyTorch on CPU runs eagerly), so both sides are timed by the same code.
"""

from __future__ import annotations

import glob
import os
import resource
import threading
import time
from typing import Callable

import numpy as np

# The allocator settings both frameworks run under (PERF-NOTES: by default glibc hands large freed blocks back to the
# OS, so each step faults them in again; both sides are slowed, and by different amounts). They are what
# `medjax.allocator` sets inside a medjax process: one arena, so that the thresholds hold for XLA's worker threads too
# (without it the faults stay), which medjax only does when no MALLOC_* variable is set; set here, both frameworks get
# them alike. The runner sets them for every process it starts unless told not to, and each record says what was in
# force.
MALLOC_TUNING = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "2000000000",
                 "MALLOC_TRIM_THRESHOLD_": "20000000000"}

# Environment variables that change speed; every record copies them, so a table can be traced to its settings.
RECORDED_ENV = (*MALLOC_TUNING, "GLIBC_TUNABLES", "XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL")


def summarize(seconds: np.ndarray) -> dict[str, float]:
    """Median and spread of per-step times.

    Args:
      seconds: f64[steps], wall time of each timed step.

    Returns:
      Milliseconds: ``median_ms``, ``p10_ms``, ``p90_ms``, ``mean_ms``, ``min_ms``, and ``steps``.
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if seconds.ndim != 1 or seconds.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of step times, got shape {seconds.shape}")
    ms = seconds * 1e3
    p10, median, p90 = np.percentile(ms, [10, 50, 90])
    return {
        "median_ms": float(median),
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "steps": int(ms.size),
    }


def time_steps(step: Callable[[], object], steps: int) -> tuple[np.ndarray, int]:
    """Runs ``step`` ``steps`` times, timing each call on its own.

    Each step is timed separately (rather than the loop as a whole) so the record has a spread, not only a mean; the
    step itself must wait for its results, so no work spills into the next measurement.

    Returns:
      (f64[steps] seconds per step, minor page faults per step rounded down): the faults show allocator churn, the
      main source of noise on CPU (see PERF-NOTES).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    seconds = np.empty(steps, dtype=np.float64)
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(steps):
        start = time.perf_counter()
        step()
        seconds[i] = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    return seconds, faults // steps


def median_ms(call: Callable[[], object], steps: int, warmup: int = 1) -> float:
    """The median milliseconds of ``steps`` calls timed one by one (`time_steps`) after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    seconds, _ = time_steps(call, steps)
    return float(np.median(seconds)) * 1e3


def peak_rss_bytes() -> int:
    """The largest resident set this process has had so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def runnable_tasks() -> int:
    """Tasks runnable on the machine at this instant, this one excluded (``/proc/loadavg``'s fourth field).

    Unlike the load average, which decays over a minute, this says whether other jobs are competing right now.
    """
    with open("/proc/loadavg") as file:
        running = int(file.read().split()[3].split("/")[0])
    return max(running - 1, 0)


def wait_for_quiet(max_runnable: int, max_wait_s: float, samples: int = 5) -> dict:
    """Waits until at most ``max_runnable`` other tasks are runnable (median of ``samples`` readings 0.2 s apart),
    or ``max_wait_s`` has passed, so that a timed process does not start in the middle of someone else's job.

    Returns:
      ``{"waited_s", "runnable"}``: how long it waited and the last median reading.
    """
    start = time.time()
    while True:
        readings = []
        for _ in range(samples):
            readings.append(runnable_tasks())
            time.sleep(0.2)
        runnable = int(np.median(readings))
        if runnable <= max_runnable or time.time() - start >= max_wait_s:
            return {"waited_s": round(time.time() - start, 1), "runnable": runnable}
        time.sleep(2.0)


def own_running_threads() -> int:
    """Threads of this process in state R (running or runnable) right now."""
    running = 0
    for stat in glob.glob("/proc/self/task/*/stat"):
        try:
            with open(stat) as file:
                # The state follows the parenthesised command name, which may itself contain spaces.
                running += file.read().rpartition(")")[2].split()[0] == "R"
        except OSError:  # the thread ended between the listing and the read
            continue
    return running


class ContentionSampler:
    """Samples, from a background thread, how many tasks outside this process are runnable while it works.

    A 2-core machine shared with other jobs slows each framework by a different amount (PyTorch's OpenMP threads wait
    at every parallel region for a descheduled sibling); the record keeps how contended its steps were.

    Example:
      >>> with ContentionSampler() as sampler:
      ...     time_steps(step, 100)
      >>> sampler.summary()  # {"others_runnable_median": 0.0, "others_runnable_max": 1, "samples": 42}
    """

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(max(runnable_tasks() + 1 - own_running_threads(), 0))

    def __enter__(self) -> "ContentionSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"others_runnable_median": None, "others_runnable_max": None, "samples": 0}
        return {"others_runnable_median": float(np.median(self.samples)),
                "others_runnable_max": int(max(self.samples)), "samples": len(self.samples)}


def process_facts() -> dict:
    """What else was true of this process and machine while it ran: CPUs it may use, load, and speed-relevant env."""
    return {
        "cpus_available": len(os.sched_getaffinity(0)),
        "load_average_1m": os.getloadavg()[0],
        "runnable_tasks": runnable_tasks(),
        "env": {name: os.environ[name] for name in RECORDED_ENV if name in os.environ},
    }
