"""What a trained model costs to keep and to run: `medjax report --workdir W` (without ``--html``).

From the run's best checkpoint: the parameter count and bytes, the size on disk (the best checkpoint's files, the
optimizer's state included), the FLOPs per
example of the compiled inference step (XLA's own cost analysis of ``model.apply`` at batch 64, divided by 64), the
latency per example at batch 1 and at batch 64 (median of 20 timed calls after a warm-up, on the default device) and
the compiled step's memory (arguments, outputs and XLA's temporaries, from ``memory_analysis``). Written to
``<workdir>/cost.json`` and printed.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time
from typing import Any

import jax
import numpy as np

TIMED_CALLS = 20


def _directory_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _inference(model, variables, batch) -> tuple[Any, float]:
    """The compiled inference call on ``batch`` and its median seconds per call."""
    compiled = jax.jit(lambda v, b: model.apply(v, b, train=False)).lower(variables, batch).compile()
    jax.block_until_ready(compiled(variables, batch))
    times = []
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        jax.block_until_ready(compiled(variables, batch))
        times.append(time.perf_counter() - start)
    return compiled, statistics.median(times)


def cost_report(workdir: str | pathlib.Path) -> dict[str, Any]:
    """Measures the run's model as the module docstring says; returns (and writes) the figures."""
    from medjax.tasks import load_workdir

    task, config = load_workdir(workdir)
    return measure(task, config)


def measure(task, config) -> dict[str, Any]:
    """`cost_report` for a task and the config of a finished run in ``config.workdir``."""
    from medjax.train import loop

    workdir = pathlib.Path(config.workdir)
    state, _ = loop.restore_best(task, config)
    variables = state.variables
    batch64 = next(task.splits["test"].batches(64))
    size = len(next(iter(batch64.values())))
    batch1 = {k: v[:1] for k, v in batch64.items()}
    compiled, seconds64 = _inference(task.model, variables, batch64)
    _, seconds1 = _inference(task.model, variables, batch1)
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    memory = compiled.memory_analysis()
    peak = None
    if memory is not None:
        peak = int(memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes)
    figures = {
        "task": task.name,
        "device": str(jax.devices()[0].device_kind),
        "parameters": int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(state.params))),
        "parameter_bytes": int(sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(state.params))),
        # The best checkpoint holds the optimizer's state too (Adam: two more copies of the parameters).
        "checkpoint_bytes": _directory_bytes(workdir / "checkpoints" / "best"),
        "flops_per_example": float(analysis.get("flops", float("nan"))) / size,
        "latency_ms_batch_1": seconds1 * 1e3,
        "latency_ms_per_example_batch_64": seconds64 * 1e3 / size,
        "batch_64_examples": size,
        "compiled_memory_bytes_batch_64": peak,
    }
    (workdir / "cost.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures
