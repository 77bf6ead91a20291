"""The medmnist task (recipe defaults, loss, predictions, scores, name checks) and `medjax train|evaluate|plot medmnist`
end to end on real BreastMNIST with the tutorial CNN."""

import json
import re
import urllib.error

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from medjax import cli
from medjax.data import download
from medjax.errors import ConfigError
from medjax.tasks import evaluate_workdir
from medjax.tasks import medmnist as task_module
from medjax.train.config import TrainConfig


def test_defaults_are_the_published_recipe():
    config = task_module.Config()
    assert (config.dataset, config.size, config.model) == ("breastmnist", 28, "resnet18")
    assert (config.optimizer, config.lr, config.batch_size, config.epochs) == ("adam", 1e-3, 128, 100)
    assert (config.schedule, config.milestones, config.decay_factor) == ("multistep", (0.5, 0.75), 0.1)
    assert (config.pixel_mean, config.pixel_std, config.weight_decay) == (0.5, 0.5, 0.0)
    assert isinstance(config, TrainConfig)


def _logits_and_batch(num_classes, multi_label=False, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((6, num_classes)).astype(np.float32)
    labels = (rng.integers(0, 2, size=(6, num_classes)) if multi_label else rng.integers(0, num_classes, size=6))
    mask = np.array([True, True, True, True, False, False])
    return logits, {"label": labels.astype(np.int32), "example_mask": mask}


def test_softmax_loss_equals_numpy_and_ignores_padding():
    logits, batch = _logits_and_batch(5)
    value, sums = task_module.loss(jnp.asarray(logits), batch, task_type="ordinal-regression")
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    per_row = -log_probs[np.arange(6), batch["label"]]
    np.testing.assert_allclose(value, per_row[:4].mean(), rtol=1e-6)
    correct = np.argmax(logits, 1) == batch["label"]
    assert float(sums["accuracy"].total) == correct[:4].sum() and float(sums["accuracy"].count) == 4


def test_multilabel_loss_is_mean_binary_cross_entropy():
    logits, batch = _logits_and_batch(14, multi_label=True)
    value, _ = task_module.loss(jnp.asarray(logits), batch, task_type="multi-label, binary-class")
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    bce = -(batch["label"] * np.log(p) + (1 - batch["label"]) * np.log(1 - p))
    np.testing.assert_allclose(value, bce[:4].mean(), rtol=1e-5)


def test_predict_and_score():
    logits, batch = _logits_and_batch(2)
    predictions = task_module.predict(jnp.asarray(logits), batch, task_type="binary-class")
    scores = np.asarray(predictions["scores"])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
    predictions = {"scores": scores[:4], "labels": np.array([0, 1, 0, 1])}
    metrics = task_module.score(predictions, task_type="binary-class")
    assert metrics["auc"] == pytest.approx(skm.roc_auc_score([0, 1, 0, 1], scores[:4, 1]))
    assert metrics["acc"] == pytest.approx(skm.accuracy_score([0, 1, 0, 1], scores[:4, 1] > 0.5))
    sigmoid = task_module.predict(jnp.asarray(logits), batch, task_type="multi-label, binary-class")["scores"]
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-logits)), rtol=1e-6)


class _Flatten(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return x.reshape(x.shape[0], -1)


def test_classifier_normalises_uint8_pixels():
    images = np.array([0, 51, 255], np.uint8).reshape(3, 1, 1, 1)
    model = task_module.NormalizedImages(_Flatten(), pixel_mean=0.5, pixel_std=0.5)
    out = model.apply({}, images)
    np.testing.assert_allclose(np.asarray(out)[:, 0], [-1.0, -0.6, 1.0], rtol=1e-6)


def test_wrong_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="--model: expected one of cnn, resnet18, resnet50, got 'resnet34'"):
        task_module.Config(model="resnet34")
    with pytest.raises(ConfigError, match="--dataset: expected one of pathmnist, chestmnist"):
        task_module.Config(dataset="breast")
    with pytest.raises(ConfigError, match=r"--size: expected one of 28, 64, 128, 224, got 32"):
        task_module.Config(size=32)


@pytest.mark.data
def test_task_on_real_breastmnist(breastmnist_dir):
    task = task_module.build_task(task_module.smoke_config(data_dir=str(breastmnist_dir)))
    assert {name: len(split) for name, split in task.splits.items()} == {"train": 546, "val": 78, "test": 156}
    assert task.describe["data_file_md5"] == "098de56cd2d92ef2f7170e6153c02849"  # the copy's, from its README
    assert task.class_names == ("malignant", "normal, benign") and task.select_metric == "auc"
    order = np.random.default_rng(0).permutation(546)
    batches = list(task.splits["train"].batches(128, order))
    # The short last batch is completed with the epoch's first examples, marked invalid (batch norm sees real,
    # distinct images; no loss counts them).
    assert [len(b["label"]) for b in batches] == [128] * 5
    np.testing.assert_array_equal(batches[-1]["example_mask"], np.arange(128) < 34)
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, task.splits["train"].arrays["label"][np.r_[order, order[:94]]])
    assert batches[0]["image"].shape == (128, 28, 28, 1) and batches[0]["image"].dtype == np.uint8
    assert "example_mask" not in batches[0]
    # Evaluation splits are read once each, in order, unfilled.
    assert [len(b["label"]) for b in task.splits["test"].batches(128)] == [128, 28]


def test_no_network_stops_at_once_saying_how_to_use_a_local_copy(tmp_path, monkeypatch, capsys):
    def open_url(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "open_url", open_url)
    monkeypatch.setenv("MEDJAX_CACHE_DIR", str(tmp_path / "cache"))
    # The CLI turns the download error into a one-line exit message (no traceback), before any training state exists.
    assert cli.main(["train", "medmnist", "--workdir", str(tmp_path / "run"), "--model", "cnn", "--no-progress"]) == 2
    assert re.match(r"medjax: error: could not download https://zenodo.org/records/10519652/files/breastmnist.npz.*"
                    r"pass --data-dir", capsys.readouterr().err)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.data
def test_cli_train_evaluate_plot_on_real_breastmnist(breastmnist_dir, tmp_path, medjax_command, readme):
    """The README's main job (its smoke variant: the tutorial CNN, 2 epochs) and its evaluate and plot commands."""
    assert ("medjax train medmnist --dataset breastmnist --model resnet18 --epochs 15 "
            "--data-dir ../shared/data/breastmnist-copy --workdir runs/breastmnist-resnet18") in readme
    assert "medjax evaluate --workdir runs/x" in readme and "medjax plot --workdir runs/x" in readme
    workdir = tmp_path / "run"
    medjax_command(["train", "medmnist", "--dataset", "breastmnist", "--model", "cnn", "--epochs", "2", "--seed", "3",
                    "--workdir", workdir, "--data-dir", breastmnist_dir, "--no-progress"])
    for name in ("config.json", "metrics.jsonl", "results.json", "predictions_test.npz", "checkpoints"):
        assert (workdir / name).exists(), name

    saved = json.loads((workdir / "config.json").read_text())
    assert saved["task"] == "medmnist"
    assert {k: saved["config"][k] for k in ("dataset", "model", "epochs", "seed", "lr", "schedule")} == {
        "dataset": "breastmnist", "model": "cnn", "epochs": 2, "seed": 3, "lr": 1e-3, "schedule": "multistep"}

    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(np.isfinite(line["train_loss"]) and 0 <= line["val_auc"] <= 1 for line in lines)
    # 5 steps an epoch: the multistep schedule has cut the rate twice (at steps 5 and 8) by the last step.
    assert lines[0]["lr"] == pytest.approx(1e-3) and lines[1]["lr"] == pytest.approx(1e-5)

    results = json.loads((workdir / "results.json").read_text())
    assert results["best_epoch"] in (1, 2)
    assert results["val_auc"] == pytest.approx(lines[results["best_epoch"] - 1]["val_auc"])
    with np.load(workdir / "predictions_test.npz") as predictions:
        scores, labels = predictions["scores"], predictions["labels"]
    test_split = task_module.build_task(task_module.smoke_config(data_dir=str(breastmnist_dir))).splits["test"]
    test_labels = test_split.arrays["label"]
    np.testing.assert_array_equal(labels, test_labels)
    assert scores.shape == (156, 2)
    assert results["test_auc"] == pytest.approx(skm.roc_auc_score(labels, scores[:, 1]), abs=1e-9)
    assert results["test_acc"] == pytest.approx(skm.accuracy_score(labels, scores[:, 1] > 0.5), abs=1e-9)

    assert "test_auc" in medjax_command(["evaluate", "--workdir", workdir]).stdout
    again = evaluate_workdir(workdir)
    assert again["best_epoch"] == results["best_epoch"]
    assert again["test_auc"] == pytest.approx(results["test_auc"], abs=1e-6)
    assert again["test_acc"] == pytest.approx(results["test_acc"], abs=1e-6)

    medjax_command(["plot", "--workdir", workdir])
    for name in ("learning_curves.png", "roc.png", "confusion_matrix.png", "reliability.png"):
        assert (workdir / name).stat().st_size > 1000, name

