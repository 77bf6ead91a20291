"""Strict JAX for every test: rank promotion raises, and 8 fake CPU devices so sharding is tested without a GPU."""

import os

# Must be set before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def data_dir(name: str) -> pathlib.Path:
    """The folder of a real data set under MEDJAX_DATA_DIR, or skip the test saying why."""
    root = os.environ.get("MEDJAX_DATA_DIR")
    if not root:
        pytest.skip("MEDJAX_DATA_DIR is not set: real-data test skipped (CI sets it to ../shared/data)")
    path = pathlib.Path(root) / name
    if not path.exists():
        pytest.skip(f"{path} does not exist: real-data test skipped")
    return path


@pytest.fixture
def breastmnist_dir():
    return data_dir("breastmnist-copy")


@pytest.fixture
def ncbi_dir():
    return data_dir("ncbi-disease")


@pytest.fixture
def abstracts_dir():
    return data_dir("medical-abstracts-tc")


ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def readme() -> str:
    return (ROOT / "README.md").read_text()


@pytest.fixture(scope="session")
def medjax_command():
    """Runs the installed ``medjax`` command as a user types it: from the repository root, no path set by pytest.

    Returns a function ``run(argv) -> CompletedProcess`` that fails the test (with the output) on a non-zero exit.
    """
    import subprocess
    import sys

    executable = str(pathlib.Path(sys.executable).parent / "medjax")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}

    def run(argv):
        result = subprocess.run([executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True, env=env,
                                timeout=600)
        assert result.returncode == 0, f"medjax {' '.join(map(str, argv))}\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"
        return result

    return run
