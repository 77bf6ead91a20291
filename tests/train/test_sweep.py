"""Sweeps: setting i trains as the single run with that value, every setting's validation curve is logged, the best
(setting, epoch) on validation is the one scored on test, loaded and plotted, and a bad --sweep is one line."""

import json

import numpy as np
import pytest

from medjax.errors import ConfigError
from medjax.train import loop, plots, sweep
from medjax.train.config import TrainConfig


def lines(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name, values, schedule", [("lr", (0.3, 0.01), "cosine"),
                                                    ("weight_decay", (0.0, 0.01), "constant")])
def test_setting_i_equals_the_single_run_with_that_value(name, values, schedule, tiny_task, tiny_config, tmp_path):
    task = tiny_task(dropout=0.2)
    same = dict(epochs=3, num_devices=1, optimizer="adam", lr=0.05, schedule=schedule, seed=3)
    text = f"{name}=" + ",".join(map(str, values))
    results = loop.train(task, tiny_config(tmp_path / "sweep", sweep=text, **same), "blobs")
    together = lines(tmp_path / "sweep")
    best = []
    for i, value in enumerate(values):
        loop.train(task, tiny_config(tmp_path / f"alone{i}", **{**same, name: value}), "blobs")
        alone = lines(tmp_path / f"alone{i}")
        for joint, single in zip(together, alone, strict=True):
            for metric in ("accuracy", "mean_score"):
                assert joint[f"val_setting{i}_{metric}"] == pytest.approx(single[f"val_{metric}"], rel=1e-5, abs=1e-6)
        best.append(max(line["val_mean_score"] for line in alone))
    # The choice is made on validation alone: the (setting, epoch) with the best selection metric.
    # (the tiny task selects on mean_score, which moves every epoch; the first of equals wins)
    flat = [(line[f"val_setting{i}_mean_score"], -line["epoch"], -i) for line in together for i in range(len(values))]
    value, epoch, setting = max(flat)
    assert results["sweep_chosen"] == values[-setting] and results["best_epoch"] == -epoch
    assert results["val_mean_score"] == value
    assert results["sweep_val_mean_score"] == pytest.approx(best, abs=1e-6)
    # Test is scored for the chosen setting only, equal to its single run's best checkpoint when the epochs agree.
    assert not any(key.startswith("test_setting") for key in results)
    assert loop.evaluate(task, tiny_config(tmp_path / "sweep", sweep=text, **same))["test_accuracy"] == \
        results["test_accuracy"]
    # predictions_test.npz holds the chosen setting's predictions (one model's, not a stack); the choice is drawn.
    with np.load(tmp_path / "sweep" / "predictions_test.npz") as saved:
        assert saved["scores"].shape == (21, 3)
    assert tmp_path / "sweep" / "sweep.png" in plots.plot_workdir(tmp_path / "sweep")


@pytest.mark.parametrize("text, message", [
    ("lr", "expected name=v1,v2,... (e.g. lr=1e-3,3e-3), got 'lr'"),
    ("dropout=0.1,0.2", "expected an option among lr, weight_decay (dropout and the model's shape are fixed inside "
                        "one compiled step), got 'dropout'"),
    ("lr=1e-3,fast", "expected numbers after lr=, got 'fast'"),
    ("lr=1e-3,0", "expected lr values > 0, got 0"),
    ("weight_decay=-1,0", "expected weight_decay values >= 0, got -1"),
    ("lr=1e-3", "expected two or more different values of lr, got '1e-3'"),
    ("lr=1e-3,1e-3", "expected two or more different values of lr"),
])
def test_a_bad_sweep_is_named(text, message):
    with pytest.raises(ConfigError, match="^--sweep: " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.").replace("+", r"\+")):
        TrainConfig(sweep=text)


def test_a_sweep_does_not_compose_with_dp_or_an_ensemble(tiny_task, tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="expected no --dp-epsilon and --ensemble 1 beside it"):
        loop.setup(tiny_task(), tiny_config(tmp_path, sweep="lr=0.1,0.2", ensemble=2))


def test_parse():
    assert sweep.parse("lr=1e-3,3e-3") == ("lr", (0.001, 0.003))
    assert sweep.parse("weight-decay=0,1e-4") == ("weight_decay", (0.0, 0.0001))
