"""The OMOP reader on a hand-made database: sequences, index events and labels computed by hand; errors named."""

from __future__ import annotations

import datetime
import sqlite3

import duckdb
import numpy as np
import pytest

from medjax.data import omop
from medjax.errors import DataError, MissingPath

# (person_id, year_of_birth, gender_concept_id); person 3 has no event at all.
PERSON = [(1, 1980, omop.MALE), (2, 1950, omop.FEMALE), (3, 1990, omop.MALE), (4, 2000, omop.FEMALE)]
# table -> (person_id, concept_id, date) rows.
EVENTS = {
    "visit_occurrence": [(1, 9201, "2020-01-01")],
    "condition_occurrence": [(1, 100, "2020-01-01"), (1, 200, "2020-01-10"), (1, 300, "2020-03-01"),
                             (2, 100, "2019-06-01"), (2, 100, "2019-06-01"), (4, 200, "2021-05-05")],
    "drug_exposure": [(1, 500, "2020-01-01"), (1, 501, "2020-01-15"), (1, 502, "2020-02-09"), (2, 500, "2019-06-02"),
                      (4, 503, "2021-05-05")],
    "procedure_occurrence": [(1, 600, "2020-03-01")],
    "measurement": [(1, 700, "2020-01-10")],
}
CONCEPTS = [(500, "Aspirin"), (501, "Amoxicillin"), (502, "Ibuprofen"), (503, "Insulin")]


def day(text: str) -> int:
    return (datetime.date.fromisoformat(text) - datetime.date(1970, 1, 1)).days


def write_omop(execute, upper: bool = False, skip: tuple[str, ...] = ()) -> None:
    """Creates the OMOP tables (only the columns the reader needs, plus one it does not) and fills them."""
    name = str.upper if upper else str

    def create(table, columns, rows):
        if table in skip:
            return
        execute(f"CREATE TABLE {name(table)} ({', '.join(f'{name(c)} {t}' for c, t in columns)})")
        for row in rows:
            execute(f"INSERT INTO {name(table)} VALUES ({', '.join(repr(v) for v in row)})")

    create("person", [("person_id", "INTEGER"), ("year_of_birth", "INTEGER"), ("gender_concept_id", "INTEGER")],
           PERSON)
    for table, rows in EVENTS.items():
        person, concept, date = omop.TABLES[table]
        create(table, [(person, "INTEGER"), (concept, "INTEGER"), (date, "DATE"), ("provider_id", "INTEGER")],
               [(*row, 0) for row in rows])
    create("concept", [("concept_id", "INTEGER"), ("concept_name", "VARCHAR")], CONCEPTS)


def duckdb_file(path, **kwargs):
    connection = duckdb.connect(str(path))
    write_omop(connection.execute, **kwargs)
    connection.close()
    return path


EXPECTED = [  # (person, day, condition, history_end, drugs) with horizon 30 and at least one label
    # 501 on day +14 counts; 500 on the index day does not; 502 on day +39 is past the horizon.
    (1, day("2020-01-01"), 100, 0, (501,)),
    # 502 on day +30 exactly counts; the three events of 2020-01-01 come before.
    (1, day("2020-01-10"), 200, 3, (501, 502)),
    # Twice the same condition on one day is one index event. Condition 300 (no drug after) and person 4 (a drug on
    # the index day only) have no label.
    (2, day("2019-06-01"), 100, 0, (500,)),
]


def as_tuples(examples):
    return [(e.person, e.day, e.condition, e.history_end, e.drugs) for e in examples]


@pytest.mark.parametrize("upper", [False, True])
def test_index_events_and_labels_by_hand(tmp_path, upper):
    history = omop.read_history(omop.open_database(duckdb_file(tmp_path / "cdm.duckdb", upper=upper)))
    assert as_tuples(omop.index_events(history, horizon_days=30)) == EXPECTED
    assert history.concept_names[501] == "Amoxicillin" and history.birth_year == {1: 1980, 2: 1950, 3: 1990, 4: 2000}
    # A drug on the index day counts only when asked; then person 4's index event has a label.
    same_day = as_tuples(omop.index_events(history, horizon_days=30, index_day_drugs=True))
    assert same_day[0][4] == (500, 501) and same_day[-1] == (4, day("2021-05-05"), 200, 0, (503,))
    # Every condition occurrence with min_labels=0. A 10-day horizon leaves the first index event no label (501 is
    # on day +14) and drops 502 (day +30) from the second.
    assert len(omop.index_events(history, horizon_days=30, min_labels=0)) == 5
    assert as_tuples(omop.index_events(history, horizon_days=10)) == [EXPECTED[1][:4] + ((501,),), EXPECTED[2]]

def test_the_input_sequence_by_hand(tmp_path):
    history = omop.read_history(omop.open_database(duckdb_file(tmp_path / "cdm.duckdb")))
    example = omop.index_events(history)[1]
    days, domains, concepts = omop.input_events(history, 1, example.history_end, 256, (example.day, example.condition))
    # The three events of 2020-01-01 in domain order (visit, condition, drug), then the index condition; the
    # measurement on the index day is left out.
    assert concepts.tolist() == [9201, 100, 500, 200]
    assert domains.tolist() == [omop.VISIT, omop.CONDITION, omop.DRUG, omop.CONDITION]
    assert (days - day("2020-01-01")).tolist() == [0, 0, 0, 9]
    assert omop.gap_buckets(days).tolist() == [1, 2, 2, 2 + 4]  # 9 days: ceil(log2(10)) = 4
    # max_events keeps the most recent steps, the index condition included.
    assert omop.input_events(history, 1, example.history_end, 2, (example.day, 200))[2].tolist() == [500, 200]
    assert history.age(1, example.day) == pytest.approx((day("2020-01-10") - day("1980-01-01")) / 365.25)


def test_no_event_on_or_after_the_index_date_enters_the_input():
    history = omop.read_history(omop.open_database())  # Eunomia
    examples = omop.index_events(history, max_index_per_patient=5)
    assert len(examples) > 1000
    for e in examples:
        days, _, concepts = omop.input_events(history, e.person, e.history_end, 64, (e.day, e.condition))
        assert (days[:-1] < e.day).all() and days[-1] == e.day and concepts[-1] == e.condition
        drug_days, drugs = (a[history.events[e.person][1] == omop.DRUG] for a in history.events[e.person][::2])
        window = (drug_days > e.day) & (drug_days <= e.day + 30)
        assert set(drugs[window].tolist()) == set(e.drugs)


def test_the_split_is_by_patient_and_seeded():
    history = omop.read_history(omop.open_database())
    examples = omop.index_events(history)
    parts = omop.split_patients(examples, seed=3)
    people = {name: {examples[i].person for i in rows} for name, rows in parts.items()}
    assert not (people["train"] & people["val"]) and not (people["train"] & people["test"])
    assert not (people["val"] & people["test"]) and sum(map(len, parts.values())) == len(examples)
    assert len(people["train"]) == pytest.approx(0.8 * sum(map(len, people.values())), abs=1)
    again = omop.split_patients(examples, seed=3)
    assert all(np.array_equal(parts[n], again[n]) for n in parts)


def test_a_folder_of_csv_exports_reads_the_same(tmp_path):
    connection = duckdb.connect(":memory:")
    write_omop(connection.execute, upper=True)
    folder = tmp_path / "csv"
    folder.mkdir()
    for table in omop.TABLES:
        connection.execute(f"COPY {table} TO '{folder / (table.upper() + '.csv')}' (HEADER)")
    history = omop.read_history(omop.open_database(folder))
    assert as_tuples(omop.index_events(history)) == EXPECTED
    (folder / "MEASUREMENT.csv").unlink()
    with pytest.raises(MissingPath, match=r"measurement\.csv: expected the OMOP table measurement"):
        omop.open_database(folder)


def test_a_sqlalchemy_url_reads_the_same(tmp_path):
    path = tmp_path / "cdm.sqlite"
    connection = sqlite3.connect(path)
    write_omop(connection.execute)
    connection.commit()
    connection.close()
    history = omop.read_history(omop.open_database(database=f"sqlite:///{path}"))
    assert as_tuples(omop.index_events(history)) == EXPECTED


def test_bad_databases_are_named(tmp_path):
    with pytest.raises(DataError, match=r"cdm\.duckdb: expected an OMOP CDM table drug_exposure, got none"):
        omop.open_database(duckdb_file(tmp_path / "cdm.duckdb", skip=("drug_exposure",)))
    with pytest.raises(MissingPath, match="nowhere.duckdb: expected a .duckdb file"):
        omop.open_database(tmp_path / "nowhere.duckdb")
    with pytest.raises(DataError, match="expected a reachable database"):
        omop.open_database(database=f"sqlite:///{tmp_path}/no/such/folder/cdm.sqlite")
