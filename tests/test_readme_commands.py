"""Every command the README shows works as written from the repository root after the README's install.

Each is run as a subprocess from the root with no path set by the test runner (PYTHONPATH removed), the way a new
user types it, after checking that the README still holds the command as written. The training, evaluate, plot and
keywords commands are run this way (as smoke variants: smaller models, fewer epochs, a temporary work folder) by the
task tests in tests/tasks/, the tutorial programs by tests/experiments/test_tutorial.py.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def run(argv, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, argv))}\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    return result


def test_benchmark_help_and_study_reports():
    assert "python -m benchmarks --help" in README
    run([sys.executable, "-m", "benchmarks", "--help"])
    for study in ("medmnist", "ner", "textclf", "ecg", "molecules", "treatment", "privacy", "ensembles"):
        command = f"python experiments/study.py report {study}"
        assert command in README
        before = (ROOT / "experiments" / study / "RESULTS.md").read_text()
        run([sys.executable, "experiments/study.py", "report", study])
        # RESULTS.md is what the script makes of the committed runs: regenerating it changes nothing.
        assert (ROOT / "experiments" / study / "RESULTS.md").read_text() == before
