"""Every command the README shows works as written from the repository root after the README's install.

Each is run as a subprocess from the root with no path set by the test runner (PYTHONPATH removed), the way a new
user types it; a long training command runs as its smoke variant (the same words, a smaller model and fewer epochs,
a temporary work folder), and each test first checks that the README still holds the command as written here. The
tutorial programs are run the same way in tests/experiments/test_tutorial.py.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MEDJAX = str(pathlib.Path(sys.executable).parent / "medjax")


def run(argv, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, argv))}\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.data
def test_main_job_then_evaluate_and_plot(tmp_path, breastmnist_dir):
    written = ("medjax train medmnist --dataset breastmnist --model resnet18 --epochs 15 "
               "--data-dir ../shared/data/breastmnist-copy --workdir runs/breastmnist-resnet18")
    assert written in README
    workdir = tmp_path / "breast"
    run([MEDJAX, "train", "medmnist", "--dataset", "breastmnist", "--model", "cnn", "--epochs", "1", "--data-dir",
         str(breastmnist_dir), "--workdir", str(workdir), "--no-progress"])
    assert "medjax evaluate --workdir runs/x" in README and "medjax plot --workdir runs/x" in README
    assert "test_auc" in run([MEDJAX, "evaluate", "--workdir", str(workdir)]).stdout
    run([MEDJAX, "plot", "--workdir", str(workdir)])
    assert (workdir / "roc.png").stat().st_size > 1000


@pytest.mark.data
def test_ner_and_textclf_commands_then_keywords(tmp_path, ncbi_dir, abstracts_dir):
    assert "medjax train ner --data-dir ../shared/data/ncbi-disease --model bilstm-crf --workdir runs/ner" in README
    small = ["--epochs", "1", "--limit", "64", "--no-progress", "--embed-dim", "8", "--hidden", "8",
             "--char-features", "4", "--num-devices", "1"]
    run([MEDJAX, "train", "ner", "--data-dir", str(ncbi_dir), "--model", "bilstm-crf", "--workdir",
         str(tmp_path / "ner"), *small])
    written = "medjax train textclf --data-dir ../shared/data/medical-abstracts-tc --model transformer --workdir runs/clf"
    assert written in README
    run([MEDJAX, "train", "textclf", "--data-dir", str(abstracts_dir), "--model", "transformer",
         "--workdir", str(tmp_path / "clf"), *small[:5], "--embed-dim", "16", "--mlp-dim", "16", "--num-heads", "2",
         "--max-length", "64", "--num-devices", "1"])
    assert 'medjax keywords --workdir runs/clf "abstract text"' in README
    out = run([MEDJAX, "keywords", "--workdir", str(tmp_path / "clf"), "abstract text about colon cancer"]).stdout
    assert len(out.strip().splitlines()) >= 1


def test_benchmark_help_and_study_reports():
    assert "python -m benchmarks --help" in README
    run([sys.executable, "-m", "benchmarks", "--help"])
    for study in ("medmnist", "ner", "textclf"):
        command = f"python experiments/study.py report {study}"
        assert command in README
        before = (ROOT / "experiments" / study / "RESULTS.md").read_text()
        run([sys.executable, "experiments/study.py", "report", study])
        # RESULTS.md is what the script makes of the committed runs: regenerating it changes nothing.
        assert (ROOT / "experiments" / study / "RESULTS.md").read_text() == before
