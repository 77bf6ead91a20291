"""`medjax export --workdir W [--int8]`: the best checkpoint's model as one NumPy archive, and what int8 changes.

Writes ``<workdir>/export/model-f32.npz`` (the model's variables, float32; no optimizer state) and, with ``--int8``,
``model-int8.npz`` (every kernel as int8 plus per-channel float32 scales, `medjax.train.quantize`). Arrays are stored
under their ``/``-joined pytree paths; `load_export` reads them back with ``allow_pickle=False``. With ``--int8`` it
also scores the test split with the dequantised weights beside float32 and times one example at batch 1 and at
batch 64 (the int8 call dequantises inside the jit); the figures go to ``export/export.json`` and stdout.
"""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

import jax
import numpy as np

from medjax.errors import DataError
from medjax.train import quantize, sharding


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
    from medjax.train.loop import _flat_arrays, write_atomically

    buffer = io.BytesIO()
    np.savez(buffer, **_flat_arrays(variables))
    write_atomically(path, buffer.getvalue())
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


def _latency(fn, variables, batch) -> float:
    from medjax.train.cost import _inference

    return _inference(_Callable(fn), variables, batch)[1]


class _Callable:
    """Gives a function the ``apply`` interface `medjax.train.cost._inference` times."""

    def __init__(self, fn):
        self.fn = fn

    def apply(self, variables, batch, train=False):
        return self.fn(variables, batch)


def export_workdir(workdir: str | pathlib.Path, int8: bool) -> dict[str, Any]:
    from medjax.tasks import load_workdir
    from medjax.train import loop

    task, config = load_workdir(workdir)
    state, record = loop.restore_best(task, config)
    folder = pathlib.Path(workdir) / "export"
    folder.mkdir(exist_ok=True)
    variables = jax.device_get(state.variables)
    figures: dict[str, Any] = {"task": task.name, "best_epoch": record["epoch"],
                               "f32_bytes": save_export(folder / "model-f32.npz", variables)}
    if int8:
        collections = {k: v for k, v in variables.items() if k != "params"}
        quantized = {"params": quantize.quantize_tree(variables["params"]), **collections}
        figures["int8_bytes"] = save_export(folder / "model-int8.npz", quantized)
        figures["arrays_quantized"] = quantize.count_quantized(quantized["params"])
        figures["size_ratio"] = figures["f32_bytes"] / figures["int8_bytes"]
        dequantized = state.replace(params=jax.device_put(quantize.dequantize_tree(quantized["params"])))
        mesh = sharding.make_mesh(config.num_devices)
        for name, candidate in (("f32", state), ("int8", dequantized)):
            predictions = loop.predict_split(candidate, task, "test", config.eval_batch_size, mesh)
            figures.update({f"{name}_test_{k}": v for k, v in loop._score(task, predictions, "test").items()})
        metric = task.select_metric
        figures["change_in_test_" + metric] = figures[f"int8_test_{metric}"] - figures[f"f32_test_{metric}"]
        batch64 = next(task.splits["test"].batches(64))
        batch1 = {k: v[:1] for k, v in batch64.items()}
        size = len(next(iter(batch64.values())))

        def f32_call(v, b):
            return task.model.apply(v, b, train=False)

        def int8_call(v, b):
            return task.model.apply({**v, "params": quantize.dequantize_tree(v["params"])}, b, train=False)

        for name, fn, tree in (("f32", f32_call, variables), ("int8", int8_call, quantized)):
            figures[f"{name}_latency_ms_batch_1"] = _latency(fn, tree, batch1) * 1e3
            figures[f"{name}_latency_ms_per_example_batch_64"] = _latency(fn, tree, batch64) * 1e3 / size
        figures["device"] = str(jax.devices()[0].device_kind)
    (folder / "export.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures
