"""`medjax train ecg`, `medjax plot` and `medjax predict` of an ECG run end to end, and the task's parts on small
data."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import data_dir
from medjax.nn.beat_classifiers import BeatCNN, BeatLSTM, BeatTransformer
from medjax.tasks import ecg as ecg_task
from medjax.train import loop
from tests.cli.cli_data import ecg_record


def test_train_plot_and_predict_through_the_command_line(tmp_path, medjax_command):
    shared = data_dir("mitdb-pvc-12")
    workdir = tmp_path / "run"
    medjax_command(["train", "ecg", "--data-dir", shared, "--workdir", workdir, "--limit", "300", "--epochs", "1",
                    "--hidden", "16", "--no-progress"])
    results = json.loads((workdir / "results.json").read_text())
    for key in ("test_se_V", "test_ppv_V", "test_f1_V", "test_accuracy", "test_baseline_f1_V"):
        assert 0.0 <= results[key] <= 1.0, key
    described = json.loads((workdir / "config.json").read_text())["describe"]
    assert described["records"]["test"] == ["100", "105", "121", "123", "200"]
    medjax_command(["plot", "--workdir", workdir])
    assert (workdir / "ecg_strip.png").stat().st_size > 10_000 and (workdir / "confusion_matrix.png").exists()

    # A record the run has never seen: every beat gets a row, one JSON line each.
    path, _, beats, _ = ecg_record(tmp_path / "new", seconds=30.0)
    rows = [json.loads(line) for line in
            medjax_command(["predict", "--workdir", workdir, path]).stdout.splitlines()]
    inside = beats[(beats >= 90) & (beats + 162 <= 30 * 360)]
    assert [r["sample"] for r in rows] == inside.tolist() and {r["record"] for r in rows} == {str(path)}
    assert {r["class"] for r in rows} <= {"non-V", "V"} and all(max(r["probabilities"]) >= 0.5 for r in rows)
    # Without an annotation file the beats are found by the QRS detector.
    (tmp_path / "new" / "900.atr").unlink()
    printed = medjax_command(["predict", "--workdir", workdir, path]).stdout.splitlines()
    found = np.array([json.loads(line)["sample"] for line in printed])
    # XQRS finds most synthetic beats (it may miss a wide negative V), each within 50 ms of the annotated R peak.
    assert found.size >= 0.8 * inside.size
    assert np.abs(found[:, None] - beats[None, :]).min(axis=1).max() <= 18


def test_a_tiny_set_overfits(tmp_path):
    config = ecg_task.smoke_config(data_dir=str(data_dir("mitdb-pvc-12")), workdir=str(tmp_path), limit=24,
                                   epochs=25, batch_size=24, lr=1e-2, dropout=0.0, schedule="constant",
                                   clip_norm=0.0, baseline=False, val_records=("116",), log_every=0)
    loop.train(ecg_task.build_task(config), config, task_name="ecg")
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["train_loss"] < 0.05 and last["train_accuracy"] == 1.0


def test_class_weights_are_inverse_frequencies():
    weights = ecg_task.class_weights(np.array([0, 0, 0, 1, 0, 0, 0, 1]), 3)  # 6 non-V, 2 V, none of class 2
    np.testing.assert_allclose(weights, [8 / (2 * 6), 8 / (2 * 2), 0.0])
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    batch = {"label": jnp.array([0, 1, 1]), "example_mask": jnp.array([True, True, False])}
    value, _ = ecg_task.loss(logits, batch, (1.0, 3.0))
    ce = -jax.nn.log_softmax(logits)[jnp.arange(3), batch["label"]]
    np.testing.assert_allclose(value, (1 * ce[0] + 3 * ce[1]) / 4, rtol=1e-6)


@pytest.mark.parametrize("model", [BeatCNN(2, hidden=8), BeatLSTM(2, hidden=8), BeatTransformer(2, width=8,
                                                                                                  num_heads=2)])
def test_every_model_reads_both_the_morphology_and_the_rr_intervals(model):
    rng = np.random.default_rng(0)
    window, rr = jnp.asarray(rng.normal(size=(4, 252)), jnp.float32), jnp.asarray(rng.uniform(0.5, 1.5, (4, 4)),
                                                                                   jnp.float32)
    variables = model.init(jax.random.key(0), window, rr)
    grads = jax.grad(lambda w, r: model.apply(variables, w, r)[:, 1].sum(), argnums=(0, 1))(window, rr)
    assert all(float(jnp.abs(g).sum()) > 0 for g in grads)
    # Each beat is classified on its own: changing one beat changes no other beat's logits.
    moved = model.apply(variables, window.at[0].add(1.0), rr)
    np.testing.assert_allclose(moved[1:], model.apply(variables, window, rr)[1:], rtol=1e-5, atol=1e-6)
