"""The run folder: what `medjax train` writes into it, and how everything else reads it back.

A run folder holds ``config.json`` (the task's name and every option), ``meta.json`` (what the model needs at inference
and the data side derived from train: vocabularies, class and tag names, target statistics, buckets, the shapes the
model was initialised with), ``metrics.jsonl``, ``results.json``, ``predictions_test.npz`` and ``checkpoints/``.
``meta.json`` is written once, when a run starts, and never again: loading a run (`medjax.load`) reads it and writes
nothing.

Every file goes through `write_atomically`: a temporary file in the same folder, then a rename over the target, so a
kill leaves the old file or the new one, and a symlink planted at the target is replaced, never followed.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
from typing import Any

import jax
import numpy as np

from medjax.data.files import replace_atomically
from medjax.errors import DataError, UserError

CONFIG, META, RESULTS = "config.json", "meta.json", "results.json"


# Every file of a run folder is written this way: a fresh temporary file in the folder, then a rename (a kill leaves
# the old file or the new, never half; a symlink at the path is replaced, not followed).
write_atomically = replace_atomically


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file (to hand to `write_atomically`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def flat_arrays(tree: Any) -> dict[str, np.ndarray]:
    """A pytree of arrays as ``{"a/b": array}``, the form `np.savez` takes; a dict's keys are kept as they are."""
    named = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
        named[name or "predictions"] = np.asarray(leaf)
    return named


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON in ``path``; a missing, unreadable or truncated file is the user's to fix, named in one line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(path, f"expected {what}, found no such file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, f"expected {what} (JSON), got damaged contents ({err})") from None


def read_json_object(path: str | os.PathLike, what: str = "a run's JSON file") -> dict[str, Any]:
    """`read_json` of a file that must hold a JSON object."""
    value = read_json(path, what)
    if not isinstance(value, dict):
        raise DataError(path, f"expected {what} (a JSON object), got {type(value).__name__}")
    return value


def read_conformal(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """``(method, validation scores)`` of a run's ``conformal.json``; a damaged one is named in one line."""
    saved = read_json_object(path, "the conformal calibration of a run")
    scores = saved.get("scores")
    if saved.get("method") not in ("lac", "residual") or not isinstance(scores, list) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
        raise DataError(path, "expected the conformal calibration of a run ({\"method\": \"lac\" or \"residual\", "
                              "\"scores\": [numbers]}), got other JSON")
    return saved["method"], np.asarray(scores, np.float64)


def read_run_config(workdir: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(task name, saved option values)`` of a run folder's ``config.json``."""
    path = pathlib.Path(workdir) / CONFIG
    if not path.is_file():
        raise UserError(workdir, "expected the work folder of a `medjax train` run, found no config.json")
    saved = read_json(path, "the config.json of a run")
    if not (isinstance(saved, dict) and isinstance(saved.get("task"), str) and isinstance(saved.get("config"), dict)):
        raise DataError(path, "expected the config.json of a run ({\"task\": ..., \"config\": {...}}), got other JSON")
    from medjax.tasks import TASKS

    if saved["task"] not in TASKS:
        raise DataError(path, f"expected the config.json of a run of a task among {', '.join(sorted(TASKS))}, got "
                              f"task {saved['task']!r:.60}")
    return saved["task"], dict(saved["config"])


class Meta(dict):
    """A run's ``meta.json``: a key it lacks is a damaged file, named in one line (not a KeyError deep in a task)."""

    def __init__(self, values: dict[str, Any], path: pathlib.Path):
        super().__init__(values)
        self.path = path

    def __missing__(self, key: str):
        raise DataError(self.path, f"expected the meta.json of a run with {key!r}, got none (a damaged or foreign "
                                   f"file)")


def read_meta(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's ``meta.json``, or None for a run made before medjax wrote one."""
    path = pathlib.Path(workdir) / META
    if not path.exists():
        return None
    return Meta(read_json_object(path, "the meta.json of a run"), path)


def write_meta(workdir: str | os.PathLike, meta: dict[str, Any]) -> None:
    write_atomically(pathlib.Path(workdir) / META, json.dumps(meta, indent=1, sort_keys=True) + "\n")


def has_checkpoint(workdir: str | os.PathLike, which: str = "latest") -> bool:
    """Whether the run has a ``which`` (``"latest"``: to resume from, ``"best"``) checkpoint of a finished epoch."""
    folder = pathlib.Path(workdir) / "checkpoints" / which
    return folder.is_dir() and any(child.name.isdigit() for child in folder.iterdir())


def batch_spec(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{key: {"shape": [...], "dtype": "int32"}}`` of a batch: what `medjax.load` initialises the model on."""
    return {key: {"shape": list(np.shape(value)), "dtype": str(np.asarray(value).dtype)} for key, value in batch.items()}
