"""Crash safety, shown: `medjax train` killed with SIGKILL mid-epoch and mid-checkpoint resumes to the very numbers of an
uninterrupted run, and a damaged newest checkpoint is skipped for the one before (with a message)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from cli_data import breastmnist

EPOCHS = 3
CACHE = pathlib.Path(tempfile.gettempdir()) / f"medjax-crash-test-cache-{os.getpid()}"


def command(data, workdir):
    return [sys.executable, "-m", "medjax.cli", "train", "medmnist", "--model", "cnn", "--epochs", str(EPOCHS),
            "--batch-size", "64", "--eval-batch-size", "128", "--schedule", "cosine", "--num-devices", "1",
            "--data-dir", str(data), "--workdir", str(workdir), "--no-progress", "--log-every", "1"]


def environment():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["PYTHONUNBUFFERED"] = "1"
    # Every process compiles the same steps: share them through JAX's persistent cache (results are unchanged).
    env["JAX_COMPILATION_CACHE_DIR"] = str(CACHE)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
    return env


def finished(args) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=environment(), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def killed_when(args, ready, timeout=300.0) -> None:
    """Starts the run and sends SIGKILL the moment ``ready()`` holds (polled every millisecond)."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment())
    start = time.monotonic()
    try:
        while not ready():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() - start < timeout, "the moment to kill never came"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL


def epochs_logged(workdir: pathlib.Path) -> int:
    path = workdir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def writing_checkpoint(workdir: pathlib.Path) -> bool:
    # Orbax writes each checkpoint in a temporary folder and renames it when complete.
    latest = workdir / "checkpoints" / "latest"
    return latest.is_dir() and any("tmp" in p.name for p in latest.iterdir())


def records(workdir: pathlib.Path):
    results = json.loads((workdir / "results.json").read_text())
    results.pop("wall_seconds")
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return results, [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    data = breastmnist(folder / "breastmnist.npz")
    finished(command(data, folder / "uninterrupted"))
    return data, records(folder / "uninterrupted")


def test_killed_during_a_checkpoint_write_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path):
    """SIGKILL while Orbax's temporary checkpoint folder is there (the second epoch's checkpoint half written)."""
    data, reference = uninterrupted
    workdir = tmp_path / "mid-write"
    killed_when(command(data, workdir), lambda: epochs_logged(workdir) >= 2 and writing_checkpoint(workdir))
    assert not (workdir / "results.json").exists()
    finished(command(data, workdir))
    assert records(workdir) == reference


def test_killed_mid_epoch_with_a_damaged_latest_checkpoint_resumes_from_the_one_before(uninterrupted, tmp_path):
    """Killed mid-epoch 3, and then the newest checkpoint (epoch 2) damaged: the run resumes after epoch 1."""
    data, reference = uninterrupted
    workdir = tmp_path / "damaged"
    killed_when(command(data, workdir),
                lambda: (workdir / "checkpoints" / "latest" / "2").is_dir() and not writing_checkpoint(workdir))
    newest = max(int(p.name) for p in (workdir / "checkpoints" / "latest").iterdir() if p.name.isdigit())
    for path in (workdir / "checkpoints" / "latest" / str(newest)).rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "record" not in str(path):
            path.write_bytes(b"\0" * 7)  # what a disk that lost the blocks leaves
    out = finished(command(data, workdir))
    assert f"the checkpoint of epoch {newest} is damaged" in out and f"resuming from epoch {newest - 1}" in out
    assert records(workdir) == reference
