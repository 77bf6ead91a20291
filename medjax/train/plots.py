"""`medjax plot`: a finished run's learning curves, ROC curves and confusion matrix, as PNG files in its workdir.

From ``metrics.jsonl``: the training loss and every validation metric per epoch (``learning_curves.png``, the best
epoch marked). From ``predictions_test.npz``: with ``scores`` and ``labels``, the test ROC curve of each class (binary:
the positive class; multi-class: one class against the rest; multi-label: each label) in ``roc.png``; with ``pred``
and ``labels`` (or the arg-max of single-label ``scores``), the test confusion matrix in ``confusion_matrix.png``.

Figures are drawn on `matplotlib.figure.Figure` objects, never through pyplot, so nothing here touches matplotlib's
global backend or needs a display.

Example:
  >>> paths = plot_workdir("runs/breastmnist")  # [.../learning_curves.png, .../roc.png, .../confusion_matrix.png]
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medjax.errors import UserError
from medjax.metrics.calibration import expected_calibration_error, reliability_bins
from medjax.metrics.classification import confusion_matrix, roc_auc, roc_curve

# More classes than this and the per-cell counts of the confusion matrix are left out (they would not be legible).
_MAX_ANNOTATED_CLASSES = 20


def plot_workdir(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """Draws what a run's files allow and returns the paths of the PNG files written.

    Args:
      workdir: the work folder of a `medjax train` run (at least ``metrics.jsonl``).

    Raises:
      medjax.errors.UserError: when the folder holds neither ``metrics.jsonl`` nor ``predictions_test.npz``.
    """
    workdir = pathlib.Path(workdir)
    metrics_path, predictions_path = workdir / "metrics.jsonl", workdir / "predictions_test.npz"
    if not metrics_path.exists() and not predictions_path.exists():
        raise UserError(workdir, "expected the work folder of a `medjax train` run, found no metrics.jsonl nor "
                                 "predictions_test.npz")
    class_names = _class_names(workdir)
    written = []
    if metrics_path.exists():
        written.append(plot_learning_curves(metrics_path, workdir / "learning_curves.png", _best_epoch(workdir)))
    if predictions_path.exists():
        with np.load(predictions_path) as saved:
            predictions = dict(saved)
        labels = predictions.get("labels")
        if labels is not None and "scores" in predictions:
            written.append(plot_roc(labels, predictions["scores"], workdir / "roc.png", class_names))
        pred = _predicted_classes(predictions)
        if labels is not None and pred is not None:
            written.append(plot_confusion_matrix(labels, pred, workdir / "confusion_matrix.png", class_names))
        if labels is not None and "scores" in predictions and np.ndim(predictions["scores"]) == 2 \
                and np.asarray(labels).reshape(len(labels), -1).shape[1] == 1:
            written.append(plot_reliability(np.asarray(labels).reshape(-1), predictions["scores"],
                                            workdir / "reliability.png"))
    return written


def plot_learning_curves(metrics_path: pathlib.Path, out: pathlib.Path, best_epoch: int | None = None) -> pathlib.Path:
    """Training loss (left) and validation metrics (right) against the epoch, from a ``metrics.jsonl``."""
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in records]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, val_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [r.get("train_loss", np.nan) for r in records], marker="o")
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="training loss")
    val_names = sorted({k for r in records for k, v in r.items() if k.startswith("val_") and np.isscalar(v)})
    for name in val_names:
        val_axes.plot(epochs, [r.get(name, np.nan) for r in records], marker="o", label=name[len("val_"):])
    val_axes.set(xlabel="epoch", ylabel="metric", title="validation")
    if val_names:
        val_axes.legend()
    for axes in (loss_axes, val_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
    figure.savefig(out, dpi=100)
    return out


def plot_roc(
    labels: np.ndarray, scores: np.ndarray, out: pathlib.Path, class_names: Sequence[str] = ()
) -> pathlib.Path:
    """ROC curves with their AUC in the legend.

    Args:
      labels: int[n] (or int[n, 1]) classes, or {0, 1}[n, labels] for multi-label.
      scores: f32[n] positive-class scores, f32[n, 2] (binary), f32[n, classes] or f32[n, labels].
      out: the PNG path.
      class_names: legend names in class order; class indices when empty.
    """
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    for name, positive, score in _one_vs_rest(np.asarray(labels), np.asarray(scores, np.float64), class_names):
        if positive.min() == positive.max():
            continue  # a class absent from the test split (or the only one) has no ROC curve
        fpr, tpr, _ = roc_curve(positive, score)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(positive, score):.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="test ROC", xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize="small")
    figure.savefig(out, dpi=100)
    return out


def plot_reliability(labels: np.ndarray, scores: np.ndarray, out: pathlib.Path, bins: int = 10) -> pathlib.Path:
    """The reliability diagram: accuracy against top-class confidence in equal bins, the diagonal for reference,
    and the expected calibration error in the title."""
    binned = reliability_bins(labels, scores, bins)
    figure = Figure(figsize=(4.2, 4.2), dpi=120)
    axes = figure.subplots()
    centres = (np.arange(bins) + 0.5) / bins
    axes.bar(centres, np.nan_to_num(binned["accuracy"]), width=1 / bins, edgecolor="black", alpha=0.7,
             label="accuracy")
    axes.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axes.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
             title=f"test reliability, ECE {expected_calibration_error(labels, scores, bins):.3f}")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(out)
    return out


def plot_confusion_matrix(
    labels: np.ndarray, pred: np.ndarray, out: pathlib.Path, class_names: Sequence[str] = ()
) -> pathlib.Path:
    """The confusion matrix (rows: true class, columns: predicted class) with its counts."""
    labels, pred = np.asarray(labels).reshape(-1), np.asarray(pred).reshape(-1)
    num_classes = max(len(class_names), int(max(labels.max(), pred.max())) + 1)
    # Names that do not fit the classes seen (a stale config) would mislabel the axes: fall back to indices.
    counts = confusion_matrix(labels, pred, num_classes)
    names = list(class_names) if len(class_names) == num_classes else [str(i) for i in range(num_classes)]
    size = min(4 + 0.4 * num_classes, 16)
    figure = Figure(figsize=(size, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set(xticks=range(num_classes), yticks=range(num_classes), xticklabels=names, yticklabels=names)
    axes.set(xlabel="predicted", ylabel="true", title="test confusion matrix")
    axes.tick_params(axis="x", labelrotation=45)
    if num_classes <= _MAX_ANNOTATED_CLASSES:
        for (row, col), count in np.ndenumerate(counts):
            color = "white" if count > counts.max() / 2 else "black"
            axes.text(col, row, str(count), ha="center", va="center", color=color, fontsize="small")
    figure.savefig(out, dpi=100)
    return out


def _one_vs_rest(labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str]):
    """Yields ``(name, 0/1 labels, scores)`` per curve to draw."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if scores.ndim == 2 and scores.shape[1] == 2 and labels.ndim == 1:
        scores = scores[:, 1]  # binary: the positive class's probability
    if scores.ndim == 1:
        yield (class_names[1] if len(class_names) == 2 else "positive"), labels.astype(np.int64), scores
        return
    for index in range(scores.shape[1]):
        name = class_names[index] if index < len(class_names) else str(index)
        positive = labels[:, index] if labels.ndim == 2 else (labels == index)
        yield name, positive.astype(np.int64), scores[:, index]


def _predicted_classes(predictions: dict[str, np.ndarray]) -> np.ndarray | None:
    """Predicted classes for a confusion matrix: ``pred`` if saved, else the arg-max of single-label scores."""
    if "pred" in predictions:
        return predictions["pred"]
    scores, labels = predictions.get("scores"), predictions.get("labels")
    if scores is None or labels is None or (labels.ndim == 2 and labels.shape[1] > 1):
        return None  # multi-label: no single predicted class
    if scores.ndim == 1:
        return (scores >= 0.5).astype(np.int64)
    return np.argmax(scores, axis=-1)


def _class_names(workdir: pathlib.Path) -> list[str]:
    path = workdir / "config.json"
    return list(json.loads(path.read_text()).get("class_names", [])) if path.exists() else []


def _best_epoch(workdir: pathlib.Path) -> int | None:
    path = workdir / "results.json"
    return json.loads(path.read_text()).get("best_epoch") if path.exists() else None
