"""The molecules task: un-standardised predictions and scores against NumPy, a tiny set overfits, and a short
`medjax train molecules` + `medjax predict molecules` run on FreeSolv."""

import csv
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, data_dir
from medjax.tasks import molecules
from medjax.train import batching, optim, state as train_state, steps

TINY = ["--embed-dim", "8", "--hidden", "8", "--mlp-dim", "8", "--num-heads", "2", "--batch-size", "128",
        "--eval-batch-size", "128", "--buckets", "64", "--no-progress", "--log-every", "0"]
SMILES = ["CCO", "CCCO", "CCCCO", "CC(C)O", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "Clc1ccccc1", "CCCl", "CCBr",
          "CC(=O)O", "CC(=O)OC", "C1CCCCC1", "CC#N", "CN(C)C", "O=C1CCCC1"]


def tiny_folder(tmp_path):
    """16 training molecules with arbitrary targets (and a reference column), 2 for validation, 2 for test."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    targets = np.linspace(-8.0, 2.0, len(SMILES))
    (folder / "train.csv").write_text("smiles,expt,calc\n" + "".join(f"{s},{t},{t + 1}\n"
                                                                     for s, t in zip(SMILES, targets)))
    (folder / "valid.csv").write_text("smiles,expt,calc\nCCCCCO,-3.0,-2.0\nCCI,-1.0,0.0\n")
    (folder / "test.csv").write_text("smiles,expt,calc\nCC(C)CO,-4.0,-3.5\nc1ccncc1,-2.0,-2.5\n")
    return folder, targets


def test_scores_use_the_training_statistics_and_match_numpy(tmp_path):
    folder, targets = tiny_folder(tmp_path)
    task = molecules.build_task(molecules.smoke_config(data_dir=str(folder), workdir=str(tmp_path / "w")))
    assert task.describe["target_mean"] == pytest.approx(targets.mean())
    assert task.describe["target_std"] == pytest.approx(targets.std())
    # The test rows are 18 and 19 (train, valid, test in order); baseline left out of this check.
    pred = np.array([-3.0, -2.5])
    scores = task.score({"prediction": pred, "index": np.array([18, 19])})
    true = np.array([-4.0, -2.0])
    assert scores["rmse"] == pytest.approx(np.sqrt(np.mean((pred - true) ** 2)))
    assert scores["neg_rmse"] == -scores["rmse"] and scores["mae"] == pytest.approx(0.75)
    assert scores["r2"] == pytest.approx(1 - 1.25 / 2.0)
    assert scores["calc_rmse"] == pytest.approx(0.5)
    # The model's standardised output comes back in the target's units.
    out = molecules.regression_predict(np.array([[1.0], [0.0]]), {"target": np.zeros(2), "index": np.arange(2)},
                                       mean=-3.0, std=2.0)
    np.testing.assert_allclose(out["prediction"], [-1.0, -3.0])


def test_a_tiny_set_overfits(tmp_path):
    folder, _ = tiny_folder(tmp_path)
    config = molecules.smoke_config(data_dir=str(folder), workdir=str(tmp_path / "w"), dropout=0.0, lr=1e-2,
                                    schedule="constant", batch_size=16, baseline=False)
    task = molecules.build_task(config)
    batch = next(batching.padded_batches(task.splits["train"], 16))
    state = train_state.init_train_state(task.model, optim.make_optimizer(config, 300), batch, jax.random.key(0))
    losses = []
    for _ in range(300):
        state, metrics = steps.train_step(state, batch, jax.random.key(1), task.loss)
        losses.append(metrics["loss"].value())
    assert losses[0] > 0.3 and losses[-1] < 0.02  # standardised MSE: 1 for a constant prediction


def test_train_predict_and_parity_on_freesolv(tmp_path, medjax_command):
    freesolv = data_dir("freesolv")
    workdir = tmp_path / "run"
    medjax_command(["train", "molecules", "--data-dir", freesolv, "--workdir", workdir, "--epochs", "1", *TINY])
    results = json.loads((workdir / "results.json").read_text())
    assert {"test_rmse", "test_baseline_rmse", "test_calc_rmse", "test_r2"} <= set(results)
    assert results["select_metric"] == "neg_rmse" and results["test_baseline_rmse"] < 2.5
    with np.load(workdir / "predictions_test.npz") as saved:
        index, predicted = saved["index"], saved["prediction"]
    with open(freesolv / "freesolv.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expt = np.array([float(rows[i]["expt"]) for i in index])
    calc = np.array([float(rows[i]["calc"]) for i in index])
    assert len(index) == 65
    assert results["test_calc_rmse"] == pytest.approx(np.sqrt(np.mean((expt - calc) ** 2)), rel=1e-12)
    assert results["test_rmse"] == pytest.approx(np.sqrt(np.mean((expt - predicted) ** 2)), rel=1e-5)
    assert molecules.plot_parity(workdir).stat().st_size > 1000

    first = rows[index[0]]["smiles"]
    out = medjax_command(["predict", "--workdir", workdir, "CCO", first, "C1CC", "--format", "csv"]).stdout
    lines = list(csv.DictReader(out.splitlines()))
    assert [row["smiles"] for row in lines] == ["CCO", first, "C1CC"]
    assert [row["valid"] for row in lines] == ["True", "True", "False"] and lines[2]["prediction"] == "nan"
    assert np.isfinite(float(lines[0]["prediction"]))
    assert float(lines[1]["prediction"]) == pytest.approx(predicted[0], abs=1e-4)


def test_a_bad_smiles_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("smiles,expt\nCCO,1.0\nCXC,2.0\n")
    result = subprocess.run([sys.executable, "-m", "medjax.cli", "train", "molecules", "--data-dir", str(path),
                             "--workdir", str(tmp_path / "w")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"medjax: error: {path}:3: expected a SMILES of characters the atom-level tokenizer covers, got 'X' at "
        f"position 2 of 'CXC'"]


def test_zero_one_targets_make_a_classification_task_scored_as_scikit_learn(tmp_path):
    from sklearn.metrics import roc_auc_score

    folder, _ = tiny_folder(tmp_path)
    for name in ("train.csv", "valid.csv", "test.csv"):
        lines = (folder / name).read_text().splitlines()
        (folder / name).write_text("\n".join([lines[0]] + [f"{line.split(',')[0]},{i % 2},0" for i, line in
                                                           enumerate(lines[1:])]) + "\n")
    task = molecules.build_task(molecules.smoke_config(data_dir=str(folder), workdir=str(tmp_path / "w")))
    assert task.select_metric == "auc" and task.describe["task_type"] == "classification"
    index = np.arange(16)
    labels = index % 2
    scores = np.random.default_rng(0).uniform(size=16)
    got = task.score({"scores": np.stack([1 - scores, scores], 1), "pred": (scores > 0.5).astype(np.int32),
                      "index": index})
    assert got["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert got["accuracy"] == pytest.approx(np.mean((scores > 0.5) == labels))
    assert 0.0 <= got["baseline_auc"] <= 1.0
