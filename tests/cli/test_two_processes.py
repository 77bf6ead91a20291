"""Two processes train one run: the README's localhost launch equals one process on two devices, also after both are
killed and started again; a process that fails, dies or cannot reach the coordinator ends the others with one line
naming it, never a hang.

Each process has one CPU device (XLA_FLAGS unset); the one-process reference runs in this process, on two of the eight
devices conftest makes. Tolerance: 1e-6 relative on every float of metrics.jsonl and results.json. Two processes and
one process made to have two devices (XLA_FLAGS=--xla_force_host_platform_device_count=2) were bit-equal by hand; the
reference in this eight-device process differs from both in the eighth digit of the training loss and gradient norm
(2e-8 relative: XLA:CPU splits a computation's work differently with more devices present).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(tempfile.gettempdir()) / f"medjax-two-process-cache-{os.getpid()}"
MEDJAX = str(pathlib.Path(sys.executable).parent / "medjax")


def readme_launch() -> str:
    """The README's two-process launch line, as written."""
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines() if "JAX_PROCESS_ID=$i" in line]
    assert len(lines) == 1, lines
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env.update(PYTHONUNBUFFERED="1", JAX_COMPILATION_CACHE_DIR=str(CACHE), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1", **extra)
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def train_args(data, workdir, *more) -> list[str]:
    return ["train", "medmnist", "--model", "cnn", "--epochs", "2", "--data-dir", str(data), "--workdir",
            str(workdir), "--no-progress", *more]


def start_pair(args_of, port, **extra) -> list[subprocess.Popen]:
    """Processes 0 and 1 of a localhost launch; ``args_of(i)`` is process i's medjax arguments."""
    return [subprocess.Popen([MEDJAX, *args_of(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                             JAX_PROCESS_ID=str(i), **extra))
            for i in (0, 1)]


def ended(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def records(workdir: pathlib.Path):
    results = json.loads((workdir / "results.json").read_text())
    results.pop("wall_seconds")
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return results, [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def assert_same(got, want):
    """Equal keys, counts and strings; floats to 1e-6 relative (see the module's docstring)."""
    (results, lines), (want_results, want_lines) = got, want
    assert len(lines) == len(want_lines)
    for record, want_record in zip([results, *lines], [want_results, *want_lines]):
        assert sorted(record) == sorted(want_record)
        for key, value in record.items():
            if isinstance(value, float):
                assert value == pytest.approx(want_record[key], rel=1e-6), key
            else:
                assert value == want_record[key], key


@pytest.fixture(scope="module")
def breastmnist():
    root = os.environ.get("MEDJAX_DATA_DIR")
    if not root or not (pathlib.Path(root) / "breastmnist-copy").is_dir():
        pytest.skip("MEDJAX_DATA_DIR/breastmnist-copy is absent: real-data test skipped (CI sets it to ../shared/data)")
    return pathlib.Path(root) / "breastmnist-copy"


@pytest.fixture(scope="module")
def one_process(breastmnist, tmp_path_factory):
    from medjax.cli import main

    workdir = tmp_path_factory.mktemp("one") / "run"
    assert main(train_args(breastmnist, workdir, "--num-devices", "2")) == 0
    return records(workdir)


def test_the_readme_launch_equals_one_process_on_two_devices(one_process, breastmnist, tmp_path):
    command = readme_launch()
    command = command.replace("127.0.0.1:29500", f"127.0.0.1:{free_port()}")
    command = command.replace("../shared/data/breastmnist-copy", str(breastmnist))
    command = command.replace("runs/two-processes", str(tmp_path / "run"))
    assert "medjax train medmnist --model cnn --epochs 2" in command
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, env=environment(),
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same(records(tmp_path / "run"), one_process)
    # Process 0 alone wrote the run's files: one results line was printed, one metrics line per epoch.
    assert result.stdout.count("results:") == 1


def test_a_killed_pair_resumes_to_the_same_records(one_process, breastmnist, tmp_path):
    workdir = tmp_path / "run"
    pair = start_pair(lambda i: train_args(breastmnist, workdir), free_port())
    first = workdir / "checkpoints" / "latest" / "1"
    start = time.monotonic()
    while not first.is_dir():  # the epoch-1 checkpoint is whole once renamed into place
        assert all(p.poll() is None for p in pair), [ended(p) for p in pair]
        assert time.monotonic() - start < 300
        time.sleep(0.01)
    for process in pair:
        process.send_signal(signal.SIGKILL)
    for process in pair:
        process.wait()
    assert not (workdir / "results.json").exists()
    pair = start_pair(lambda i: train_args(breastmnist, workdir), free_port())
    for process in pair:
        code, err = ended(process)
        assert code == 0, err[-3000:]
    assert_same(records(workdir), one_process)


def test_a_process_that_fails_ends_the_other_with_its_line(breastmnist, tmp_path):
    start = time.monotonic()
    missing = tmp_path / "missing"
    pair = start_pair(lambda i: train_args(missing if i else breastmnist, tmp_path / "run"), free_port())
    (code0, err0), (code1, err1) = ended(pair[0], 120), ended(pair[1], 120)
    assert (code0, code1) == (2, 2), (err0[-2000:], err1[-2000:])
    assert err1.strip().splitlines()[-1] == f"medjax: error: {missing}: expected a MedMNIST .npz file or a folder " \
                                            f"holding one, found nothing"
    assert err0.strip().splitlines()[-1] == err1.strip().splitlines()[-1].replace("error: ", "error: process 1 failed: ")
    assert "Traceback" not in err0 + err1
    assert time.monotonic() - start < 120


def test_sigterm_ends_a_process_at_once_and_the_other_names_it(breastmnist, tmp_path):
    workdir = tmp_path / "run"
    pair = start_pair(lambda i: train_args(breastmnist, workdir, "--epochs", "50"), free_port(),
                      MEDJAX_HEARTBEAT_SECONDS="3")
    while not (workdir / "config.json").exists():  # both have joined, and are starting to train
        assert all(p.poll() is None for p in pair), [ended(p) for p in pair]
        time.sleep(0.01)
    pair[1].send_signal(signal.SIGTERM)
    killed = time.monotonic()
    assert ended(pair[1], 10)[0] == -signal.SIGTERM  # not deaf to it
    code, err = ended(pair[0], 60)
    assert code == 2, err[-2000:]
    assert re.fullmatch(r"medjax: error: process 1 stopped without a word .* for over 3 s .*",
                        err.strip().splitlines()[-1]), err[-2000:]
    assert "Traceback" not in err
    assert time.monotonic() - killed < 3 + 30


def test_a_coordinator_that_does_not_answer_ends_in_one_line(breastmnist, tmp_path):
    port = free_port()
    start = time.monotonic()
    result = subprocess.run([MEDJAX, *train_args(breastmnist, tmp_path / "run")], capture_output=True, text=True,
                            timeout=120, env=environment(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                                         JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1",
                                                         MEDJAX_CONNECT_SECONDS="2"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"medjax: error: 127.0.0.1:{port}: expected all 2 processes to join through "
                                     f"the coordinator within 2 s (MEDJAX_CONNECT_SECONDS), got no answer: is "
                                     f"process 0 running, at that address?")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "run").exists()
