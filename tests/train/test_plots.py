"""`plot_workdir` on synthetic run folders: which PNG files it writes for which predictions."""

import json

import numpy as np
import pytest

from medjax.errors import UserError
from medjax.train import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_workdir(path, **predictions):
    lines = [{"epoch": e, "step": 10 * e, "train_loss": 1.0 / e, "val_auc": 0.5 + 0.1 * e, "val_acc": 0.4 + 0.1 * e}
             for e in (1, 2, 3)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (path / "results.json").write_text(json.dumps({"best_epoch": 3}))
    (path / "config.json").write_text(json.dumps({"task": "t", "config": {}, "class_names": ["benign", "malignant"]}))
    if predictions:
        np.savez(path / "predictions_test.npz", **predictions)
    return path


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path


def test_binary_scores_give_curves_roc_and_confusion(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    scores = np.clip(labels * 0.6 + rng.normal(0.2, 0.3, 50), 0, 1)
    paths = plots.plot_workdir(make_workdir(tmp_path, labels=labels, scores=np.stack([1 - scores, scores], -1)))
    assert [p.name for p in paths] == ["learning_curves.png", "roc.png", "confusion_matrix.png", "reliability.png"]
    for path in paths:
        assert_png(path)


def test_multi_label_scores_give_roc_but_no_confusion_matrix(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (40, 4))
    paths = plots.plot_workdir(make_workdir(tmp_path, labels=labels, scores=rng.random((40, 4))))
    assert [p.name for p in paths] == ["learning_curves.png", "roc.png"]


def test_predicted_tags_give_a_confusion_matrix_only(tmp_path):
    labels = np.array([0, 1, 2, 2, 1, 0])
    paths = plots.plot_workdir(make_workdir(tmp_path, labels=labels, pred=np.array([0, 2, 2, 2, 1, 1])))
    assert [p.name for p in paths] == ["learning_curves.png", "confusion_matrix.png"]
    assert_png(paths[1])


def test_learning_curves_alone_and_a_folder_that_is_not_a_run(tmp_path):
    assert [p.name for p in plots.plot_workdir(make_workdir(tmp_path))] == ["learning_curves.png"]
    with pytest.raises(UserError, match="no metrics.jsonl nor"):
        plots.plot_workdir(tmp_path / "missing")
