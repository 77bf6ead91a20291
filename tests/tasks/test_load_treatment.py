"""A trained treatment run used without its cohort: `medjax.load(W).predict(histories)` gives the run's own test
predictions, person ids are read from the database one patient at a time (no cohort, no whole-database read), and
`medjax predict` / `medjax recommend` print the same; no file of the run changes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import medjax
from medjax import cli
from medjax.data import omop
from medjax.errors import DataError
from medjax.tasks import treatment


def digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def history_of(cohort, person: int, end: int | None = None, index=None) -> dict:
    """A patient's events ``[:end]`` (and the index condition) in the explicit form `predict` takes."""
    days, domains, concepts = (column[:end] for column in cohort.history.events[person])
    events = [(str(np.datetime64(int(d), "D")), omop.DOMAINS[k], int(c)) for d, k, c in zip(days, domains, concepts)]
    if index is not None:
        events.append((str(np.datetime64(index.day, "D")), "condition", index.condition))
    return {"events": events, "birth_year": cohort.history.birth_year[person],
            "gender": cohort.history.gender[person], "person_id": person}


def test_a_loaded_run_ranks_drugs_without_building_a_cohort(tmp_path, capsys, monkeypatch):
    workdir = tmp_path / "run"
    assert cli.main(["train", "treatment", "--workdir", str(workdir), "--limit", "32", "--epochs", "1",
                     "--max-events", "16", "--embed-dim", "8", "--hidden", "8", "--eval-batch-size", "16",
                     "--no-baseline", "--no-progress", "--no-tensorboard", "--log-every", "0"]) == 0
    meta = json.loads((workdir / "meta.json").read_text())
    with np.load(workdir / "predictions_test.npz") as arrays:
        expected = dict(arrays)
    before = digests(workdir)
    # The test split's raw inputs: each index event's history before it, then its condition.
    cohort = treatment.load_cohort(medjax.load(workdir).config)
    assert treatment.vocabulary(meta) == cohort.concepts and meta["drug_concept_ids"] == list(cohort.drugs)
    resumed = treatment.load_cohort(medjax.load(workdir).config, meta)  # a resumed run's: the vocabularies of meta
    assert all(np.array_equal(a, b) for a, b in zip(resumed.ids, cohort.ids)) and resumed.drugs == cohort.drugs
    test = cohort.parts["test"]
    inputs = [history_of(cohort, cohort.examples[i].person, cohort.examples[i].history_end, cohort.examples[i])
              for i in test]
    people = sorted({cohort.examples[i].person for i in test})[:3]
    wholes = [history_of(cohort, person) for person in people]

    def refuse(*args, **kwargs):
        raise AssertionError("a loaded run built a cohort or read the whole database")

    for module, name in ((treatment, "_read_cohort"), (treatment, "load_cohort"), (omop, "read_history"),
                         (omop, "index_events")):
        monkeypatch.setattr(module, name, refuse)
    run = medjax.load(workdir)
    drugs = meta["drug_concept_ids"]
    out = run.predict(inputs, top_k=len(drugs))
    full = np.zeros((len(inputs), len(drugs)), np.float32)
    for n, (concepts, scores) in enumerate(zip(out["concept_ids"], out["scores"])):
        full[n, [drugs.index(c) for c in concepts]] = scores
    rows = [int(np.flatnonzero(test == i)[0]) for i in expected["index"]]
    np.testing.assert_allclose(full[rows], expected["scores"], atol=1e-5)
    assert out["person_id"] == [cohort.examples[i].person for i in test]

    # A person id reads that person's whole history from the database: the same as the history given explicitly.
    by_id, given = run.predict(people, top_k=3), run.predict(wholes, top_k=3)
    np.testing.assert_array_equal(by_id["concept_ids"], given["concept_ids"])
    np.testing.assert_allclose(by_id["scores"], given["scores"], atol=1e-6)
    assert by_id["drugs"] == [[meta["drug_names"][drugs.index(c)] for c in row] for row in by_id["concept_ids"]]
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(workdir), "--top-k", "3", *map(str, people)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["person_id"] for row in printed] == people
    assert [row["concept_ids"] for row in printed] == by_id["concept_ids"].tolist()
    assert [row["drugs"] for row in printed] == by_id["drugs"]
    np.testing.assert_allclose([row["scores"] for row in printed], by_id["scores"], atol=1e-6)
    assert cli.main(["recommend", "--workdir", str(workdir), "--person-id", str(people[0]), "--top-k", "3"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(int(r[0]), int(r[2]), r[3]) for r in lines] == [
        (rank, int(c), name) for rank, (c, name) in enumerate(zip(by_id["concept_ids"][0], by_id["drugs"][0]), 1)]
    assert digests(workdir) == before

    assert cli.main(["predict", "--workdir", str(workdir), "12x"]) == 2
    assert capsys.readouterr().err.strip() == "medjax: error: INPUT: expected person ids (integers), got '12x'"
    with pytest.raises(DataError, match="input 0: expected .*'events'"):
        run.predict([{"birth_year": 1970}])
    with pytest.raises(DataError, match="--person-id: expected a person_id of the person table, got 987654321"):
        run.predict([987654321])
