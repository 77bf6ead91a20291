"""Ranking metrics of multi-label recommendations: recall@k, precision@k and NDCG@k with binary relevance.

Each example ranks every label by its score (descending; ties go to the lower label index, a stable sort) and the
top k labels are its recommendations. With ``T`` the example's true labels and ``hits`` the true labels among the top
k:

- ``recall@k = |hits| / |T|``,
- ``precision@k = |hits| / k``,
- ``NDCG@k = DCG / IDCG`` with ``DCG = Σ_{i<k} rel_i / log2(i + 2)`` (rank i counted from 0) and the ideal
  ``IDCG = Σ_{i < min(|T|, k)} 1 / log2(i + 2)``: a perfect ranking scores 1 however few the true labels.

Each is averaged over examples. Examples with no true label are left out of recall and NDCG (both are undefined:
0/0); precision keeps them (they score 0), since recommending k drugs to a patient who starts none is k misses.

Example:
  >>> scores = np.array([[0.9, 0.1, 0.5, 0.3]])
  >>> labels = np.array([[0, 1, 1, 0]])
  >>> recall_at_k(scores, labels, 2), precision_at_k(scores, labels, 2)   # top 2 are labels 0 and 2
  (0.5, 0.5)
  >>> ndcg_at_k(scores, labels, 2)                                        # (1/log2 3) / (1 + 1/log2 3)
  0.3868...
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k highest scores of each row, best first: ``f[n, L] -> int64[n, min(k, L)]``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.argsort(-np.asarray(scores, np.float64), axis=1, kind="stable")[:, :k]


def _hits(scores: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(relevance f64[n, k] of the ranked top k, |T| int64[n])``."""
    labels = np.asarray(labels) > 0
    if np.shape(scores) != labels.shape or labels.ndim != 2:
        raise ValueError(f"scores and labels must both be [examples, labels]; got {np.shape(scores)} and "
                         f"{labels.shape}")
    ranked = top_k(scores, k)
    return np.take_along_axis(labels, ranked, axis=1).astype(np.float64), labels.sum(axis=1)


def recall_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean ``|hits| / |T|`` over the examples with at least one true label (NaN if none has one).

    Args:
      scores: f[n, L] a score per label (higher: recommended first).
      labels: {0, 1}[n, L] the true label sets.
      k: how many labels are recommended.
    """
    relevance, true = _hits(scores, labels, k)
    rows = true > 0
    return float(np.mean(relevance[rows].sum(axis=1) / true[rows])) if rows.any() else float("nan")


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean ``|hits| / k`` over every example (NaN for no example); arguments as `recall_at_k`."""
    relevance, _ = _hits(scores, labels, k)
    return float(np.mean(relevance.sum(axis=1) / k)) if len(relevance) else float("nan")


def ndcg_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean ``DCG@k / IDCG@k`` over the examples with at least one true label; arguments as `recall_at_k`."""
    relevance, true = _hits(scores, labels, k)
    discount = 1.0 / np.log2(np.arange(relevance.shape[1]) + 2.0)
    rows = true > 0
    if not rows.any():
        return float("nan")
    dcg = relevance[rows] @ discount
    ideal = np.cumsum(discount)[np.minimum(true[rows], relevance.shape[1]) - 1]
    return float(np.mean(dcg / ideal))


def ranking_metrics(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    """``{"recall_at_k", "precision_at_k", "ndcg_at_k"}`` for each k in ``ks``."""
    metrics = {}
    for k in ks:
        metrics[f"recall_at_{k}"] = recall_at_k(scores, labels, k)
        metrics[f"precision_at_{k}"] = precision_at_k(scores, labels, k)
        metrics[f"ndcg_at_{k}"] = ndcg_at_k(scores, labels, k)
    return metrics
