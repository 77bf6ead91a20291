"""Blockwise (online-softmax) attention against the formula: outputs and gradients, masks, padding, empty rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn.attention import scaled_dot_product_attention
from medjax.nn.blockwise_attention import blockwise_attention


def inputs(seed, lead, t_q, t_k, d, d_v=None):
    keys = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(keys[0], lead + (t_q, d)), jax.random.normal(keys[1], lead + (t_k, d)) * 2,
            jax.random.normal(keys[2], lead + (t_k, d_v or d)))


@pytest.mark.parametrize("t_k, block", [(64, 16), (50, 16), (7, 128)])
@pytest.mark.parametrize("masking", ["none", "padding", "causal"])
def test_outputs_and_gradients_equal_the_formula(t_k, block, masking):
    q, k, v = inputs(0, (3, 2), t_k, t_k, 8, 5)
    if masking == "padding":
        lengths = jnp.array([t_k, 3, 0])  # the last sequence is all padding: its rows must be 0, not NaN
        mask = (jnp.arange(t_k)[None] < lengths[:, None])[:, None, None, :]
    elif masking == "causal":
        mask = jnp.tril(jnp.ones((t_k, t_k), bool))
    else:
        mask = None
    want = scaled_dot_product_attention(q, k, v, mask)
    got = jax.jit(blockwise_attention, static_argnames="block")(q, k, v, mask, block=block)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    weights = jax.random.normal(jax.random.key(1), want.shape)

    def loss(fn, q, k, v):
        return jnp.sum(fn(q, k, v) * weights)

    want_grads = jax.grad(lambda *a: loss(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask), *a),
                          argnums=(0, 1, 2))(q, k, v)
    got_grads = jax.jit(jax.grad(lambda *a: loss(lambda q, k, v: blockwise_attention(q, k, v, mask, block), *a),
                                 argnums=(0, 1, 2)))(q, k, v)
    for g, w in zip(got_grads, want_grads):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_composes_with_vmap_and_keeps_bfloat16_outputs():
    q, k, v = inputs(2, (4,), 32, 32, 8)
    stacked = jax.vmap(lambda q: blockwise_attention(q, k, v, block=8))(jnp.stack([q, q * 2]))
    np.testing.assert_allclose(stacked[1], scaled_dot_product_attention(q * 2, k, v), rtol=2e-5, atol=2e-6)
    half = blockwise_attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16), block=8)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(half.astype(jnp.float32), scaled_dot_product_attention(q, k, v), atol=0.05)


def test_the_cpu_dispatcher_runs_long_sequences_blockwise_and_agrees():
    from medjax.nn import attention_kernels

    short, long = inputs(3, (2, 2), 16, 16, 8), inputs(4, (2, 2), 300, 300, 8)
    assert attention_kernels.choose_implementation(*short, platform="cpu") == "jnp"
    assert attention_kernels.choose_implementation(*long, platform="cpu") == "blockwise"
    assert attention_kernels.choose_implementation(*long, bias=jnp.zeros((300, 300)), platform="cpu") == "jnp"
    mask = jnp.arange(300)[None, None, None, :] < 250
    np.testing.assert_allclose(attention_kernels.dot_product_attention(*long, mask, implementation="blockwise"),
                               scaled_dot_product_attention(*long, mask), rtol=2e-5, atol=2e-6)
