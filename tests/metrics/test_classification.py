"""Classification metrics: hand-computed values, scikit-learn (ties included), MedMNIST's evaluator (re-written here
with scikit-learn), and the input checks in front of scikit-learn."""

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


def test_roc_auc_rejects_one_class_non_finite_and_bad_shapes():
    with pytest.raises(ValueError, match=r"only one class present \(3 positive, 0 negative\)"):
        cls.roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="scores must be finite, found 1 NaN and 0 infinite"):
        cls.roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="scores must be finite, found 0 NaN and 1 infinite"):
        cls.roc_auc([0, 1], [0.1, np.inf])
    with pytest.raises(ValueError, match=r"labels must be 0/1 for a binary AUC, found \[0 2\]"):
        cls.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels and scores must have the same length, got 2 and 3"):
        cls.roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"scores must have shape \[n\] or \[n, 1\], got \(2, 2\)"):
        cls.roc_auc([0, 1], np.zeros((2, 2)))


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


def test_medmnist_hand_computed():
    # Binary: the last column [0.2, 0.7, 0.4] ranks both positives above the negative: AUC 1; "> 0.5" calls only
    # the second positive: ACC 2/3.
    scores = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert cls.medmnist_auc([0, 1, 1], scores, "binary-class") == 1.0
    assert cls.medmnist_acc([0, 1, 1], scores, "binary-class") == pytest.approx(2 / 3, abs=1e-12)
    # Multi-class, one AUC per column against "label == column". Class 0: positives 0.5, 0.3 vs negatives 0.4, 0.2
    # win 3 of 4 pairs -> 3/4; class 1: 0.4 vs 0.2, 0.3, 0.6 -> 2/3; class 2: 0.5 vs 0.3, 0.2, 0.1 -> 1. Mean 29/36.
    # Argmax [0, 0 (tie: first index), 2, 1] against [0, 1, 2, 0]: ACC 1/2.
    labels = [0, 1, 2, 0]
    scores = np.array([[0.5, 0.2, 0.3], [0.4, 0.4, 0.2], [0.2, 0.3, 0.5], [0.3, 0.6, 0.1]])
    assert cls.medmnist_auc(labels, scores, "multi-class") == pytest.approx(29 / 36, abs=1e-12)
    assert cls.medmnist_acc(labels, scores, "multi-class") == 0.5
    # Multi-label, per label. Label 0: 0.9, 0.5 vs 0.2 -> AUC 1; label 1: 0.4, 0.6 vs 0.5 -> 1/2; mean 3/4.
    # ">= 0.5" predicts label 0 as [1, 0, 1] (all right) and label 1 as [1, 0, 1] against [0, 1, 1] (1/3): ACC 2/3.
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    scores = np.array([[0.9, 0.5], [0.2, 0.4], [0.5, 0.6]])
    assert cls.medmnist_auc(labels, scores, "multi-label, binary-class") == pytest.approx(0.75, abs=1e-12)
    assert cls.medmnist_acc(labels, scores, "multi-label, binary-class") == pytest.approx(2 / 3, abs=1e-12)


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


def test_accuracy_confusion_macro_f1_hand_computed():
    labels, pred = [0, 0, 1, 1, 2], [0, 1, 1, 0, 0]
    # Right at positions 0 and 2: 2/5.
    assert cls.accuracy(labels, pred) == pytest.approx(0.4, abs=1e-12)
    # Rows: true 0 -> predicted (0, 1); true 1 -> (1, 0); true 2 -> 0.
    np.testing.assert_array_equal(cls.confusion_matrix(labels, pred), [[1, 1, 0], [1, 1, 0], [1, 0, 0]])
    assert cls.confusion_matrix(labels, pred, num_classes=4).shape == (4, 4)
    # F1 = 2TP / (2TP + FP + FN). Class 0: tp 1, fp 2, fn 1 -> 2/5; class 1: tp 1, fp 1, fn 1 -> 1/2; class 2: tp 0,
    # fp 0, fn 1 -> 0. Mean over the 3 classes seen: 0.3.
    assert cls.macro_f1(labels, pred) == pytest.approx(0.3, abs=1e-12)
    # With num_classes=4, class 3 (neither true nor predicted) scores 0 and still counts: 0.9 / 4.
    assert cls.macro_f1(labels, pred, num_classes=4) == pytest.approx(0.225, abs=1e-12)
    # Without num_classes, a class neither true nor predicted is left out: class 0 (tp 1, fp 1, fn 1 -> 1/2) and
    # class 2 (tp 0 -> 0) give 1/4, not the 1/6 that counting the absent class 1 would give.
    assert cls.macro_f1([0, 0, 2], [0, 2, 0]) == pytest.approx(0.25, abs=1e-12)


def test_class_metrics_reject_bad_input():
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 1\], found labels \[0 2\]"):
        cls.confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 3\]"):
        cls.macro_f1([0, -1], [0, 1], num_classes=4)
    with pytest.raises(ValueError, match="labels and pred must have the same length, got 2 and 3"):
        cls.macro_f1([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="labels and pred must have the same length, got 3 and 2"):
        cls.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        cls.confusion_matrix(np.array([], int), np.array([], int))
    with pytest.raises(ValueError, match="empty"):
        cls.accuracy(np.array([], int), np.array([], int))
    with pytest.raises(TypeError, match="pred must have dtype kind in 'iub', got float64"):
        cls.accuracy([0, 1], [0.0, 1.0])


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


def test_roc_curve_hand_computed():
    # Scores sorted down: 0.7 (pos), 0.4 (pos, neg), 0.2 (neg); 2 positives, 2 negatives.
    # threshold inf: nothing positive (0, 0); 0.7: tp 1 -> (0, 1/2); 0.4: tp 2, fp 1 -> (1/2, 1); 0.2: (1, 1).
    fpr, tpr, thresholds = cls.roc_curve([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.4])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.7, 0.4, 0.2])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1], atol=1e-12)
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1], atol=1e-12)


def test_roc_curve_single_class_and_bad_input():
    # No negatives: the false-positive rate is 0/0, NaN (scikit-learn warns).
    with pytest.warns(UserWarning, match="No negative samples"):
        fpr, tpr, _ = cls.roc_curve([1, 1], [0.3, 0.6])
    assert np.isnan(fpr).all()
    np.testing.assert_allclose(tpr, [0, 0.5, 1])
    with pytest.raises(ValueError, match=r"labels must be 0/1 for a ROC curve, found \[0 1 2\]"):
        cls.roc_curve([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="scores must be finite"):
        cls.roc_curve([0, 1], [-np.inf, 0.2])
