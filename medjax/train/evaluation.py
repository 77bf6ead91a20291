"""Predictions over a whole split, gathered on the host: what the loop scores and what a loaded run returns."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Sequence

import jax
import numpy as np

from medjax.metrics import calibration, conformal
from medjax.train import ensemble


def concatenate(outputs: Sequence[Any], masks: Sequence[np.ndarray], axis: int = 0) -> Any:
    """Per-batch prediction pytrees (host arrays) joined along the batch ``axis``, padding rows (False in ``masks``)
    dropped. Batches bucketed by length give ``[batch, time]`` leaves whose time differs per batch: they are
    right-padded with -1 (no class, no token) or 0 for floats, which scorers read as padding."""

    def join(*leaves):
        kept = []
        for leaf, mask in zip(leaves, masks):
            if leaf.ndim <= axis or leaf.shape[axis] != len(mask):
                raise ValueError(
                    f"task.predict must return arrays with a leading batch axis of {len(mask)}; got shape {leaf.shape}"
                )
            kept.append(np.compress(mask, leaf, axis=axis))
        widest = np.max([k.shape[axis + 1:] for k in kept], axis=0) if kept[0].ndim > axis + 1 else ()
        fill = -1 if kept[0].dtype.kind in "iu" else 0
        kept = [np.pad(k, [(0, 0)] * (axis + 1) + [(0, w - s) for s, w in zip(k.shape[axis + 1:], widest)],
                       constant_values=fill) for k in kept]
        return np.concatenate(kept, axis=axis)

    return jax.tree_util.tree_map(join, *outputs)


def in_input_order(predictions: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """``predictions`` (with an ``index`` entry: each row's input position) reordered to input order; checks that
    every input came back once."""
    order = np.argsort(np.asarray(predictions["index"]), kind="stable")
    if not np.array_equal(np.asarray(predictions["index"])[order], np.arange(count)):
        raise ValueError(f"expected one prediction per input (0..{count - 1}), got indices {predictions['index']}")
    return {key: np.asarray(value)[order] for key, value in predictions.items()}


def calibrate(workdir: pathlib.Path, val: Any, test: Any, write: bool = True) -> dict[str, float]:
    """Writes ``<workdir>/conformal.json`` (the validation split's nonconformity scores, what ``predict --coverage``
    reads) for classification and regression runs, unless ``write`` is False (a process other than the writer of a
    multi-process run); returns `coverage` on test. Nothing for other tasks."""
    from medjax.train.workdir import write_atomically

    scored = conformal.nonconformity(val)
    if scored is None:
        return {}
    method, scores = scored
    scores = np.sort(np.asarray(scores, np.float64))  # as conformal.json gives them back
    if write:
        write_atomically(workdir / "conformal.json", json.dumps({"method": method, "scores": scores.tolist()}))
    return _coverage(method, scores, test)


def coverage(workdir: pathlib.Path, test: Any, level: float = 0.9) -> dict[str, float]:
    """The test split's empirical coverage and mean set size (interval width) at ``level``, from the run's
    ``conformal.json``; nothing for a run without one."""
    from medjax.train.workdir import read_conformal

    path = pathlib.Path(workdir) / "conformal.json"
    if not path.is_file():
        return {}
    return _coverage(*read_conformal(path), test, level)


def _coverage(method: str, scores: np.ndarray, test: Any, level: float = 0.9) -> dict[str, float]:
    q = conformal.threshold(scores, level)
    percent = round(100 * level)
    return {f"conformal_coverage_{percent}": float(np.mean(conformal.covered(method, test, q))),
            f"conformal_size_{percent}": conformal.size(method, test, q)}


def selection_value(value: Any) -> float:
    """A selection metric as a float to maximise: an undefined one (NaN, e.g. an AUC with one class present) never
    counts as an improvement."""
    value = float(value)
    return value if math.isfinite(value) else -math.inf


def score_split(task, predictions: Any, split_name: str) -> dict[str, Any]:
    """``task.score`` of a split's predictions, as JSON values; for an ensemble (``{"ensemble", "members"}``) also
    each member's scores, and for a classifier the expected calibration error (the ensemble's and each member's) and
    the ensemble's predictive entropy."""
    if isinstance(predictions, dict) and set(predictions) == {"ensemble", "members"}:
        stacked = predictions["members"]
        scores = score_split(task, predictions["ensemble"], split_name)
        combined = predictions["ensemble"]
        classifier = isinstance(combined, dict) and "scores" in combined and np.ndim(combined.get("labels")) == 1
        for index in range(len(next(iter(jax.tree_util.tree_leaves(stacked))))):
            one = ensemble.member(stacked, index)
            member_scores = dict(task.score(one))
            if classifier:
                member_scores["ece"] = calibration.expected_calibration_error(one["labels"], one["scores"])
            scores.update({f"member{index}_{name}": _json_value(v) for name, v in member_scores.items()})
        if classifier:
            scores["ece"] = calibration.expected_calibration_error(combined["labels"], combined["scores"])
            scores["entropy"] = calibration.mean_entropy(combined["scores"])
        return scores
    scores = {name: _json_value(value) for name, value in task.score(predictions).items()}
    if task.select_metric not in scores:
        raise ValueError(
            f"task.score gave {sorted(scores)} on {split_name}; the task selects on {task.select_metric!r}, which is "
            f"not among them"
        )
    return scores


def _json_value(value: Any) -> Any:
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
