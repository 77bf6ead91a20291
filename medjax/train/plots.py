"""`medjax plot`: a finished run's learning curves, ROC curves and confusion matrix, as PNG files in its workdir.

From ``metrics.jsonl``: the training loss and every validation metric per epoch (``learning_curves.png``, the best
epoch marked). From ``predictions_test.npz``: with ``scores`` and ``labels``, the test ROC curve of each class (binary:
the positive class; multi-class: one class against the rest; multi-label: each label) in ``roc.png``; with ``pred``
and ``labels`` (or the arg-max of single-label ``scores``), the test confusion matrix in ``confusion_matrix.png``.

Figures are drawn on `matplotlib.figure.Figure` objects, never through pyplot, so nothing here touches matplotlib's
global backend or needs a display.

A run folder may come from someone else: a truncated or garbled ``config.json``, ``results.json``, ``metrics.jsonl``
or ``predictions_test.npz`` is a `DataError` naming the file (and line or field), never a traceback; the archive is
read without pickles; names from the files are drawn as plain text (no mathtext); and each PNG is written through a
fresh temporary file and a rename, so a symlink planted at ``roc.png`` is replaced, not followed.

Example:
  >>> paths = plot_workdir("runs/breastmnist")  # [.../learning_curves.png, .../roc.png, .../confusion_matrix.png]
"""

from __future__ import annotations

import io
import json
import pathlib
import zipfile
import zlib
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medjax.data.files import replace_atomically
from medjax.errors import DataError, UserError, where
from medjax.metrics.calibration import expected_calibration_error, reliability_bins
from medjax.metrics.classification import confusion_matrix, roc_auc, roc_curve
from medjax.train.workdir import read_json_object

# More classes than this and the per-cell counts of the confusion matrix are left out (they would not be legible).
_MAX_ANNOTATED_CLASSES = 20
# A class index above this in predictions_test.npz is a damaged file, not a classifier (the matrix would not fit).
_MAX_CLASSES = 10_000


def plot_workdir(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """Draws what a run's files allow and returns the paths of the PNG files written.

    Args:
      workdir: the work folder of a `medjax train` run (at least ``metrics.jsonl``).

    Raises:
      medjax.errors.UserError: when the folder holds neither ``metrics.jsonl`` nor ``predictions_test.npz``.
      medjax.errors.DataError: one of the run's files is truncated, garbled or holds values of the wrong type.
    """
    workdir = pathlib.Path(workdir)
    metrics_path, predictions_path = workdir / "metrics.jsonl", workdir / "predictions_test.npz"
    if not metrics_path.exists() and not predictions_path.exists():
        raise UserError(workdir, "expected the work folder of a `medjax train` run, found no metrics.jsonl nor "
                                 "predictions_test.npz")
    class_names = _class_names(workdir)
    # Every file read and checked before the first figure is written: a damaged one leaves nothing behind.
    predictions = _load_predictions(predictions_path) if predictions_path.exists() else None
    labels = predictions.get("labels") if predictions else None
    pred = _predicted_classes(predictions) if predictions else None
    if labels is not None and pred is not None:
        _check_classes(predictions_path, labels, pred, class_names)
    written = []
    if metrics_path.exists():
        written.append(plot_learning_curves(metrics_path, workdir / "learning_curves.png", _best_epoch(workdir)))
        results = _results(workdir)
        if "sweep_option" in results:
            written.append(plot_sweep(metrics_path, results, workdir / "sweep.png"))
    if predictions is not None:
        if labels is not None and "scores" in predictions:
            written.append(plot_roc(labels, predictions["scores"], workdir / "roc.png", class_names))
        if labels is not None and pred is not None:
            written.append(plot_confusion_matrix(labels, pred, workdir / "confusion_matrix.png", class_names))
        if labels is not None and "scores" in predictions and np.ndim(predictions["scores"]) == 2 \
                and np.asarray(labels).reshape(len(labels), -1).shape[1] == 1:
            written.append(plot_reliability(np.asarray(labels).reshape(-1), predictions["scores"],
                                            workdir / "reliability.png"))
    return written


def plot_learning_curves(metrics_path: pathlib.Path, out: pathlib.Path, best_epoch: int | None = None) -> pathlib.Path:
    """Training loss (left) and validation metrics (right) against the epoch, from a ``metrics.jsonl``."""
    records = _read_metrics(metrics_path)
    epochs = [r["epoch"] for r in records]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, val_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [_float(r.get("train_loss")) for r in records], marker="o")
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="training loss")
    # A sweep's per-setting figures are drawn by plot_sweep; here the best setting's, epoch by epoch.
    val_names = sorted({k for r in records for k, v in r.items()
                        if k.startswith("val_") and not k.startswith("val_setting") and _is_number(v)})
    for name in val_names:
        val_axes.plot(epochs, [_float(r.get(name)) for r in records], marker="o", label=_plain(name[len("val_"):]))
    val_axes.set(xlabel="epoch", ylabel="metric", title="validation")
    if val_names:
        val_axes.legend()
    for axes in (loss_axes, val_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
    return save_png(figure, out, dpi=100)


def plot_sweep(metrics_path: pathlib.Path, results: dict[str, Any], out: pathlib.Path) -> pathlib.Path:
    """A sweep's choice: each setting's validation selection metric against the epoch, the chosen setting drawn
    thick and its best epoch marked (left), and each setting's best value against the swept value (right)."""
    records = _read_metrics(metrics_path)
    name, values, metric = results["sweep_option"], results["sweep_values"], results["select_metric"]
    chosen = values.index(results["sweep_chosen"])
    epochs = [r["epoch"] for r in records]
    figure = Figure(figsize=(10, 4), layout="constrained")
    curves, choice = figure.subplots(1, 2)
    for i, value in enumerate(values):
        curves.plot(epochs, [_float(r.get(f"val_setting{i}_{metric}")) for r in records], marker="o",
                    linewidth=3 if i == chosen else 1, label=f"{_plain(name)} = {value:g}")
    curves.axvline(results["best_epoch"], color="grey", linestyle="--", linewidth=1)
    curves.set(xlabel="epoch", ylabel=f"validation {_plain(metric)}", title="every setting, every epoch")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.legend()
    best = results[f"sweep_val_{metric}"]
    choice.plot(values, best, marker="o")
    choice.plot([values[chosen]], [best[chosen]], marker="*", markersize=16, linestyle="none",
                label=f"chosen: {_plain(name)} = {values[chosen]:g}")
    if min(values) > 0 and max(values) / min(values) >= 3:
        choice.set_xscale("log")
        choice.minorticks_off()
    choice.set_xticks(values, [f"{value:g}" for value in values])
    choice.set(xlabel=_plain(name), ylabel=f"best validation {_plain(metric)}", title="the choice, on validation")
    choice.legend()
    return save_png(figure, out, dpi=100)


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
        axes.plot(fpr, tpr, label=f"{_plain(name)} (AUC {roc_auc(positive, score):.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="test ROC", xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize="small")
    return save_png(figure, out, dpi=100)


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
    return save_png(figure, out)


def plot_confusion_matrix(
    labels: np.ndarray, pred: np.ndarray, out: pathlib.Path, class_names: Sequence[str] = ()
) -> pathlib.Path:
    """The confusion matrix (rows: true class, columns: predicted class) with its counts."""
    labels, pred = np.asarray(labels).reshape(-1), np.asarray(pred).reshape(-1)
    num_classes = max(len(class_names), int(max(labels.max(), pred.max())) + 1)
    # Names that do not fit the classes seen (a stale config) would mislabel the axes: fall back to indices.
    counts = confusion_matrix(labels, pred, num_classes)
    names = ([_plain(n) for n in class_names] if len(class_names) == num_classes
             else [str(i) for i in range(num_classes)])
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
    return save_png(figure, out, dpi=100)


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


def save_png(figure: Figure, out: pathlib.Path, **options: Any) -> pathlib.Path:
    """The figure as PNG bytes, then written through a temporary file and a rename (`replace_atomically`)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **options)
    return replace_atomically(out, buffer.getvalue())


def _plain(name: Any) -> str:
    """A name from the run's files drawn as the text it is: ``$`` escaped so that matplotlib parses no mathtext."""
    return str(name).replace("$", r"\$")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value: Any) -> float:
    return float(value) if _is_number(value) else np.nan


def _read_metrics(path: pathlib.Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``, each an object with a numeric ``epoch``; a `DataError` naming the line."""
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise DataError(where(path, number), f"expected one JSON object per line, got unreadable contents "
                                                 f"({err})") from None
        if not isinstance(record, dict) or not _is_number(record.get("epoch")):
            shown = record.get("epoch") if isinstance(record, dict) else record
            raise DataError(where(path, number), f"expected an object with a numeric 'epoch', got {shown!r:.60}")
        records.append(record)
    return records


def _load_predictions(path: pathlib.Path) -> dict[str, np.ndarray]:
    """The arrays of ``predictions_test.npz`` (no pickles); a `DataError` naming the file when it is damaged, holds
    no numbers, or whose labels, scores and pred differ in length."""
    try:
        saved = np.load(path, allow_pickle=False)
        if not hasattr(saved, "files"):  # one array: a .npy file under an .npz name
            raise DataError(path, "expected the .npz archive a run writes, got a single .npy array")
        with saved:
            predictions = {key: saved[key] for key in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(path, f"expected the .npz archive a run writes, got unreadable contents "
                              f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    lengths = {}
    for key in ("labels", "scores", "pred"):
        array = predictions.get(key)
        if array is None:
            continue
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or array.ndim not in (1, 2):
            raise DataError(f"{path}: {key}", f"expected a numeric array of 1 or 2 dimensions, got {array.dtype} "
                                              f"of shape {array.shape}")
        if key == "scores" and not np.isfinite(array).all():
            raise DataError(f"{path}: scores", "expected finite scores, got NaN or infinity")
        lengths[key] = len(array)
    if len(set(lengths.values())) > 1:
        raise DataError(path, f"expected labels, scores and pred of one length, got "
                              f"{', '.join(f'{k} {n}' for k, n in lengths.items())}")
    return predictions


def _check_classes(path: pathlib.Path, labels: np.ndarray, pred: np.ndarray, class_names: Sequence[str]) -> None:
    """Class indices fit for a confusion matrix: whole numbers from 0, at most `_MAX_CLASSES` of them."""
    for key, array in (("labels", labels), ("pred", pred)):
        values = np.asarray(array, np.float64).reshape(-1)
        if values.size == 0:
            raise DataError(f"{path}: {key}", "expected class indices, got an empty array")
        limit = max(_MAX_CLASSES, len(class_names))
        bad = ~np.isfinite(values) | (values < 0) | (values >= limit) | (values != np.round(values))
        if bad.any():
            raise DataError(f"{path}: {key}", f"expected class indices from 0 to {limit - 1}, got {values[bad][0]:g}")


def _class_names(workdir: pathlib.Path) -> list[str]:
    path = workdir / "config.json"
    if not path.exists():
        return []
    names = read_json_object(path).get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, (str, int, float)) for n in names):
        raise DataError(f"{path}: class_names", f"expected a list of names, got {names!r:.60}")
    return [str(n) for n in names]


def _results(workdir: pathlib.Path) -> dict[str, Any]:
    """The run's ``results.json``, or {} before it is written."""
    path = workdir / "results.json"
    return read_json_object(path, "the results.json of a run") if path.exists() else {}


def _best_epoch(workdir: pathlib.Path) -> int | None:
    path = workdir / "results.json"
    if not path.exists():
        return None
    best = read_json_object(path).get("best_epoch")
    if best is not None and not _is_number(best):
        raise DataError(f"{path}: best_epoch", f"expected an epoch number, got {best!r:.60}")
    return best
