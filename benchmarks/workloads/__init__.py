"""The benchmark workloads, one module each, chosen by name.

A workload module `benchmarks.workloads.<name>` holds the medjax side and imports JAX:
  ``TITLE`` (the table's row label), ``SIZES`` (the CPU benchmark's shapes), ``TINY`` (shapes for the tests), ``GROWTH``
  (``{size name: values}`` for the cost-growth sweeps; may be empty), ``make_batch(sizes, seed) -> {name: ndarray}``,
  ``make_model(sizes) -> flax.linen.Module``, ``init(model, key, batch) -> variables`` and
  ``loss(model, variables, batch) -> (scalar loss, updated non-parameter collections)``, the loss being the mean over
  the batch as the PyTorch twin computes it.
Its PyTorch twin `benchmarks.twins.<name>` imports only PyTorch and NumPy:
  ``build(sizes, variables) -> torch.nn.Module`` with medjax's initial weights copied in, ``inputs(batch) -> tuple`` of
  tensors, and ``loss(module, inputs) -> scalar tensor``.

The two meet through a `.npz` file written by the medjax side (`save_start`): the batch and the initial variables, so
the PyTorch process never imports JAX and both sides start from the same bytes.
"""

from __future__ import annotations

import importlib
import pathlib
from types import ModuleType
from typing import Any, Mapping

import numpy as np

# Row order of the table: the tutorial's three models, each followed by its realistic medical-sized relative.
WORKLOADS = ("cnn", "resnet18", "lstm", "bilstm", "attention", "transformer")


def check_names(names: list[str]) -> list[str]:
    """Returns ``names`` if each is a workload; raises a ValueError listing the valid names otherwise."""
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; valid workloads: {', '.join(WORKLOADS)}")
    return names


def medjax_module(name: str) -> ModuleType:
    """The medjax side of workload ``name`` (imports JAX)."""
    return importlib.import_module(f"benchmarks.workloads.{check_names([name])[0]}")


def torch_module(name: str) -> ModuleType:
    """The PyTorch twin of workload ``name`` (imports PyTorch, not JAX)."""
    return importlib.import_module(f"benchmarks.twins.{check_names([name])[0]}")


def parse_sizes(defaults: Mapping[str, int], overrides: Mapping[str, int]) -> dict[str, int]:
    """``defaults`` updated by ``overrides``; a key the workload does not have is a ValueError naming the valid keys."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"unknown size(s) {unknown}; this workload's sizes are {sorted(defaults)}")
    return {**defaults, **{key: int(value) for key, value in overrides.items()}}


def _flatten(tree: Mapping[str, Any], prefix: str) -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        if "/" in key:
            raise ValueError(f"name {key!r} contains '/', which the .npz keys use as a separator")
        path = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = np.asarray(value)
    return flat


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def save_start(path: str | pathlib.Path, batch: Mapping[str, np.ndarray], variables: Mapping[str, Any]) -> None:
    """Writes a batch and initial variables (nested dicts of arrays, e.g. ``{"params": ..., "batch_stats": ...}``)."""
    arrays = {**_flatten(batch, "batch"), **_flatten(variables, "variables")}
    np.savez(path, **arrays)


def load_start(path: str | pathlib.Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads what `save_start` wrote: ``(batch, variables)`` as nested dicts of NumPy arrays."""
    with np.load(path, allow_pickle=False) as data:
        tree = _unflatten({key: data[key] for key in data.files})
    return tree["batch"], tree["variables"]
