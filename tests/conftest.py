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
