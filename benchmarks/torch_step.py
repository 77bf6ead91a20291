"""The PyTorch side of a benchmark: the twin's training step (forward, backward, Adam), eager or through torch.compile.

This module imports PyTorch, never JAX: the twin starts from the batch and weights the medjax side saved, so neither
framework's memory or threads appear in the other's figures.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Mapping

import numpy as np
import torch

from benchmarks import measure, workloads

# The same optimizer as the medjax side (benchmarks.medjax_step.LEARNING_RATE; torch's Adam defaults match optax's).
LEARNING_RATE = 1e-3


def set_threads(threads: int | None) -> int:
    """Gives PyTorch ``threads`` intra-op threads (default: every CPU this process may use, as XLA's CPU client
    does)."""
    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def first_loss(name: str, sizes: Mapping[str, int], start_path: str) -> float:
    """The twin's loss on the saved batch with the saved initial weights (no update), for the same-loss check."""
    twin = workloads.torch_module(name)
    batch, variables = workloads.load_start(start_path)
    module = twin.build(sizes, variables).train()
    with torch.no_grad():
        return float(twin.loss(module, twin.inputs(batch)))


def _graph_breaks() -> int | None:
    # torch._dynamo's counters are not public API; read them when present, as a hint of how much ran eagerly.
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(sum(counters["graph_break"].values()))


def run(name: str, sizes: Mapping[str, int], start_path: str, steps: int, warmup: int, compile: bool,
        threads: int | None = None, device: str = "cpu", amp_dtype: torch.dtype | None = None,
        channels_last: bool = False) -> dict:
    """Times the twin of workload ``name`` from the start saved at ``start_path``; returns the record.

    With ``compile``, the forward pass and loss go through `torch.compile` (backward through its AOTAutograd graph) and
    the first step's time is the compile time; if compilation fails, the record says ``"status": "does not compile"``
    with the error instead of raising, since that is a result, not a harness failure.

    ``device``, ``amp_dtype`` (forward and loss under `torch.autocast` with that dtype) and ``channels_last`` (4-D
    inputs and weights in NHWC memory order) are for the GPU set; on CUDA, Adam is the fused implementation, the
    fastest PyTorch offers, and each step ends with a device synchronisation so the timer sees the whole step.
    """
    cuda = device.startswith("cuda")
    record: dict = {"framework": {"torch": torch.__version__}, "backend": device,
                    "threads": None if cuda else set_threads(threads),
                    "interop_threads": torch.get_num_interop_threads(),
                    "amp_dtype": None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
                    "channels_last": channels_last}
    twin = workloads.torch_module(name)
    batch, variables = workloads.load_start(start_path)
    module = twin.build(sizes, variables).train().to(device)
    inputs = tuple(t.to(device) for t in twin.inputs(batch))
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        inputs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE, **({"fused": True} if cuda else {}))
    loss_fn = functools.partial(twin.loss, module)
    if compile:
        loss_fn = torch.compile(loss_fn)

    # No autocast context at all in float32, so the CPU figures carry none of its per-step cost.
    precision = (functools.partial(torch.autocast, device.split(":")[0], dtype=amp_dtype) if amp_dtype is not None
                 else contextlib.nullcontext)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        with precision():
            value = loss_fn(inputs)
        value.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return value

    start = time.perf_counter()
    try:
        first = one_step()
    except Exception as error:  # torch.compile raises many types (Unsupported, BackendCompilerFailed, ...)
        if not compile:
            raise
        first_line = (str(error).strip().splitlines() or [""])[0]
        return {**record, "status": "does not compile", "error": f"{type(error).__name__}: {first_line}"[:500],
                "peak_rss_bytes": measure.peak_rss_bytes()}
    first_step_s = time.perf_counter() - start
    for _ in range(warmup):
        one_step()
    seconds, faults = measure.time_steps(one_step, steps)
    last = one_step()
    record.update({
        "status": "ok",
        "compile_s": first_step_s if compile else None,
        "first_step_s": first_step_s,
        "first_loss": float(first.detach()),
        "last_loss": float(last.detach()),
        "timing": measure.summarize(seconds),
        "step_ms": [float(s * 1e3) for s in seconds],
        "faults_per_step": faults,
        "peak_rss_bytes": measure.peak_rss_bytes(),
        "device_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "param_count": int(sum(np.prod(p.shape) for p in module.parameters())),
    })
    if compile:
        record["graph_breaks"] = _graph_breaks()
    return record
