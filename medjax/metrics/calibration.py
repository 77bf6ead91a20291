"""Calibration and uncertainty of class probabilities: expected calibration error, reliability bins, entropy."""

from __future__ import annotations

import numpy as np


def reliability_bins(labels, scores, bins: int = 10) -> dict[str, np.ndarray]:
    """The top-class confidence against accuracy in ``bins`` equal-width confidence bins.

    Args:
      labels: int[n] true classes.
      scores: f[n, classes] probabilities.
      bins: the number of bins over [0, 1].

    Returns:
      ``{"confidence", "accuracy", "count"}``, each f64[bins] (NaN for empty bins' confidence and accuracy).
    """
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    confidence, predicted = scores.max(axis=1), scores.argmax(axis=1)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, (predicted == labels).astype(np.float64), bins) / count
    return {"confidence": mean_confidence, "accuracy": accuracy, "count": count}


def expected_calibration_error(labels, scores, bins: int = 10) -> float:
    """ECE (Guo et al. 2017): the count-weighted mean over bins of |accuracy - confidence|."""
    binned = reliability_bins(labels, scores, bins)
    kept = binned["count"] > 0
    gaps = np.abs(binned["accuracy"][kept] - binned["confidence"][kept])
    return float(np.sum(gaps * binned["count"][kept]) / binned["count"].sum())


def mean_entropy(scores) -> float:
    """The mean over examples of the predictive entropy ``-sum_k p_k log p_k`` (nats)."""
    p = np.clip(np.asarray(scores, np.float64), 1e-12, 1.0)
    return float(np.mean(-np.sum(p * np.log(p), axis=1)))
