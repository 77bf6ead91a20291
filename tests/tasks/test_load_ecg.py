"""A trained ECG run used without its data: `medjax.load(W).predict(records)` and `medjax predict --workdir W RECORD...`
give the run's own test predictions after its data folder has moved away, and change no file of the run."""

from __future__ import annotations

import hashlib
import json

import numpy as np

import medjax
from medjax import cli
from medjax.tasks import ecg as ecg_task
from tests.cli.cli_data import ecg_record


def digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_loaded_run_labels_its_test_records_without_the_data(tmp_path, capsys):
    data = tmp_path / "records"
    for i in range(8):
        ecg_record(data, name=f"90{i}", seconds=30.0, seed=i)
    workdir = tmp_path / "run"
    assert cli.main(["train", "ecg", "--data-dir", str(data), "--workdir", str(workdir), "--epochs", "1", "--hidden",
                     "16", "--batch-size", "32", "--eval-batch-size", "64", "--no-progress", "--no-tensorboard",
                     "--log-every", "0"]) == 0
    saved = json.loads((workdir / "config.json").read_text())
    meta = json.loads((workdir / "meta.json").read_text())
    assert meta["class_names"] == ["N", "S", "V", "F", "Q"] and meta["labels"] == "aami"
    with np.load(workdir / "predictions_test.npz") as arrays:
        expected = dict(arrays)
    # The strip plot reads config.json and the one record it draws, and writes nothing but its PNG.
    plotted = digests(workdir)
    assert ecg_task.plot_workdir(workdir) == [workdir / "ecg_strip.png"]
    before = digests(workdir)
    assert {k: v for k, v in before.items() if k != "ecg_strip.png"} == plotted
    moved = data.rename(tmp_path / "moved")

    names = saved["describe"]["record_names"]
    paths = [str(moved / name) for name in saved["describe"]["records"]["test"]]
    assert len(paths) == 2
    run = medjax.load(workdir)
    out = run.predict(paths)
    row_of = {(record, int(sample)): i for i, (record, sample) in enumerate(zip(out["record"], out["sample"]))}
    rows = [row_of[(str(moved / names[r]), int(s))] for r, s in zip(expected["record"], expected["sample"])]
    assert sorted(rows) == list(range(len(out["sample"])))  # every beat of the test records, once
    np.testing.assert_allclose(out["probabilities"][rows], expected["scores"], atol=1e-5)
    np.testing.assert_array_equal(out["label"][rows], expected["pred"])
    assert [out["class"][i] for i in rows] == [meta["class_names"][p] for p in expected["pred"]]

    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(workdir), *paths]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["record"] for row in printed] == out["record"]
    assert [row["sample"] for row in printed] == out["sample"].tolist()
    assert [row["class"] for row in printed] == out["class"]
    np.testing.assert_allclose([row["probabilities"] for row in printed], out["probabilities"], atol=1e-6)
    assert digests(workdir) == before

    # A record that is not there: one line naming the header it looked for.
    assert cli.main(["predict", "--workdir", str(workdir), str(tmp_path / "nowhere" / "100")]) == 2
    assert capsys.readouterr().err.startswith(f"medjax: error: {tmp_path}/nowhere/100.hea: expected a WFDB header")
