"""Int8 weight quantisation against hand-computed values, and `medjax export --int8` on a trained imaging run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from medjax.train import export, quantize
from tests.cli.cli_data import breastmnist


def test_per_channel_scales_and_codes_by_hand():
    w = jnp.array([[1.0, -0.5], [-2.54, 0.25]])
    q, scale = quantize.quantize_kernel(w)
    np.testing.assert_allclose(scale, [[2.54 / 127, 0.5 / 127]], rtol=1e-6)
    # 1 / 0.02 = 50; -2.54 / 0.02 = -127; -0.5 -> -127; 0.25 / (0.5/127) = 63.5 -> 64 (round half to even).
    np.testing.assert_array_equal(q, [[50, -127], [-127, 64]])
    assert q.dtype == jnp.int8


def test_the_error_is_at_most_half_a_step_and_a_zero_channel_is_exact():
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 8, 16)).at[..., 5].set(0.0)
    q, scale = quantize.quantize_kernel(w)
    error = jnp.abs(quantize.dequantize_kernel(q, scale) - w)
    assert bool(jnp.all(error <= scale / 2 + 1e-7))
    assert float(jnp.max(error[..., 5])) == 0.0
    assert int(jnp.max(jnp.abs(q))) == 127


def test_only_kernels_and_tables_are_quantised_and_the_tree_comes_back():
    params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}, "embed": {"embedding": jnp.ones((10, 4))},
              "lstm": {"layer_0": {"w_x": jnp.ones((4, 8)), "w_h": jnp.ones((2, 8)), "b": jnp.ones(8)}}}
    quantized = quantize.quantize_tree(params)
    assert quantize.count_quantized(quantized) == 4
    assert quantized["dense"]["kernel"]["q"].dtype == jnp.int8 and quantized["dense"]["bias"].dtype == jnp.float32
    assert quantized["embed"]["embedding"]["scale"].shape == (10, 1)  # one scale per token
    back = quantize.dequantize_tree(quantized)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), back, params)


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "medjax.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=300)


def test_export_int8_is_smaller_scores_close_and_loads_without_pickles(tmp_path):
    data, run = breastmnist(tmp_path / "breastmnist.npz"), tmp_path / "run"
    trained = _cli("train", "medmnist", "--model", "cnn", "--epochs", "1", "--data-dir", data, "--workdir", run,
                   "--no-progress")
    assert trained.returncode == 0, trained.stderr
    result = _cli("export", "--workdir", run, "--int8")
    assert result.returncode == 0, result.stderr
    figures = json.loads((run / "export" / "export.json").read_text())
    assert figures["arrays_quantized"] >= 3 and figures["size_ratio"] > 3.0
    assert abs(figures["change_in_test_auc"]) < 0.05
    loaded = export.load_export(run / "export" / "model-int8.npz")
    kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(loaded)[0] if path[-1].key == "q"]
    assert kernels and all(k.dtype == np.int8 for k in kernels)
    shutil.rmtree(run / "checkpoints")
    missing = _cli("export", "--workdir", run, "--int8")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "checkpoints" in missing.stderr, \
        missing.stderr
