"""Split-conformal prediction sets and intervals (Vovk et al. 2005; Angelopoulos & Bates 2021, "A gentle
introduction to conformal prediction", section 1): calibrated on the validation split when a run ends, used by
``medjax predict --coverage``.

Classification uses the LAC score ``s = 1 - p_y`` (the probability the model gave the true class); regression the
absolute residual ``s = |y - ŷ|``. With ``n`` calibration scores, ``q̂`` is their ``⌈(n + 1)(1 - α)⌉ / n`` empirical
quantile; on exchangeable data the set ``{k : 1 - p_k ≤ q̂}`` (or the interval ``ŷ ± q̂``) then holds the truth with
probability at least ``1 - α`` and, without ties, at most ``1 - α + 1 / (n + 1)``.

Example:
  >>> q = threshold(nonconformity(val_predictions), coverage=0.9)
  >>> sets = prediction_sets(test_probabilities, q)        # bool[n, classes]
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np


def nonconformity(predictions: Mapping[str, Any]) -> tuple[str, np.ndarray] | None:
    """``(method, f64[n] scores)`` of a split's predictions: ``lac`` for single-label class probabilities
    (``scores`` f[n, k] beside integer ``labels`` [n]), ``residual`` for ``prediction`` beside ``true``; None for
    any other kind (multi-label, tags, rankings, translations)."""
    if "scores" in predictions and "labels" in predictions:
        scores, labels = np.asarray(predictions["scores"], np.float64), np.asarray(predictions["labels"])
        if scores.ndim == 2 and labels.ndim == 1 and labels.dtype.kind in "iu":
            return "lac", 1.0 - scores[np.arange(len(labels)), labels]
    if "prediction" in predictions and "true" in predictions:
        return "residual", np.abs(np.asarray(predictions["true"], np.float64)
                                  - np.asarray(predictions["prediction"], np.float64))
    return None


def threshold(scores: np.ndarray, coverage: float) -> float:
    """``q̂``: the ``⌈(n + 1) · coverage⌉``-th smallest of ``scores``; inf when there are too few to guarantee it."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"expected a coverage in (0, 1), got {coverage}")
    ordered = np.sort(np.asarray(scores, np.float64))
    rank = math.ceil((len(ordered) + 1) * coverage)
    return float(ordered[rank - 1]) if rank <= len(ordered) else math.inf


def prediction_sets(probabilities: np.ndarray, q: float) -> np.ndarray:
    """bool[n, classes]: the classes whose LAC score ``1 - p_k`` is at most ``q``."""
    return 1.0 - np.asarray(probabilities, np.float64) <= q


def covered(method: str, predictions: Mapping[str, Any], q: float) -> np.ndarray:
    """bool[n]: whether each example's set (or interval) holds its true label (or value)."""
    if method == "lac":
        sets = prediction_sets(predictions["scores"], q)
        return sets[np.arange(len(sets)), np.asarray(predictions["labels"])]
    return np.abs(np.asarray(predictions["true"], np.float64) - np.asarray(predictions["prediction"], np.float64)) <= q


def size(method: str, predictions: Mapping[str, Any], q: float) -> float:
    """Mean set size (classes), or the interval's width ``2 q̂`` for regression."""
    if method == "lac":
        return float(prediction_sets(predictions["scores"], q).sum(axis=1).mean())
    return 2.0 * q
