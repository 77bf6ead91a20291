"""`medjax train treatment` and `medjax recommend` on Eunomia end to end, the baselines, and a tiny set overfitting."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import duckdb
import numpy as np

from conftest import ROOT
from medjax.data import omop
from medjax.tasks import treatment
from medjax.train import loop


def test_train_and_recommend_through_the_command_line(tmp_path, medjax_command):
    workdir = tmp_path / "run"
    medjax_command(["train", "treatment", "--workdir", workdir, "--limit", "64", "--epochs", "1", "--max-events", "32",
                    "--embed-dim", "16", "--hidden", "16", "--no-progress"])
    results = json.loads((workdir / "results.json").read_text())
    for key in ("test_recall_at_5", "test_ndcg_at_5", "test_micro_auc", "test_baseline_freq_recall_at_5",
                "test_baseline_logreg_recall_at_5", "test_baseline_logreg_ndcg_at_5"):
        assert 0.0 <= results[key] <= 1.0, key
    described = json.loads((workdir / "config.json").read_text())["describe"]
    assert described["split_sizes"] == {"train": 64, "val": 64, "test": 64}

    names = dict(duckdb.connect(str(omop.eunomia_path()), read_only=True)
                 .execute("SELECT concept_id, concept_name FROM concept").fetchall())
    printed = medjax_command(["recommend", "--workdir", workdir, "--person-id", "1", "--top-k", "3"]).stdout
    rows = [line.split("\t") for line in printed.splitlines()]
    assert len(rows) == 3 and [int(r[0]) for r in rows] == [1, 2, 3]
    probabilities = [float(r[1]) for r in rows]
    assert probabilities == sorted(probabilities, reverse=True) and all(0 < p < 1 for p in probabilities)
    assert all(names[int(r[2])] == r[3] for r in rows) and len({r[2] for r in rows}) == 3
    assert {int(r[2]) for r in rows} <= set(described["drug_concept_ids"])

    # A person the database does not hold: one line, exit status 2.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    missing = subprocess.run([str(pathlib.Path(sys.executable).parent / "medjax"), "recommend", "--workdir",
                              str(workdir), "--person-id", "987654321"], cwd=ROOT, capture_output=True, text=True,
                             env=env, timeout=300)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip() == ("medjax: error: --person-id: expected a person_id of the person table, got "
                                      "987654321")


def test_the_frequency_baseline_ranks_the_index_conditions_drugs_first():
    cohort = treatment.load_cohort(treatment.smoke_config(baseline=False))
    scores = treatment.frequency_baseline(cohort)
    train = cohort.parts["train"]
    condition = cohort.examples[train[0]].condition
    same = [i for i in train if cohort.examples[i].condition == condition]
    counts = cohort.labels[same].sum(axis=0)
    # The integer part of a score is the count after that condition in train; the fraction, overall frequency.
    np.testing.assert_array_equal(np.floor(scores[train[0]]), counts)
    overall = cohort.labels[train].sum(axis=0)
    np.testing.assert_allclose(scores[train[0]] - counts, overall / (overall.sum() + 1.0))


def test_a_tiny_set_overfits(tmp_path):
    config = treatment.smoke_config(workdir=str(tmp_path), limit=16, epochs=100, batch_size=16, lr=3e-2, dropout=0.0,
                                    schedule="constant", clip_norm=0.0, weight_decay=0.0, baseline=False, log_every=0)
    loop.train(treatment.build_task(config), config, task_name="treatment")
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["train_precision_at_1"] == 1.0 and last["train_loss"] < 0.05
