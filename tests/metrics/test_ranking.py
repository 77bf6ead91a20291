"""recall@k, precision@k and NDCG@k against values computed by hand, and NDCG against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from medjax.metrics.ranking import ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k, top_k

# Row 0 ranks labels 0, 2, 3, 1; row 1 ranks 1, 2, 3, 0; row 2 ties labels 0 and 1 (the lower index first) and has no
# true label, so it counts in precision only.
SCORES = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.6, 0.4], [0.5, 0.5, 0.1, 0.0]])
LABELS = np.array([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
D = [1.0 / math.log2(i + 2) for i in range(4)]  # the discount of ranks 0..3


def test_top_k_is_best_first_with_ties_to_the_lower_index():
    assert top_k(SCORES, 2).tolist() == [[0, 2], [1, 2], [0, 1]]


def test_at_1():
    assert recall_at_k(SCORES, LABELS, 1) == pytest.approx((0 + 1 / 2) / 2)
    assert precision_at_k(SCORES, LABELS, 1) == pytest.approx((0 + 1 + 0) / 3)
    assert ndcg_at_k(SCORES, LABELS, 1) == pytest.approx((0 + 1) / 2)


def test_at_2():
    # Row 0 finds label 2 at rank 1, row 1 finds label 1 at rank 0; both have two true labels, so IDCG = D0 + D1.
    assert recall_at_k(SCORES, LABELS, 2) == pytest.approx(0.5)
    assert precision_at_k(SCORES, LABELS, 2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert ndcg_at_k(SCORES, LABELS, 2) == pytest.approx((D[1] / (D[0] + D[1]) + D[0] / (D[0] + D[1])) / 2)


def test_at_4_every_true_label_is_found():
    assert recall_at_k(SCORES, LABELS, 4) == 1.0
    assert precision_at_k(SCORES, LABELS, 4) == pytest.approx((2 / 4 + 2 / 4 + 0) / 3)
    row0, row1 = (D[1] + D[3]) / (D[0] + D[1]), (D[0] + D[3]) / (D[0] + D[1])
    assert ndcg_at_k(SCORES, LABELS, 4) == pytest.approx((row0 + row1) / 2)


def test_the_ideal_dcg_is_capped_at_k():
    scores, labels = np.array([[3.0, 2.0, 1.0, 0.0]]), np.array([[1, 1, 1, 0]])
    assert ndcg_at_k(scores, labels, 2) == pytest.approx(1.0)  # three true labels, the top two are both true
    assert recall_at_k(scores, labels, 2) == pytest.approx(2 / 3)
    assert precision_at_k(scores, labels, 2) == pytest.approx(1.0)


def test_no_example_with_a_true_label_gives_nan():
    assert math.isnan(recall_at_k(SCORES[2:], LABELS[2:], 3)) and math.isnan(ndcg_at_k(SCORES[2:], LABELS[2:], 3))
    assert precision_at_k(SCORES[2:], LABELS[2:], 3) == 0.0


def test_ndcg_equals_scikit_learn_without_ties():
    rng = np.random.default_rng(0)
    scores, labels = rng.random((50, 12)), (rng.random((50, 12)) < 0.2).astype(int)
    rows = labels.any(axis=1)
    for k in (1, 3, 5):
        assert ndcg_at_k(scores, labels, k) == pytest.approx(ndcg_score(labels[rows], scores[rows], k=k))


def test_ranking_metrics_names_every_k():
    metrics = ranking_metrics(SCORES, LABELS, (1, 3))
    assert sorted(metrics) == sorted(f"{m}_at_{k}" for m in ("recall", "precision", "ndcg") for k in (1, 3))
    assert metrics["recall_at_1"] == recall_at_k(SCORES, LABELS, 1)
