"""XLA flags medjax sets before JAX's backend starts, because they were measured faster on the CPUs medjax trains on.

XLA reads ``XLA_FLAGS`` once, when the first computation creates the backend; importing medjax (the CLI does so first)
appends each default whose flag the user has not set, and never overrides one they did. ``MEDJAX_XLA_DEFAULTS=0``
turns them all off.

- ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``: convolutions on Eigen instead of YNNPACK (dots
  stay on YNNPACK). Measured with medjax's own train step on a 2-core AMD EPYC (jaxlib 0.10.2): ResNet-18 (28) at batch
  128 3.1x faster, the tutorial CNN at batch 64 1.6x (`python -m benchmarks.xla_flags`, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import importlib.metadata
import os

DEFAULTS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
# The jaxlib these flags were measured on; older ones may not know them, and XLA aborts on an unknown flag.
_MIN_JAXLIB = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0, 0)


def apply(environ=os.environ) -> list[str]:
    """Appends to ``environ["XLA_FLAGS"]`` each default the user has not set; returns the flags added."""
    if environ.get("MEDJAX_XLA_DEFAULTS", "1") == "0" or _jaxlib_version() < _MIN_JAXLIB:
        return []
    current = environ.get("XLA_FLAGS", "")
    added = [flag for flag in DEFAULTS if flag.split("=")[0] not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
