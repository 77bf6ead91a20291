"""`medjax export --workdir W [--format stablehlo] [--int8]`: the best checkpoint's model for deployment.

Writes ``<workdir>/export/model-f32.npz`` (the model's variables, float32; no optimizer state); with ``--format
stablehlo`` also ``model.stablehlo`` and ``signature.json`` (`medjax.train.serving`: the inference function with its
weights, runnable by JAX without medjax), with ``--format onnx`` ``model.onnx`` (jax2onnx: the CNN and the
transformers; the LSTMs and ResNets are refused, as `medjax.train.serving.onnx_model` says); with ``--int8``,
``model-int8.npz`` (every kernel as int8 plus per-channel float32 scales, `medjax.train.quantize`). Arrays are stored
under their ``/``-joined pytree paths; `load_export` reads them back with ``allow_pickle=False``. With ``--int8`` it
also scores the test split with the dequantised weights beside float32 and times one example at batch 1 and at
batch 64 (the int8 call dequantises inside the jit); the figures go to ``export/export.json`` and stdout.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import numpy as np

from medjax.errors import DataError
from medjax.train import quantize
from medjax.train.workdir import flat_arrays, npz_bytes, write_atomically


def _nest(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, array in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = array
    return tree


def save_export(path: pathlib.Path, variables: Any) -> int:
    """Writes ``variables`` as an ``.npz`` atomically; returns its size in bytes."""
    write_atomically(path, npz_bytes(flat_arrays(variables)))
    return path.stat().st_size


def load_export(path: str | pathlib.Path) -> dict:
    """The variables of an exported model (kernels still quantised in an int8 export: see `quantize`)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return _nest({name: archive[name] for name in archive.files})
    except (ValueError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(path, f"expected a `medjax export` .npz archive, got unreadable contents ({err})") from None


FORMATS = ("npz", "stablehlo", "onnx")


def export_workdir(workdir: str | pathlib.Path, int8: bool = False, formats: tuple[str, ...] = ("npz",)
                   ) -> dict[str, Any]:
    """Exports a run's best model into ``<workdir>/export/`` in ``formats``; with ``int8`` also quantises it and
    scores and times both (which needs the run's data). Returns (and writes) the figures."""
    from medjax.run import load
    from medjax.tasks import load_workdir

    run = load(workdir)
    # What can fail on the user's side (the data --int8 scores on, a model ONNX cannot hold) before anything is written.
    task = load_workdir(run.workdir)[0] if int8 else None
    if "onnx" in formats:
        from medjax.train.serving import onnx_model

        onnx_bytes = onnx_model(run)
    folder = pathlib.Path(workdir) / "export"
    folder.mkdir(exist_ok=True)
    variables = jax.device_get(run.variables)
    figures: dict[str, Any] = {"task": run.task, "best_epoch": run.record["epoch"],
                               "f32_bytes": save_export(folder / "model-f32.npz", variables)}
    if "stablehlo" in formats:
        from medjax.train.serving import export_stablehlo

        export_stablehlo(run, folder)
        figures["stablehlo_bytes"] = (folder / "model.stablehlo").stat().st_size
    if "onnx" in formats:
        write_atomically(folder / "model.onnx", onnx_bytes)
        figures["onnx_bytes"] = (folder / "model.onnx").stat().st_size
    if int8:
        figures |= _int8(run, task, folder, variables, figures["f32_bytes"])
    write_atomically(folder / "export.json", json.dumps(figures, indent=2) + "\n")
    return figures


def _int8(run, task, folder: pathlib.Path, variables: Any, f32_bytes: int) -> dict[str, Any]:
    """Quantises the kernels, writes ``model-int8.npz``, scores ``task``'s test split with both and times both."""
    from medjax.train import evaluation
    from medjax.train.cost import example_batch, timed

    collections = {k: v for k, v in variables.items() if k != "params"}
    quantized = {"params": quantize.quantize_tree(variables["params"]), **collections}
    figures: dict[str, Any] = {"int8_bytes": save_export(folder / "model-int8.npz", quantized),
                               "arrays_quantized": quantize.count_quantized(quantized["params"])}
    figures["size_ratio"] = f32_bytes / figures["int8_bytes"]
    dequantized = dataclasses.replace(run, variables={**variables,
                                                      "params": quantize.dequantize_tree(quantized["params"])})
    for name, candidate in (("f32", run), ("int8", dequantized)):
        predictions = candidate.predict_split(task.splits["test"], reorder=False)
        figures |= {f"{name}_test_{k}": v for k, v in evaluation.score_split(task, predictions, "test").items()}
    metric = task.select_metric
    figures["change_in_test_" + metric] = figures[f"int8_test_{metric}"] - figures[f"f32_test_{metric}"]
    batch64 = example_batch(run.meta["init_batch"], 64)
    batch1 = {k: v[:1] for k, v in batch64.items()}

    def f32_call(v, b):
        return run.model.apply(v, b, train=False)

    def int8_call(v, b):
        return run.model.apply({**v, "params": quantize.dequantize_tree(v["params"])}, b, train=False)

    for name, fn, tree in (("f32", f32_call, variables), ("int8", int8_call, quantized)):
        figures[f"{name}_latency_ms_batch_1"] = timed(fn, tree, batch1)[1] * 1e3
        figures[f"{name}_latency_ms_per_example_batch_64"] = timed(fn, tree, batch64)[1] * 1e3 / 64
    figures["device"] = str(jax.devices()[0].device_kind)
    return figures
