"""Issue 23, "nothing lost, nothing let in": the readers of untrusted files refuse damage in one line, let no markup,
pickle, password or symlink through, and refuse windows that would not fit in memory.

The end-to-end cases call `medjax.cli.main` in this process (no subprocess: each case takes well under a second)
and check what a user would see: exit status 2, exactly one stderr line starting ``medjax: error:``, naming the
file (and line or field), no traceback. Every file is a tiny synthetic one under ``tmp_path``.
"""

from __future__ import annotations

import io
import json
import pathlib
import struct
import sys
import zlib

import duckdb
import numpy as np
import pytest

from medjax import cli
from medjax.data import ecg, files, omop, subwords
from medjax.errors import ConfigError, DataError
from medjax.train import plots
from medjax.train.html_report import write_report
from tests.cli.cli_data import ecg_record
from tests.data.test_omop import write_omop

MARKUP = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def one_line_error(capsys, argv, *named):
    """Runs the command line in-process; asserts exit status 2 and one stderr line naming ``named``; returns it."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("medjax: error: "), err
    for text in named:
        assert str(text) in lines[0], lines[0]
    return lines[0]


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


def run_folder(path: pathlib.Path, task: str = "ner", config: dict | None = None, results: dict | None = None,
               metrics: bool = True) -> pathlib.Path:
    """A finished run's folder as `medjax train` leaves it, reduced to what report and plot read."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"task": task, "config": config or {"epochs": 2},
                                                  "class_names": ["O", "B"]}))
    if results is not None:
        (path / "results.json").write_text(json.dumps(results))
    if metrics:
        (path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "train_loss": 1.0 / e, "val_f1": 0.1 * e})
                                                    + "\n" for e in (1, 2)))
    return path


# --- 1. report --html and plot: markup escaped, damaged JSON named ---------------------------------------------------

def test_markup_in_config_and_results_is_escaped_everywhere(tmp_path):
    workdir = tmp_path / "<b>run"
    run_folder(workdir, task=MARKUP, config={"epochs": MARKUP, f"<img src=x onerror=alert(2)>": MARKUP},
               results={"best_epoch": MARKUP, "select_metric": MARKUP, "wall_seconds": MARKUP, "val_f1": 0.5,
                        f"test_{MARKUP}": 0.25})
    config = json.loads((workdir / "config.json").read_text())
    config.update(medjax_version=MARKUP, describe={"x": MARKUP})
    (workdir / "config.json").write_text(json.dumps(config))
    page = write_report(workdir).read_text()
    assert "<script" not in page and "<img src=x" not in page and "<b>run" not in page
    assert f"best epoch {ESCAPED} of {ESCAPED}" in page  # best_epoch and epochs, both once went in raw
    assert "&lt;img src=x onerror=alert(2)&gt;" in page and f'data-key="test_{ESCAPED}"' in page


def test_unfinished_run_escapes_epochs(tmp_path):
    workdir = run_folder(tmp_path / "run", config={"epochs": MARKUP})
    page = write_report(workdir).read_text()
    assert "<script" not in page and f"Unfinished: 2 of {ESCAPED} epochs done" in page


def test_report_html_with_markup_through_the_command_line(tmp_path, capsys):
    workdir = run_folder(tmp_path / "run", config={"epochs": MARKUP}, results={"best_epoch": 2, "val_f1": 0.5,
                                                                                "select_metric": MARKUP})
    (workdir / "learning_curves.png").write_bytes(tiny_png())  # a figure already there: nothing drawn
    assert cli.main(["report", "--workdir", str(workdir), "--html"]) == 0
    page = (workdir / "report.html").read_text()
    assert "<script" not in page and ESCAPED in page and 'alt="learning_curves.png"' in page


def test_the_report_embeds_no_file_outside_the_folder_and_follows_no_symlink(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(tiny_png())
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    workdir = run_folder(tmp_path / "run", results={"best_epoch": 1})
    (workdir / "leak.png").symlink_to(secret)
    (workdir / "not-a-png.png").write_text("<script>alert(1)</script>")
    (workdir / "report.html").symlink_to(victim)
    page = write_report(workdir).read_text()
    assert "leak.png" not in page and "not-a-png" not in page
    assert victim.read_text() == "untouched" and not (workdir / "report.html").is_symlink()
    assert not list(workdir.glob(".report.html*"))  # no temporary file left behind


@pytest.mark.parametrize("damaged", ["results.json", "config.json"])
def test_report_html_names_a_truncated_json_file(tmp_path, capsys, damaged):
    workdir = run_folder(tmp_path / "run", results={"best_epoch": 2, "val_f1": 0.5})
    path = workdir / damaged
    path.write_bytes(path.read_bytes()[:15])
    one_line_error(capsys, ["report", "--workdir", workdir, "--html"], path if damaged == "results.json" else
                   "config.json")
    with pytest.raises(DataError, match=rf"{damaged}: expected a run's JSON file"):
        write_report(workdir)


@pytest.mark.parametrize("damaged, named", [
    ("config.json", "config.json: expected a run's JSON file"),
    ("results.json", "results.json: expected a run's JSON file"),
    ("metrics.jsonl", "metrics.jsonl:2: expected one JSON object per line"),
    ("best_epoch", "results.json: best_epoch: expected an epoch number"),
    ("class_names", "config.json: class_names: expected a list of names"),
])
def test_plot_names_the_damaged_file(tmp_path, capsys, damaged, named):
    workdir = run_folder(tmp_path / "run", results={"best_epoch": 2})
    if damaged == "metrics.jsonl":
        lines = (workdir / damaged).read_bytes().splitlines()
        (workdir / damaged).write_bytes(lines[0] + b"\n" + lines[1][:9] + b"\xff\n")
    elif damaged == "best_epoch":
        (workdir / "results.json").write_text(json.dumps({"best_epoch": MARKUP}))
    elif damaged == "class_names":
        (workdir / "config.json").write_text(json.dumps({"task": "ner", "config": {}, "class_names": {"a": 1}}))
    else:
        (workdir / damaged).write_bytes((workdir / damaged).read_bytes()[:10])
    one_line_error(capsys, ["plot", "--workdir", workdir], workdir / named)
    assert not (workdir / "learning_curves.png").exists()


def test_plot_names_a_truncated_or_pickled_predictions_file(tmp_path, capsys):
    workdir = run_folder(tmp_path / "run", results={"best_epoch": 2}, metrics=False)
    path = workdir / "predictions_test.npz"
    np.savez(path, labels=np.arange(200) % 2, scores=np.linspace(0, 1, 200))
    path.write_bytes(path.read_bytes()[:-40])
    one_line_error(capsys, ["plot", "--workdir", workdir], f"{path}: expected the .npz archive")
    np.savez(path, labels=np.array([0, 1], dtype=object), scores=np.array([0.1, 0.9]))
    one_line_error(capsys, ["plot", "--workdir", workdir], f"{path}: expected the .npz archive")
    np.savez(path, labels=np.array([0, 1, 1]), scores=np.array([0.1, 0.9]))
    one_line_error(capsys, ["plot", "--workdir", workdir], f"{path}: expected labels, scores and pred of one length")
    np.savez(path, labels=np.array([0, 10 ** 9]), pred=np.array([0, 1]))
    one_line_error(capsys, ["plot", "--workdir", workdir], f"{path}: labels: expected class indices")
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))
    one_line_error(capsys, ["plot", "--workdir", workdir], f"{path}: expected the .npz archive a run writes, got a "
                                                           f"single .npy array")


def test_plot_replaces_a_symlinked_figure_without_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    workdir = run_folder(tmp_path / "run", results={"best_epoch": 2})
    (workdir / "learning_curves.png").symlink_to(victim)
    assert [p.name for p in plots.plot_workdir(workdir)] == ["learning_curves.png"]
    assert victim.read_text() == "untouched"
    assert (workdir / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_names_with_dollars_are_drawn_as_text(tmp_path):
    workdir = run_folder(tmp_path / "run", results={"best_epoch": 2}, metrics=False)
    names = ["$\\frac{$", "a_$b$^"]  # mathtext that does not parse
    (workdir / "config.json").write_text(json.dumps({"task": "t", "config": {}, "class_names": names}))
    np.savez(workdir / "predictions_test.npz", labels=np.array([0, 1, 1, 0]), pred=np.array([0, 1, 0, 0]))
    assert [p.name for p in plots.plot_workdir(workdir)] == ["confusion_matrix.png"]  # bad mathtext raised here


# --- 2. OMOP: --database URLs and CSV exports -------------------------------------------------------------------------

@pytest.mark.parametrize("url, named", [
    ("postgresql://someone:s3cret@db.example/cdm", "expected the Python driver of 'postgresql://someone:***@"),
    ("nosuchdialect://someone:s3cret@db.example/cdm", "expected a SQLAlchemy dialect that is installed"),
    ("postgresql://someone:s3cret@db.example:port/cdm", "expected a SQLAlchemy URL"),
    ("not a url, someone:s3cret@here", "expected a SQLAlchemy URL"),
    ("postgresql://someone:s3c@ret@db.example/cdm", "postgresql://someone:***@db.example/cdm"),
])
def test_database_url_errors_are_one_line_and_hide_the_password(tmp_path, capsys, url, named):
    line = one_line_error(capsys, ["train", "treatment", "--database", url, "--epochs", "1", "--no-progress",
                                   "--workdir", tmp_path / "run"], "--database", named)
    assert "s3c" not in line and "ret@" not in line


def test_masked_url_by_hand_when_sqlalchemy_cannot_parse():
    assert omop.masked_url("x y://me:pa/ss@host/db") == "x y://me:***@host/db"
    assert omop.masked_url("sqlite:///cdm.sqlite") == "sqlite:///cdm.sqlite"


def omop_csv_folder(folder: pathlib.Path, table: str, old: str, new: str) -> pathlib.Path:
    connection = duckdb.connect(":memory:")
    write_omop(connection.execute)
    folder.mkdir(parents=True)
    for name in omop.TABLES:
        connection.execute(f"COPY {name} TO '{folder / (name + '.csv')}' (HEADER)")
    path = folder / f"{table}.csv"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    return folder


@pytest.mark.parametrize("table, old, new, named", [
    ("condition_occurrence", "1,200,2020-01-10", "1,200,2020-13-45",
     "condition_occurrence.csv:3: column condition_start_date: expected a date YYYY-MM-DD, got '2020-13-45'"),
    ("drug_exposure", "\n2,500", "\nabc,500", "drug_exposure.csv:5: column person_id: expected an integer, got 'abc'"),
    ("person", "3,1990", "3,", "person.csv:4: column year_of_birth: expected an integer, got an empty cell"),
])
def test_a_bad_cell_of_an_omop_csv_export_names_file_line_and_column(tmp_path, capsys, table, old, new, named):
    folder = omop_csv_folder(tmp_path / "csv", table, old, new)
    one_line_error(capsys, ["train", "treatment", "--data-dir", folder, "--epochs", "1", "--no-progress",
                            "--workdir", tmp_path / "run"], f"{folder}/{named}")


def test_a_bad_date_past_the_rows_duckdb_sniffs_is_named_too(tmp_path):
    folder = omop_csv_folder(tmp_path / "csv", "measurement", "1,700,2020-01-10,0\n", "1,700,2020-01-10,0\n"
                             + "1,700,2020-01-11,0\n" * 25_000 + "1,700,2020-02-30,0\n")
    with pytest.raises(DataError, match=r"measurement\.csv:25003: column measurement_date: expected a date"):
        omop.read_history(omop.open_database(folder))


def test_a_bad_date_in_a_sql_database_names_table_and_column(tmp_path):
    import sqlite3

    path = tmp_path / "cdm.sqlite"
    connection = sqlite3.connect(path)
    write_omop(connection.execute)
    connection.execute("UPDATE measurement SET measurement_date = '2020-13-45'")
    connection.commit()
    connection.close()
    with pytest.raises(DataError, match=r"cdm\.sqlite: measurement: column measurement_date: expected a date "
                                        r"YYYY-MM-DD, got '2020-13-45'"):
        omop.read_history(omop.open_database(database=f"sqlite:///{path}"))


# --- 3. ECG records ---------------------------------------------------------------------------------------------------

ECG_TRAIN = ["train", "ecg", "--epochs", "1", "--no-progress"]


@pytest.mark.parametrize("rate", ["abc", "-360", "0", "nan"])
def test_a_header_whose_frequency_is_no_positive_number_is_refused(tmp_path, capsys, rate):
    base, _, _, _ = ecg_record(tmp_path / "ecg", seconds=10.0)
    header = base.with_suffix(".hea")
    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[2] = rate
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
    one_line_error(capsys, [*ECG_TRAIN, "--data-dir", base.parent, "--workdir", tmp_path / "run"],
                   f"{header}:1: expected a positive sampling frequency")
    with pytest.raises(DataError, match="expected a positive sampling frequency"):
        ecg.read_wfdb(base)


def test_a_header_without_a_frequency_means_250_hz(tmp_path):
    header = tmp_path / "r.hea"
    header.write_text("# a comment\n\nr 1\nr.dat 16\n")
    assert ecg.header_rate(header) is None
    header.write_text("r 1 360/720(0) 7200\nr.dat 16 200\n")
    assert ecg.header_rate(header) == 360.0
    header.write_text("r x 360\n")
    with pytest.raises(DataError, match=r"r\.hea:1: expected a WFDB record line .* with at least one signal"):
        ecg.header_rate(header)


def test_a_missing_signal_file_is_named(tmp_path, capsys):
    base, _, _, _ = ecg_record(tmp_path / "ecg", seconds=10.0)
    base.with_suffix(".dat").unlink()
    one_line_error(capsys, [*ECG_TRAIN, "--data-dir", base.parent, "--workdir", tmp_path / "run"],
                   f"{base}.dat: expected the signal file named in {base}.hea")


def test_a_truncated_or_pickled_npz_record_is_named(tmp_path, capsys):
    folder = tmp_path / "npz"
    folder.mkdir()
    path = folder / "mitdb_100.npz"
    np.savez(path, ecg_adu=np.zeros(3600, np.int16), adu_per_mv=200.0, fs=360, r_peaks=np.arange(100, 3500, 300),
             is_pvc=np.zeros(12, np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    one_line_error(capsys, [*ECG_TRAIN, "--data-dir", folder, "--workdir", tmp_path / "run"],
                   f"{path}: expected an .npz archive, got truncated")
    np.savez(path, ecg_adu=np.zeros(3600, np.int16), adu_per_mv=np.array([200.0], dtype=object), fs=360,
             r_peaks=np.arange(100, 3500, 300), is_pvc=np.zeros(12, np.uint8))
    with pytest.raises(DataError, match="expected an .npz archive"):  # an object array is never unpickled
        ecg.read_npz(path)
    np.savez(path, ecg_adu=np.zeros(3600, np.int16), adu_per_mv=0.0, fs=360, r_peaks=np.arange(100, 3500, 300),
             is_pvc=np.zeros(12, np.uint8))
    with pytest.raises(DataError, match="adu_per_mv: expected one positive number"):
        ecg.read_npz(path)
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3600))
    with pytest.raises(DataError, match="expected an .npz archive, got a single .npy array"):
        ecg.read_npz(path)


@pytest.mark.parametrize("damage", ["no signal line", "signal line garbled"])
def test_a_damaged_header_is_named(tmp_path, damage):
    base, _, _, _ = ecg_record(tmp_path / "ecg", seconds=10.0)
    header = base.with_suffix(".hea")
    lines = header.read_text().splitlines()
    header.write_text(lines[0] + "\n" + ("" if damage == "no signal line" else "900.dat zz 200.0(0)/mV\n"))
    named = f"{header}:1: expected 1 signal line" if damage == "no signal line" else f"{header}: expected a WFDB header"
    with pytest.raises(DataError, match=rf"^{named}"):
        ecg.read_wfdb(base)


# --- 4. windows that would not fit in memory --------------------------------------------------------------------------

def test_window_bytes_of_a_1000_second_window():
    # 1000 s before the R peak at 360 Hz: 360,162 samples a beat; 20,000 beats of them are 28.8 GB.
    assert ecg.window_bytes(20_000, 360.0, 1000.0, 0.45) == 20_000 * 360_162 * 4
    with pytest.raises(ConfigError, match=r"^--before/--after: expected beat windows that fit in memory, .* = 28\.8 "
                                          r"GB, more than half"):
        ecg.check_window_memory(20_000, 360.0, 1000.0, 0.45)
    ecg.check_window_memory(20_000, 360.0, 0.25, 0.45)  # the default window: 50 MB


def test_cut_beats_refuses_windows_larger_than_half_the_memory(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ecg"
    for name in ("900", "901", "902"):
        ecg_record(folder, name=name, seconds=10.0)
    record = ecg.read_wfdb(folder / "900")
    kept = ecg.cut_beats(record, before=2.0, after=2.0).windows
    needed = kept.nbytes
    monkeypatch.setattr(ecg, "physical_memory", lambda: 2 * needed - 2)  # half of it is one byte short
    with pytest.raises(ConfigError, match="--before/--after"):
        ecg.cut_beats(record, before=2.0, after=2.0)
    one_line_error(capsys, [*ECG_TRAIN, "--data-dir", folder, "--workdir", tmp_path / "run", "--before", "2",
                            "--after", "2"], "--before/--after: expected beat windows that fit in memory")
    monkeypatch.setattr(ecg, "physical_memory", lambda: 2 * needed)
    assert np.array_equal(ecg.cut_beats(record, before=2.0, after=2.0).windows, kept)


def test_chunked_windows_equal_one_interpolation(tmp_path, monkeypatch):
    base, _, _, _ = ecg_record(tmp_path / "ecg", seconds=20.0)
    record = ecg.read_wfdb(base)
    whole = ecg.cut_beats(record, rate=250.0)
    monkeypatch.setattr(ecg, "_CHUNK_ELEMENTS", 500)  # 2 beats a chunk
    assert np.array_equal(ecg.cut_beats(record, rate=250.0).windows, whole.windows)


# --- 5. subword models ------------------------------------------------------------------------------------------------

def test_a_corrupt_subword_model_is_named(tmp_path):
    path = tmp_path / "subwords.model"
    path.write_bytes(b"\x0a\xff garbage, not a model \x00\x01")
    with pytest.raises(DataError, match=rf"^{path}: expected a SentencePiece model"):
        subwords.load(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=rf"^{path}: expected a SentencePiece model, got an empty file"):
        subwords.load(path)


def test_a_subword_model_is_written_through_a_rename_never_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "subwords.model").symlink_to(victim)
    sentences = ["the patient has a fever", "wash your hands often", "la fièvre a duré trois jours"] * 5
    sp = subwords.train(sentences, tmp_path / "work" / "subwords", vocab_size=40)
    assert victim.read_text() == "untouched" and not (tmp_path / "work" / "subwords.model").is_symlink()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["subwords.model"]
    assert subwords.load(tmp_path / "work" / "subwords.model").encode("wash") == sp.encode("wash")


# --- 6. stdin ---------------------------------------------------------------------------------------------------------

def test_stdin_that_is_not_utf8_is_named(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("héllo\nna".encode() + b"\xefve\n")))
    with pytest.raises(DataError, match=r"^stdin: expected sentences to translate as UTF-8 text, got byte 0xef at "
                                        r"offset 9 \(line 2\)$"):
        files.read_stdin_lines("sentences to translate")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\ufeffhéllo\r\nworld\n".encode())))
    assert files.read_stdin_lines("text") == ["héllo", "world"]


def test_replace_atomically_leaves_no_temporary_file_on_failure(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        files.replace_atomically(tmp_path / "folder", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
