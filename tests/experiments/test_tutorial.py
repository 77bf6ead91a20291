"""The tutorial's three programs, fixed, run as the README shows (scripts, from the repository root, no path set):
they print the tutorial's lines and their loss falls."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "program, argv, factor",
    [
        ("cnn", ["--examples", "512", "--epochs", "3"], 0.7),
        ("cnn", ["--examples", "256", "--epochs", "3", "--size", "32"], 0.95),  # the size that broke the tutorial
        ("lstm", ["--examples", "1024", "--epochs", "3"], 0.97),
        ("attention", ["--examples", "512", "--epochs", "4"], 0.97),
    ],
    ids=["cnn28", "cnn32", "lstm", "attention"],
)
def test_tutorial_program_prints_epochs_and_learns(program, argv, factor):
    assert f"python experiments/tutorial/{program}.py" in (ROOT / "README.md").read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    result = subprocess.run([sys.executable, f"experiments/tutorial/{program}.py", *argv], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    epochs = int(argv[argv.index("--epochs") + 1])
    matches = [re.fullmatch(rf"Epoch \[{k + 1}/{epochs}\], Loss: (\d+\.\d{{4}})", line) for k, line in enumerate(lines)]
    assert len(lines) == epochs and all(matches), result.stdout
    history = [float(m.group(1)) for m in matches]
    assert history[-1] < factor * history[0]
