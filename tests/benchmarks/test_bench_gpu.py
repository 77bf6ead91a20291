"""The GPU script's own arithmetic and bookkeeping, checked without a GPU (its code paths run with `--tiny`)."""

import numpy as np
import pytest

from benchmarks import gpu


def test_attention_flops_by_hand():
    # One head, T = 2, d = 3: q kᵀ is T·T·d = 12 multiply-adds (24 FLOPs), α v another 24; the backward 2.5 times that.
    assert gpu.attention_flops(1, 1, 2, 3) == {"fwd": 48.0, "fwd+bwd": 168.0}
    assert gpu.attention_shapes(tiny=False)[0] == (64, 16, 1024, 128)
    assert all(b * t == gpu.ATTENTION_TOKENS for b, _, t, _ in gpu.attention_shapes(tiny=False))


def test_cudnn_lstm_packing_matches_jax_experimental_rnn():
    rnn = pytest.importorskip("jax.experimental.rnn")
    rng = np.random.default_rng(0)
    f, h, layers = 3, 2, 2
    params = {f"layer_{i}": {"w_x": rng.standard_normal(((f if i == 0 else h), 4 * h)),
                             "w_h": rng.standard_normal((h, 4 * h)), "b": rng.standard_normal(4 * h)}
              for i in range(layers)}
    packed = gpu._cudnn_lstm_params({"params": {"lstm": params, "head": {}}}, layers)["lstm"]
    assert packed.size == rnn.get_num_params_in_lstm(f, h, layers, False)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(packed, f, h, layers, False)
    for i in range(layers):
        np.testing.assert_array_equal(w_ih[i], params[f"layer_{i}"]["w_x"].T)
        np.testing.assert_array_equal(w_hh[i], params[f"layer_{i}"]["w_h"].T)
        np.testing.assert_array_equal(b_ih[i], params[f"layer_{i}"]["b"])
        np.testing.assert_array_equal(b_hh[i], 0)


def test_report_renders_ratios_and_failures():
    ok = {"status": "ok", "median_ms": 2.0, "sizes": {"batch": 1024}}
    records = [
        {**ok, "framework": "jax", "part": "workloads", "label": "resnet18"},
        {**ok, "median_ms": 4.0, "framework": "torch", "part": "workloads", "label": "resnet18"},
        {"status": "failed", "error": "RuntimeError: cuDNN absent", "framework": "jax", "part": "lstm",
         "label": "jax.experimental.rnn cuDNN f32"},
    ]
    text = gpu.report(records, "python -m benchmarks.gpu", tiny=False)
    row = next(line for line in text.splitlines() if line.startswith("| resnet18 |"))
    assert "| 2.00 | 4.00 | **0.50** | 512,000 / 256,000 |" in row
    assert "failed: RuntimeError: cuDNN absent" in text
