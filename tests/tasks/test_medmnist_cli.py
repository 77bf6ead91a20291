"""The medmnist task (recipe defaults, loss, predictions, scores, name checks) and `medjax train|evaluate|plot medmnist`
end to end on real BreastMNIST with the tutorial CNN."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from medjax import cli
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
    np.testing.assert_allclose(sums["loss"], per_row[:4].sum(), rtol=1e-6)
    assert float(sums["examples"]) == 4


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
    model = task_module.MedMNISTClassifier(_Flatten(), pixel_mean=0.5, pixel_std=0.5)
    out = model.apply({}, {"image": images})
    np.testing.assert_allclose(np.asarray(out)[:, 0], [-1.0, -0.6, 1.0], rtol=1e-6)


def test_wrong_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'resnet34' for medmnist; valid models: cnn, resnet18, resnet50"):
        task_module.build_task(task_module.Config(model="resnet34", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown MedMNIST data set 'breast'; valid names: pathmnist"):
        task_module.build_task(task_module.Config(dataset="breast", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"--size must be one of \(28, 64, 128, 224\), got 32"):
        task_module.build_task(task_module.Config(size=32, data_dir=str(tmp_path)))


@pytest.mark.data
def test_task_on_real_breastmnist(breastmnist_dir):
    task = task_module.build_task(task_module.smoke_config(data_dir=str(breastmnist_dir)))
    assert {name: len(split) for name, split in task.splits.items()} == {"train": 546, "val": 78, "test": 156}
    assert task.describe["data_file_md5"] == "098de56cd2d92ef2f7170e6153c02849"  # the copy's, from its README
    assert task.class_names == ("malignant", "normal, benign") and task.select_metric == "auc"
    order = np.random.default_rng(0).permutation(546)
    batches = list(task.splits["train"].batches(128, order))
    assert [len(b["label"]) for b in batches] == [128, 128, 128, 128, 34]
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, task.splits["train"].labels[order])
    assert batches[0]["image"].shape == (128, 28, 28, 1) and batches[0]["image"].dtype == np.uint8
