"""Classification metrics against scikit-learn (ties included) and MedMNIST's evaluator, re-written here with it."""

import numpy as np
import pytest
from sklearn import metrics as skm

from medjax.metrics import classification as cls


def _probabilities(rng, n, c, decimals=1):
    """Softmax-like rows rounded coarsely, so that many scores tie."""
    p = rng.dirichlet(np.ones(c), size=n)
    return np.round(p, decimals)


def _medmnist_get_auc(y_true, y_score, task):
    """medmnist.evaluator.getAUC (v2/v3), with scikit-learn doing each AUC."""
    if task == "binary-class":
        return skm.roc_auc_score(y_true, y_score[:, -1])
    if task == "multi-label, binary-class":
        return np.mean([skm.roc_auc_score(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])])
    return np.mean([skm.roc_auc_score((y_true == i).astype(float), y_score[:, i]) for i in range(y_score.shape[1])])


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # ~15 distinct values: heavy ties
    assert len(np.unique(scores)) < 30
    np.testing.assert_allclose(cls.roc_auc(labels, scores), skm.roc_auc_score(labels, scores), rtol=0, atol=1e-12)


def test_roc_auc_hand_computed():
    # Pairs (pos, neg): (0.7 > 0.2) 1, (0.7 > 0.4) 1, (0.4 = 0.4) 0.5, (0.4 > 0.2) 1 -> 3.5 / 4.
    assert cls.roc_auc([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.4]) == 0.875


def test_roc_auc_rejects_one_class_and_nan():
    with pytest.raises(ValueError, match="only one class"):
        cls.roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        cls.roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="0/1"):
        cls.roc_auc([0, 2], [0.1, 0.2])


@pytest.mark.parametrize("labels_shape", ["flat", "column"])
def test_medmnist_binary(labels_shape):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=150)
    p1 = np.round(np.clip(0.3 + 0.4 * labels + 0.3 * rng.standard_normal(150), 0, 1), 1)
    p1[:5] = 0.5  # exactly at the threshold: ">" says class 0
    scores = np.stack([1 - p1, p1], axis=1)
    y = labels[:, None] if labels_shape == "column" else labels
    expected_acc = skm.accuracy_score(labels, (p1 > 0.5).astype(int))
    assert cls.medmnist_auc(y, scores, "binary-class") == pytest.approx(skm.roc_auc_score(labels, p1), abs=1e-12)
    assert cls.medmnist_acc(y, scores, "binary-class") == pytest.approx(expected_acc, abs=1e-12)
    # A 1-D positive-class score is the same thing as the last column.
    assert cls.medmnist_auc(y, p1, "binary-class") == cls.medmnist_auc(y, scores, "binary-class")


@pytest.mark.parametrize("task", ["multi-class", "ordinal-regression"])
def test_medmnist_multiclass(task):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=300)
    scores = _probabilities(rng, 300, 5)
    scores[np.arange(300), labels] += 0.2
    scores[:10] = 0.2  # all-tied rows: argmax picks class 0, as np.argmax in MedMNIST
    expected = _medmnist_get_auc(labels, scores, task)
    assert cls.medmnist_auc(labels, scores, task) == pytest.approx(expected, abs=1e-12)
    assert cls.medmnist_acc(labels, scores, task) == pytest.approx(
        skm.accuracy_score(labels, scores.argmax(axis=1)), abs=1e-12)
    # Rows that sum to one: scikit-learn's own macro one-vs-rest AUC is the same mean.
    normalised = scores / scores.sum(axis=1, keepdims=True)
    assert cls.medmnist_auc(labels, normalised, task) == pytest.approx(
        skm.roc_auc_score(labels, normalised, multi_class="ovr", average="macro"), abs=1e-12)


def test_medmnist_multilabel():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=(120, 14))
    scores = np.round(np.clip(0.35 + 0.3 * labels + 0.25 * rng.standard_normal((120, 14)), 0, 1), 1)
    scores[:3] = 0.5  # ">= 0.5" counts as positive for multi-label
    expected_acc = np.mean([skm.accuracy_score(labels[:, i], scores[:, i] >= 0.5) for i in range(14)])
    assert cls.medmnist_auc(labels, scores, "multi-label, binary-class") == pytest.approx(
        skm.roc_auc_score(labels, scores, average="macro"), abs=1e-12)
    assert cls.medmnist_acc(labels, scores, "multi-label, binary-class") == pytest.approx(expected_acc, abs=1e-12)


def test_medmnist_rejects_bad_input():
    scores = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="unknown MedMNIST task type 'binary'.*multi-class"):
        cls.medmnist_auc([0, 1, 0, 1], scores, "binary")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        cls.medmnist_acc([0, 1, 2, 1], scores, "multi-class")
    with pytest.raises(ValueError, match="same length"):
        cls.medmnist_auc([0, 1, 0], scores, "binary-class")
    with pytest.raises(ValueError, match=r"shape \[n, labels\]"):
        cls.medmnist_auc(np.zeros((4, 3), int), scores, "multi-label, binary-class")
    with pytest.raises(TypeError, match="labels must have dtype"):
        cls.medmnist_acc(np.array([0.0, 1.0, 0.0, 1.0]), scores, "binary-class")


def test_accuracy_f1_confusion_equal_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=400)
    pred = np.where(rng.random(400) < 0.6, labels, rng.integers(0, 5, size=400))  # class 5 is never predicted
    assert cls.accuracy(labels, pred) == pytest.approx(skm.accuracy_score(labels, pred), abs=1e-12)
    np.testing.assert_array_equal(cls.confusion_matrix(labels, pred), skm.confusion_matrix(labels, pred))
    np.testing.assert_array_equal(cls.confusion_matrix(labels, pred, num_classes=8),
                                  skm.confusion_matrix(labels, pred, labels=range(8)))
    assert cls.macro_f1(labels, pred) == pytest.approx(
        skm.f1_score(labels, pred, average="macro", zero_division=0), abs=1e-12)
    assert cls.macro_f1(labels, pred, num_classes=8) == pytest.approx(
        skm.f1_score(labels, pred, average="macro", labels=range(8), zero_division=0), abs=1e-12)


def test_macro_f1_hand_computed_and_confusion_checks():
    # Class 0: tp 1, fp 2, fn 1 -> 2/5; class 1: tp 1, fp 1, fn 1 -> 1/2; class 2: tp 0, fp 0, fn 1 -> 0.
    assert cls.macro_f1([0, 0, 1, 1, 2], [0, 1, 1, 0, 0]) == pytest.approx(0.3, abs=1e-12)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 1\]"):
        cls.confusion_matrix([0, 2], [0, 1], num_classes=2)


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=100)
    scores = np.round(rng.random(100), 1)
    fpr, tpr, thresholds = cls.roc_curve(labels, scores)
    ref_fpr, ref_tpr, ref_thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)
    np.testing.assert_array_equal(thresholds[1:], ref_thresholds[1:])
    assert np.isinf(thresholds[0]) and fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    # The trapezoid area under our curve is the rank AUC.
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    np.testing.assert_allclose(area, cls.roc_auc(labels, scores), atol=1e-12)
