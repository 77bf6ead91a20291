"""glibc's allocator settings medjax makes when it is imported, before XLA starts its threads.

XLA:CPU allocates and frees a large scratch block on every execution. With glibc's defaults (one arena per thread,
blocks above an adaptive threshold served by ``mmap`` and returned at once) every step of a convolutional network or
a transformer maps fresh pages and faults on each of them: 202,537 page faults a step for ResNet-18 (28) at batch 128,
410,628 for a 4 × 256 transformer at T = 256, where PyTorch's step has none (2-core AMD EPYC, ``../shared/PERF-NOTES.md``).
One arena and thresholds above the scratch block keep the memory mapped between steps: 6 and 0 faults, and the
transformer's step 3,884 → 3,423 ms. The heap can still grow by one scratch block once or twice in a process's life
(threads free in an order that leaves no free chunk large enough; seen with another process on the cores): a bounded
warm-up, after which calls fault no more.

The three settings are made through ``mallopt`` (each value a C ``int``: a larger one would silently overflow):
``M_ARENA_MAX = 1``, ``M_MMAP_THRESHOLD = 2**31 - 1``, ``M_TRIM_THRESHOLD = 2**31 - 1``. They are not made when the
user set any of glibc's own variables (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``GLIBC_TUNABLES``), when ``MEDJAX_MALLOC_DEFAULTS=0``, off glibc (macOS, musl), or when JAX's backend already runs (its
threads have their arenas then): that last case says so once, with the fix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
SETTINGS = {M_ARENA_MAX: 1, M_MMAP_THRESHOLD: 2**31 - 1, M_TRIM_THRESHOLD: 2**31 - 1}
USER_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _backend_running() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def apply(environ=os.environ, libc=None) -> bool:
    """Makes the settings if nothing above forbids it; returns whether it did."""
    if environ.get("MEDJAX_MALLOC_DEFAULTS", "1") == "0" or any(name in environ for name in USER_VARIABLES):
        return False
    libc = libc or _glibc()
    if libc is None:
        return False
    if _backend_running():
        print("medjax: JAX's backend started before medjax was imported, so glibc's allocator keeps its defaults "
              "(~200,000 page faults a ResNet step); import medjax first, or set MALLOC_ARENA_MAX=1 "
              "MALLOC_MMAP_THRESHOLD_=2147483647 MALLOC_TRIM_THRESHOLD_=2147483647", file=sys.stderr)
        return False
    for parameter, value in SETTINGS.items():
        if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
            return False
    return True
