"""Classification metrics on the host: scikit-learn's, behind input checks, and MedMNIST's AUC and ACC over them.

``roc_auc``, ``accuracy``, ``confusion_matrix``, ``macro_f1`` and ``roc_curve`` call ``sklearn.metrics`` after checking
their input (shapes, lengths, dtypes, 0/1 labels, finite scores, class ranges) so that bad input fails with one line
naming what was expected. ``medmnist_auc`` / ``medmnist_acc`` are MedMNIST's ``getAUC`` / ``getACC`` (medmnist
``evaluator.py``): the same per-label or per-class scikit-learn calls and means, which scikit-learn cannot pick itself
because it does not know MedMNIST's task types.

Example:
  >>> medmnist_auc(np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), "binary-class")
  1.0
"""

from __future__ import annotations

import numpy as np

BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL = "binary-class", "multi-class", "multi-label, binary-class", "ordinal-regression"
TASK_TYPES = (BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL)


def _sklearn_metrics():
    # Imported on first use: scikit-learn takes ~2 s to import, which every `medjax` command would otherwise pay.
    from sklearn import metrics

    return metrics


def _as_1d(x, name: str, kind: str = "iub") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"{name} must have shape [n] or [n, 1], got {x.shape}")
    if x.dtype.kind not in kind:
        raise TypeError(f"{name} must have dtype kind in {kind!r}, got {x.dtype}")
    return x


def _check_scores(scores, name: str = "scores") -> np.ndarray:
    scores = np.asarray(scores)
    if scores.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got {scores.dtype}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} must be finite, found {np.isnan(scores).sum()} NaN and {np.isinf(scores).sum()} "
                         "infinite values")
    return scores


def _same_length(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names} must have the same length, got {len(a)} and {len(b)}")


def _binary_inputs(labels, scores, what: str) -> tuple[np.ndarray, np.ndarray]:
    labels = _as_1d(labels, "labels")
    scores = _as_1d(_check_scores(scores), "scores", "fiu").astype(np.float64)
    _same_length(labels, scores, "labels and scores")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0/1 for {what}, found {np.unique(labels)}")
    return labels.astype(np.int64), scores


def _class_pair(labels, pred, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Checked int[n] labels and predictions, and C (default: one more than the largest class seen)."""
    labels, pred = _as_1d(labels, "labels"), _as_1d(pred, "pred")
    _same_length(labels, pred, "labels and pred")
    if not len(labels):
        raise ValueError("labels and pred are empty: the metric of an empty set is undefined")
    seen = int(max(labels.max(), pred.max())) + 1
    num_classes = seen if num_classes is None else num_classes
    if min(labels.min(), pred.min()) < 0 or seen > num_classes:
        raise ValueError(f"classes must lie in [0, {num_classes - 1}], found labels {np.unique(labels)} and "
                         f"predictions {np.unique(pred)}")
    return labels.astype(np.int64), pred.astype(np.int64), num_classes


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve of a binary problem, ties counted as half: scikit-learn's ``roc_auc_score``.

    Args:
      labels: 0/1 (or bool) of shape [n] or [n, 1]; 1 is the positive class.
      scores: f32[n] or [n, 1], higher meaning more positive; finite.

    Raises:
      ValueError: only one class is present (the AUC is undefined), labels are not 0/1, scores are not finite, or
        the lengths differ.
    """
    labels, scores = _binary_inputs(labels, scores, "a binary AUC")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"the AUC is undefined with only one class present ({n_pos} positive, {n_neg} negative)")
    return float(_sklearn_metrics().roc_auc_score(labels, scores))


def _medmnist_inputs(labels, scores, task_type: str) -> tuple[np.ndarray, np.ndarray]:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown MedMNIST task type {task_type!r}; valid types: {', '.join(TASK_TYPES)}")
    scores = _check_scores(scores)
    if task_type == MULTI_LABEL:
        labels = np.asarray(labels)
        if labels.ndim != 2 or scores.shape != labels.shape:
            raise ValueError(f"multi-label labels and scores must both have shape [n, labels], got {labels.shape} "
                             f"and {scores.shape}")
        return labels, scores
    labels = _as_1d(labels, "labels")
    if task_type == BINARY and scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [n, classes], got {scores.shape}")
    _same_length(labels, scores, "labels and scores")
    if labels.size and (labels.min() < 0 or labels.max() >= max(scores.shape[1], 2)):
        raise ValueError(f"labels must lie in [0, {max(scores.shape[1], 2) - 1}] for {scores.shape[1]} score "
                         f"columns, found {labels.min()}..{labels.max()}")
    return labels, scores


def medmnist_auc(labels, scores, task_type: str) -> float:
    """MedMNIST's AUC (``medmnist.evaluator.getAUC``): ``roc_auc`` of one column, or the mean over columns.

    Args:
      labels: int[n] or int[n, 1] class indices; 0/1 int[n, L] for multi-label.
      scores: f32[n, classes] class probabilities (softmax), or f32[n, L] sigmoid outputs for multi-label. For
        binary tasks the last column is the positive class's score (f32[n] is taken as that column).
      task_type: ``"binary-class"``, ``"multi-class"``, ``"multi-label, binary-class"`` or ``"ordinal-regression"``.

    Returns:
      binary: the AUC of the positive class's score; multi-label: the mean AUC over labels; multi-class and ordinal:
      the mean one-vs-rest AUC over the score columns.
    """
    labels, scores = _medmnist_inputs(labels, scores, task_type)
    if task_type == BINARY:
        return roc_auc(labels, scores[:, -1])
    if task_type == MULTI_LABEL:
        return float(np.mean([roc_auc(labels[:, i], scores[:, i]) for i in range(scores.shape[1])]))
    return float(np.mean([roc_auc(labels == i, scores[:, i]) for i in range(scores.shape[1])]))


def medmnist_acc(labels, scores, task_type: str, threshold: float = 0.5) -> float:
    """MedMNIST's ACC (``medmnist.evaluator.getACC``).

    Args: as ``medmnist_auc``; ``threshold`` applies to binary and multi-label tasks.

    Returns:
      binary: accuracy of ``score[:, -1] > threshold``; multi-label: mean over labels of the accuracy of
      ``score >= threshold``; multi-class and ordinal: accuracy of the argmax (first index on ties).
    """
    labels, scores = _medmnist_inputs(labels, scores, task_type)
    # MedMNIST's own comparisons: strict ">" for binary, "not below" for multi-label; they differ only at a score of
    # exactly the threshold, kept so that our figures equal the published evaluator's.
    if task_type == BINARY:
        return accuracy(labels, (scores[:, -1] > threshold).astype(np.int64))
    if task_type == MULTI_LABEL:
        predicted = (scores >= threshold).astype(np.int64)
        return float(np.mean([_sklearn_metrics().accuracy_score(labels[:, i], predicted[:, i]) for i in range(labels.shape[1])]))
    return accuracy(labels, np.argmax(scores, axis=-1))


def accuracy(labels, pred) -> float:
    """Fraction of ``pred`` equal to ``labels`` (int[n] each): scikit-learn's ``accuracy_score``."""
    labels, pred = _as_1d(labels, "labels"), _as_1d(pred, "pred")
    _same_length(labels, pred, "labels and pred")
    if not len(labels):
        raise ValueError("accuracy of an empty set is undefined")
    return float(_sklearn_metrics().accuracy_score(labels, pred))


def confusion_matrix(labels, pred, num_classes: int | None = None) -> np.ndarray:
    """Counts: int64[C, C], rows the true class, columns the predicted one: scikit-learn's ``confusion_matrix``.

    Args:
      labels: int[n] true classes.
      pred: int[n] predicted classes.
      num_classes: C; default one more than the largest class seen in either array.
    """
    labels, pred, num_classes = _class_pair(labels, pred, num_classes)
    return _sklearn_metrics().confusion_matrix(labels, pred, labels=np.arange(num_classes))


def macro_f1(labels, pred, num_classes: int | None = None) -> float:
    """Unweighted mean over classes of F1 = 2TP / (2TP + FP + FN): scikit-learn's ``f1_score(average="macro")``.

    Args:
      labels: int[n] true classes.
      pred: int[n] predicted classes.
      num_classes: average over classes ``0..num_classes-1``, a class never seen nor predicted scoring 0
        (``zero_division=0``); default: over the classes present in ``labels`` or ``pred``.
    """
    labels, pred, _ = _class_pair(labels, pred, num_classes)
    classes = None if num_classes is None else np.arange(num_classes)
    return float(_sklearn_metrics().f1_score(labels, pred, labels=classes, average="macro", zero_division=0))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve at every distinct score: scikit-learn's ``roc_curve(..., drop_intermediate=False)``.

    Args:
      labels: 0/1 int[n]; 1 is the positive class.
      scores: f32[n], higher meaning more positive; finite.

    Returns:
      ``(fpr, tpr, thresholds)``, each f64[k + 1] for k distinct scores: thresholds decrease from ``inf`` (nothing
      called positive, the point (0, 0)) through each distinct score (called positive when ``score >= threshold``).
      A class absent from ``labels`` gives NaN for its rate (scikit-learn also warns).
    """
    labels, scores = _binary_inputs(labels, scores, "a ROC curve")
    return _sklearn_metrics().roc_curve(labels, scores, pos_label=1, drop_intermediate=False)
