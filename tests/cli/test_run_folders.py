"""Run folders are owned: `medjax train` refuses someone else's folder (or moves its contents aside with --overwrite),
writes nothing through a symlink planted in its own, and a damaged checkpoint with nothing to fall back on is one
line. Every case runs `medjax.cli.main` in-process on a tiny synthetic MedMNIST file."""

from __future__ import annotations

import hashlib
import pathlib

import pytest

from cli_data import breastmnist
from medjax import cli

TINY = ["--model", "cnn", "--epochs", "1", "--batch-size", "16", "--eval-batch-size", "16", "--no-progress",
        "--no-tensorboard"]


def train(data: pathlib.Path, workdir: pathlib.Path, *flags: str) -> int:
    return cli.main(["train", "medmnist", "--data-dir", str(data), "--workdir", str(workdir), *TINY, *flags])


def digest(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medjax: error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> pathlib.Path:
    return breastmnist(tmp_path_factory.mktemp("data") / "breastmnist.npz")


def test_a_folder_of_other_files_is_refused_then_moved_aside_with_overwrite(tmp_path, data, capsys):
    workdir = tmp_path / "theirs"
    (workdir / "tensorboard").mkdir(parents=True)
    (workdir / "config.json").write_text('{"not": "medjax"}')
    (workdir / "tensorboard" / "events.out.tfevents.1").write_bytes(b"someone else's curve")
    before = digest(workdir)
    assert train(data, workdir) == 2
    assert str(workdir) in one_error_line(capsys) and digest(workdir) == before
    assert train(data, workdir, "--overwrite") == 0
    assert digest(workdir / "previous-1") == before  # nothing deleted
    assert (workdir / "results.json").is_file()


def test_another_task_or_config_in_the_folder_is_refused_and_the_same_run_resumes(tmp_path, data, capsys):
    workdir = tmp_path / "run"
    assert train(data, workdir) == 0
    finished = digest(workdir)
    assert train(data, workdir, "--lr", "0.1") == 2
    assert "lr 0.001 -> 0.1" in one_error_line(capsys)
    assert cli.main(["train", "ner", "--data-dir", str(tmp_path), "--workdir", str(workdir), "--epochs", "1"]) == 2
    assert "another task ('medmnist')" in one_error_line(capsys)
    assert digest(workdir) == finished
    assert train(data, workdir, "--epochs", "2") == 2  # epochs is part of the run: a new run, not a resume
    capsys.readouterr()


def test_a_symlink_planted_in_the_run_folder_is_replaced_never_followed(tmp_path, data):
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    workdir = tmp_path / "run"
    workdir.mkdir()
    for name in ("meta.json", "results.json", "config.json", "README.md"):
        (workdir / name).symlink_to(outside)
    assert train(data, workdir, "--overwrite") == 0
    assert outside.read_text() == "precious"
    assert not any((workdir / name).is_symlink() for name in ("meta.json", "results.json", "config.json"))


def test_damaged_checkpoints_with_nothing_to_fall_back_on_are_one_line(tmp_path, data, capsys):
    workdir = tmp_path / "run"
    assert train(data, workdir, "--epochs", "2") == 0
    for path in (workdir / "checkpoints").rglob("*"):
        if path.is_file() and "model" in path.parts:
            path.write_bytes(b"\0" * 16)
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(workdir), str(data)]) == 2
    assert "checkpoints/best" in one_error_line(capsys)
    assert cli.main(["evaluate", "--workdir", str(workdir)]) == 2
    assert "checkpoints/best" in one_error_line(capsys)
    (workdir / "results.json").unlink()  # unfinished: train resumes from latest, all of which is damaged
    assert train(data, workdir, "--epochs", "2") == 2
    assert "checkpoints/latest" in one_error_line(capsys)


@pytest.mark.parametrize("task", ["textclf", "molecules"])
def test_fractions_that_leave_nothing_to_train_on_are_refused(tmp_path, task, capsys):
    if task == "textclf":
        (tmp_path / "medical_tc_labels.csv").write_text("condition_label,condition_name\n1,neoplasms\n2,other\n")
        (tmp_path / "medical_tc_test.csv").write_text("condition_label,medical_abstract\n" + "".join(
            f"{1 + i % 2},abstract number {i}\n" for i in range(20)))
    else:
        (tmp_path / "mols.csv").write_text("smiles,expt\n" + "".join(f"{'C' * (1 + i)}O,{i}\n" for i in range(20)))
    assert cli.main(["train", task, "--data-dir", str(tmp_path), "--workdir", str(tmp_path / "w"),
                     "--val-fraction", "0.6", "--test-fraction", "0.5"]) == 2
    assert "--val-fraction" in one_error_line(capsys) and not (tmp_path / "w").exists()


def test_smiles_rdkit_cannot_parse_are_dropped_with_their_lines_or_refused_with_strict(tmp_path, capsys):
    pytest.importorskip("rdkit")
    path = tmp_path / "mols.csv"
    path.write_text("smiles,expt\n" + "".join(f"{'C' * (1 + i)}O,{i}\n" for i in range(30)) + "C1CC,1.0\n")
    flags = ["--limit", "8", "--batch-size", "8", "--embed-dim", "8", "--hidden", "8", "--no-progress",
             "--no-tensorboard", "--epochs", "1"]
    assert cli.main(["train", "molecules", "--data-dir", str(path), "--workdir", str(tmp_path / "w"), *flags]) == 0
    err = capsys.readouterr().err
    assert f"dropped 1 SMILES that RDKit cannot parse ({path}:32)" in err
    assert cli.main(["train", "molecules", "--data-dir", str(path), "--workdir", str(tmp_path / "s"), "--strict",
                     *flags]) == 2
    assert f"{path}:32" in one_error_line(capsys)


def test_ecg_windows_are_refused_when_all_records_together_would_not_fit(tmp_path, monkeypatch, capsys):
    """Each record's windows fit, the data set's do not: the total is checked before any record is cut."""
    from cli_data import ecg_record
    from medjax.data import ecg

    for name in ("100", "101", "103", "105"):
        ecg_record(tmp_path / "records", name)
    one_record = ecg.window_bytes(len(ecg.read_record(tmp_path / "records" / "100").beats), 360.0, 0.25, 0.45)
    monkeypatch.setattr(ecg, "physical_memory", lambda: int(3.5 * one_record))  # half of it: under two records
    assert cli.main(["train", "ecg", "--data-dir", str(tmp_path / "records"), "--workdir", str(tmp_path / "w"),
                     "--val-records", "101", "--epochs", "1"]) == 2
    assert "--before/--after" in one_error_line(capsys) and not (tmp_path / "w").exists()
