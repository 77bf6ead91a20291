"""What a trained model costs to keep and to run: `medjax report --workdir W` (without ``--html``).

From the run's best checkpoint, loaded without its data (`medjax.load`): the parameter count and bytes, the size on disk (the best checkpoint's files, the
optimizer's state included), the FLOPs per
example of the compiled inference step (XLA's own cost analysis of ``model.apply`` at batch 64 shaped as the batch the
run was initialised on, divided by 64), the
latency per example at batch 1 and at batch 64 (median of 20 timed calls after a warm-up, on the default device) and
the compiled step's memory (arguments, outputs and XLA's temporaries, from ``memory_analysis``), and the precision:
the run's ``--precision``, the dtype each layer's output is computed in, and the bytes of all layers' outputs at batch
64 (halved under ``bf16``; nested modules count once per level, so this measures precision, not peak memory).
Written to ``<workdir>/cost.json`` and printed.
"""

from __future__ import annotations

import collections
import json
import pathlib
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medjax.train.precision import Mixed
from medjax.train.workdir import write_atomically

TIMED_CALLS = 20


def _directory_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(fn, *args) -> tuple[Any, float]:
    """``fn`` compiled for ``args`` and its median seconds per call over `TIMED_CALLS` calls after a warm-up."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compiled, statistics.median(times)


def example_batch(init_batch: dict, count: int) -> dict[str, np.ndarray]:
    """A batch of ``count`` rows shaped as the batch a run was initialised on (``meta["init_batch"]``): zeros, masks
    all True. FLOPs and latency do not depend on the values."""
    return {name: (np.ones if spec["dtype"] == "bool" else np.zeros)((count, *spec["shape"][1:]), spec["dtype"])
            for name, spec in init_batch.items()}


def layer_outputs(model, variables, batch: dict) -> dict[str, jax.ShapeDtypeStruct]:
    """Each module's output (its path, e.g. ``layer1_0/conv1`` -> shape and dtype) in an inference call, traced
    without computing."""
    def capture(v, b):
        return model.apply(v, b, train=False, capture_intermediates=True, mutable=["intermediates"])[1]

    found = jax.eval_shape(capture, variables, batch)["intermediates"]

    def name(path) -> str:  # ['layer1_0']['conv1']['__call__'][0] -> layer1_0/conv1; the model itself is "(model)"
        return "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey) and k.key != "__call__") \
            or "(model)"

    return {name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(found)}


def precision_figures(model, variables, batch: dict) -> dict[str, Any]:
    outputs = layer_outputs(model, variables, batch)
    floating = {path: leaf for path, leaf in outputs.items() if jnp.issubdtype(leaf.dtype, jnp.floating)}
    counts = collections.Counter(str(leaf.dtype) for leaf in floating.values())
    return {
        "precision": model.policy.name if isinstance(model, Mixed) else "fp32",
        "layer_output_dtypes": ", ".join(f"{n} {dtype}" for dtype, n in sorted(counts.items())),
        "layer_output_bytes_batch_64": int(sum(leaf.size * leaf.dtype.itemsize for leaf in floating.values())),
        "layers": {path: str(leaf.dtype) for path, leaf in floating.items()},
    }


def cost_report(workdir: str | pathlib.Path) -> dict[str, Any]:
    """Measures a run's model as the module docstring says, from the loaded run alone (no data); returns (and
    writes) the figures. An ensemble is measured by its first member."""
    from medjax.run import load
    from medjax.train import ensemble

    run = load(workdir)
    variables = ensemble.member(run.variables, 0) if run.members > 1 else run.variables
    return measure(run.model, variables, example_batch(run.meta["init_batch"], 64), run.workdir, run.task)


def measure(model, variables, batch64: dict, workdir: pathlib.Path, task_name: str) -> dict[str, Any]:
    """`cost_report` of ``model`` with ``variables`` on a batch of 64 (cut to one for the batch-1 latency)."""
    workdir = pathlib.Path(workdir)
    size = len(next(iter(batch64.values())))
    batch1 = {k: v[:1] for k, v in batch64.items()}

    def infer(v, b):
        return model.apply(v, b, train=False)

    compiled, seconds64 = timed(infer, variables, batch64)
    _, seconds1 = timed(infer, variables, batch1)
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    memory = compiled.memory_analysis()
    peak = None
    if memory is not None:
        peak = int(memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes)
    params = variables["params"]
    figures = {
        "task": task_name,
        "device": str(jax.devices()[0].device_kind),
        "parameters": int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params))),
        "parameter_bytes": int(sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(params))),
        # The best checkpoint holds the optimizer's state too (Adam: two more copies of the parameters).
        "checkpoint_bytes": _directory_bytes(workdir / "checkpoints" / "best"),
        "flops_per_example": float(analysis.get("flops", float("nan"))) / size,
        "latency_ms_batch_1": seconds1 * 1e3,
        "latency_ms_per_example_batch_64": seconds64 * 1e3 / size,
        "batch_64_examples": size,
        "compiled_memory_bytes_batch_64": peak,
        **precision_figures(model, variables, batch64),
    }
    write_atomically(workdir / "cost.json", json.dumps(figures, indent=2) + "\n")
    return figures
