"""Ensembles: member i trains exactly as a single run with seed i (and the ensemble's data order), the strategies
(vmap, lax.map, unrolled) agree, the ensemble is scored on its mean probabilities, and calibration figures are as computed by
hand."""

import json

import jax
import numpy as np
import pytest

from medjax.metrics import calibration
from medjax.train import batching, ensemble, loop, optim
from medjax.train.config import TrainConfig
from medjax.train.state import init_train_state


def lines(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_member_i_equals_the_single_run_with_seed_i(tiny_task, tiny_config, tmp_path):
    task = tiny_task(batch_norm=True, dropout=0.2)
    # SGD: Adam's g / sqrt(v) turns rounding-level differences of near-zero gradients (the members' batch-norm
    # statistics round differently inside lax.map) into full steps; with SGD they stay at rounding level.
    same = dict(epochs=2, num_devices=1, optimizer="sgd", lr=0.1)
    results = loop.train(task, tiny_config(tmp_path / "ensemble", ensemble=3, seed=4, **same), "blobs")
    together = lines(tmp_path / "ensemble")
    for i in range(3):
        loop.train(task, tiny_config(tmp_path / f"seed{4 + i}", seed=4 + i, data_seed=4, **same), "blobs")
        alone = lines(tmp_path / f"seed{4 + i}")
        for joint, single in zip(together, alone):
            for metric in ("accuracy", "mean_score"):
                assert joint[f"val_member{i}_{metric}"] == pytest.approx(single[f"val_{metric}"], rel=1e-5, abs=1e-6)
    # The ensemble's own figures are those of its mean probabilities, with calibration beside them.
    assert {"test_accuracy", "test_ece", "test_entropy", "test_member2_accuracy"} <= set(results)
    assert 0.0 <= results["test_ece"] <= 1.0
    with np.load(tmp_path / "ensemble" / "predictions_test.npz") as saved:
        assert saved["scores"].shape == (21, 3)  # the ensemble's, members averaged
    # Each member's calibration error stands beside the ensemble's.
    assert {f"test_member{i}_ece" for i in range(3)} <= set(results)
    assert all(0.0 <= results[f"test_member{i}_ece"] <= 1.0 for i in range(3))
    assert loop.evaluate(task, tiny_config(tmp_path / "ensemble", ensemble=3, seed=4, **same))["test_accuracy"] == \
        results["test_accuracy"]


def test_the_strategies_agree(tiny_task):
    task = tiny_task(dropout=0.2)
    batch = batching.pad_batch(next(task.splits["train"].batches(8)), 8)
    tx = optim.make_optimizer(TrainConfig(lr=0.05), total_steps=10)
    states = ensemble.stack([init_train_state(task.model, tx, batch, jax.random.PRNGKey(s)) for s in range(2)])
    rngs = jax.random.split(jax.random.PRNGKey(9), 2)
    copy = lambda: jax.tree_util.tree_map(np.array, jax.device_get(states))
    results = {}
    for how in ensemble.STRATEGIES:
        new, metrics = ensemble.ensemble_train_step(copy(), batch, rngs, task.loss, ("dropout",), how)
        results[how] = jax.device_get((new.params, metrics["loss"].value()))
    for how in ("vmap", "unroll"):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), results[how],
                               results["map"])
    assert ensemble.strategy("gpu") == "vmap" and ensemble.strategy("cpu") == "map"
    # On CPU a model with convolutions gets one copy of its step per member; a dense or recurrent one lax.map.
    assert ensemble.choose_strategy(states, batch, rngs, task.loss, ("dropout",), "cpu") == "map"
    from medjax.nn.conv import TutorialCNN

    conv = jax.make_jaxpr(lambda x: TutorialCNN(num_classes=2).init(jax.random.PRNGKey(0), x))(np.zeros((1, 28, 28, 1)))
    assert ensemble.strategy("cpu", conv) == "unroll"


def test_mean_probabilities_recomputes_the_predicted_class():
    stacked = {"scores": np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.3, 0.7]]]), "pred": np.array([[0], [1], [1]]),
               "labels": np.array([[1], [1], [1]])}
    combined = ensemble.mean_probabilities(stacked)
    np.testing.assert_allclose(combined["scores"], [[1.4 / 3, 1.6 / 3]])
    assert combined["pred"].tolist() == [1] and combined["labels"].tolist() == [1]


def test_calibration_by_hand():
    # Confidences 0.95 (right), 0.85 (wrong), 0.55 (right), 0.65 (right): bins [0.9,1) acc 1 conf .95, [0.8,.9) acc 0
    # conf .85, [0.5,.6) acc 1 conf .55, [0.6,.7) acc 1 conf .65 -> ECE = (.05 + .85 + .45 + .35) / 4 = 0.425.
    scores = np.array([[0.95, 0.05], [0.85, 0.15], [0.45, 0.55], [0.35, 0.65]])
    labels = np.array([0, 1, 1, 1])
    assert calibration.expected_calibration_error(labels, scores) == pytest.approx(0.425)
    bins = calibration.reliability_bins(labels, scores)
    assert bins["count"].sum() == 4 and bins["accuracy"][8] == 0.0 and bins["confidence"][9] == pytest.approx(0.95)
    assert calibration.mean_entropy(np.array([[0.5, 0.5], [1.0, 0.0]])) == pytest.approx(np.log(2) / 2, rel=1e-6)
