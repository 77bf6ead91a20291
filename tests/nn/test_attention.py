"""Scaled dot-product attention, its kernels and multi-head attention against the tutorial's formula (NumPy),
PyTorch and jax.nn."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn import attention_kernels
from medjax.nn.attention import attention_weights, scaled_dot_product_attention
from medjax.nn.attention_kernels import choose_implementation, dot_product_attention
from medjax.nn.multihead import MultiHeadAttention

TOL = dict(rtol=1e-5, atol=1e-5)


def np_attention(q, k, v, mask=None, bias=None):
    """The tutorial's equations, one query at a time in float64: e_j = q·k_j/√d + b_j, α = softmax(e), c = Σ α_j v_j.

    Only allowed keys enter the softmax; a query with none gets 0.
    """
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    lead, (t_q, d), t_k = q.shape[:-2], q.shape[-2:], k.shape[-2]
    mask = np.ones((t_q, t_k), bool) if mask is None else np.asarray(mask)
    bias = np.zeros((t_q, t_k)) if bias is None else np.asarray(bias, np.float64)
    mask, bias = np.broadcast_to(mask, lead + (t_q, t_k)), np.broadcast_to(bias, lead + (t_q, t_k))
    out = np.zeros(lead + (t_q, v.shape[-1]))
    for idx in np.ndindex(*lead):
        for i in range(t_q):
            allowed = mask[idx + (i,)]
            if not allowed.any():
                continue
            e = np.array([q[idx + (i,)] @ k[idx + (j,)] / math.sqrt(d) for j in range(t_k)]) + bias[idx + (i,)]
            alpha = np.exp(e[allowed] - e[allowed].max())
            out[idx + (i,)] = (alpha / alpha.sum()) @ v[idx][allowed]
    return out


def normal(rng, shape, dtype=np.float32):
    return rng.normal(size=shape).astype(dtype)


# (q shape, T_k, d_v, mask shape or None, bias shape or None): ranks 2 to 5, masks and biases of every broadcast rank.
CASES = {
    "one sequence": ((5, 4), 7, 3, None, None),
    "batch, key padding": ((2, 5, 4), 7, 4, (2, 1, 7), None),
    "batch, heads, mask and bias": ((2, 3, 5, 8), 7, 8, (2, 1, 1, 7), (3, 5, 7)),
    "extra leading axes": ((2, 2, 3, 5, 4), 6, 5, (5, 6), (1, 1, 1, 5, 6)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_tutorial_formula(case):
    q_shape, t_k, d_v, mask_shape, bias_shape = case
    rng = np.random.default_rng(0)
    q = normal(rng, q_shape)
    k = normal(rng, q_shape[:-2] + (t_k, q_shape[-1]))
    v = normal(rng, q_shape[:-2] + (t_k, d_v))
    mask = None if mask_shape is None else rng.random(mask_shape) < 0.7
    bias = None if bias_shape is None else normal(rng, bias_shape)
    expected = np_attention(q, k, v, mask, bias)
    np.testing.assert_allclose(scaled_dot_product_attention(q, k, v, mask, bias), expected, **TOL)
    out, weights = scaled_dot_product_attention(q, k, v, mask, bias, return_weights=True)
    np.testing.assert_allclose(out, expected, **TOL)
    np.testing.assert_array_equal(weights, attention_weights(q, k, mask, bias))
    np.testing.assert_allclose(np.asarray(weights) @ v.astype(np.float64), expected, **TOL)
    # α is a distribution over the allowed keys of each query, exactly 0 on the masked ones.
    allowed = np.broadcast_to(True if mask is None else mask, weights.shape)
    assert np.all(np.asarray(weights)[~allowed] == 0)
    rows = allowed.any(axis=-1)
    np.testing.assert_allclose(np.asarray(weights).sum(-1)[rows], 1.0, **TOL)
    # The checked dispatcher runs this formula on CPU and gives the same numbers.
    np.testing.assert_allclose(dot_product_attention(q, k, v, mask, bias), expected, **TOL)


def test_scale_is_one_over_sqrt_d():
    """Hand-computed: two keys, scores q·k = 8 and 0 with d = 4, so e = (4, 0) and α_1 = 1 / (1 + e^-4)."""
    q = np.array([[2.0, 2.0, 2.0, 2.0]], np.float32)
    k = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    alpha = attention_weights(q, k)
    np.testing.assert_allclose(alpha, [[1 / (1 + np.exp(-4.0)), 1 / (1 + np.exp(4.0))]], rtol=1e-6)


def test_fully_masked_row_is_zero_with_finite_gradients():
    rng = np.random.default_rng(1)
    q, k, v = (normal(rng, (2, 4, 6, 8)) for _ in range(3))
    mask = np.ones((2, 1, 6, 6), bool)
    mask[0, 0, 2] = False  # query 2 of example 0 may attend to nothing
    mask[1] = False  # example 1 is all padding

    def loss(q, k, v):
        return (scaled_dot_product_attention(q, k, v, mask) ** 2).sum()

    out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert np.all(np.asarray(out[0, :, 2]) == 0) and np.all(np.asarray(out[1]) == 0)
    assert np.all(np.asarray(weights[0, :, 2]) == 0)
    assert np.all(np.asarray(attention_weights(q, k, mask)[1]) == 0)
    np.testing.assert_allclose(out, np_attention(q, k, v, mask), **TOL)
    for g in jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v):
        assert np.isfinite(np.asarray(g)).all()


def test_torch_scaled_dot_product_attention_outputs_and_gradients():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    rng = np.random.default_rng(2)
    q, k, v = normal(rng, (2, 3, 5, 8)), normal(rng, (2, 3, 7, 8)), normal(rng, (2, 3, 7, 8))
    cotangent = normal(rng, (2, 3, 5, 8))
    mask = rng.random((2, 1, 5, 7)) < 0.6
    mask[..., 0] = True  # PyTorch gives NaN on a fully masked row; ours gives 0 (tested above)

    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    t_out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask))
    (t_out * torch.tensor(cotangent)).sum().backward()

    def loss(q, k, v):
        return (scaled_dot_product_attention(q, k, v, mask) * cotangent).sum()

    np.testing.assert_allclose(scaled_dot_product_attention(q, k, v, mask), t_out.detach().numpy(), **TOL)
    for ours, theirs in zip(jax.grad(loss, argnums=(0, 1, 2))(q, k, v), (tq, tk, tv)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **TOL)


def _copy_torch_mha(torch_mha, width):
    w, b = torch_mha.in_proj_weight.detach().numpy(), torch_mha.in_proj_bias.detach().numpy()
    params = {
        name: {"kernel": w[i * width : (i + 1) * width].T, "bias": b[i * width : (i + 1) * width]}
        for i, name in enumerate(("query", "key", "value"))
    }
    out = torch_mha.out_proj
    params["out"] = {"kernel": out.weight.detach().numpy().T, "bias": out.bias.detach().numpy()}
    return {"params": params}


def test_torch_multihead_attention_outputs_weights_and_gradients():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    torch.manual_seed(0)
    width, heads, lengths = 16, 4, np.array([6, 4, 1])
    torch_mha = torch.nn.MultiheadAttention(width, heads, batch_first=True)
    with torch.no_grad():  # PyTorch initialises the biases to 0; make them count
        torch_mha.in_proj_bias.normal_()
        torch_mha.out_proj.bias.normal_()
    rng = np.random.default_rng(3)
    x, cotangent = normal(rng, (3, 6, width)), normal(rng, (3, 6, width))
    valid = np.arange(6)[None] < lengths[:, None]

    tx = torch.tensor(x, requires_grad=True)
    t_out, t_weights = torch_mha(tx, tx, tx, key_padding_mask=torch.tensor(~valid), need_weights=True)
    (t_out * torch.tensor(cotangent)).sum().backward()

    mha = MultiHeadAttention(num_heads=heads, features=width)
    variables = _copy_torch_mha(torch_mha, width)
    out, state = jax.jit(mha.apply, static_argnames="mutable")(variables, x, valid, mutable=("intermediates",))
    np.testing.assert_allclose(out, t_out.detach().numpy(), **TOL)
    (weights,) = state["intermediates"]["attention_weights"]
    np.testing.assert_allclose(weights.mean(axis=1), t_weights.detach().numpy(), **TOL)

    def loss(params, x):
        return (mha.apply({"params": params}, x, valid) * cotangent).sum()

    g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
    np.testing.assert_allclose(g_x, tx.grad.numpy(), **TOL)
    g_in = np.concatenate([g_params[n]["kernel"].T for n in ("query", "key", "value")])
    np.testing.assert_allclose(g_in, torch_mha.in_proj_weight.grad.numpy(), **TOL)
    g_in_bias = np.concatenate([g_params[n]["bias"] for n in ("query", "key", "value")])
    np.testing.assert_allclose(g_in_bias, torch_mha.in_proj_bias.grad.numpy(), **TOL)
    np.testing.assert_allclose(g_params["out"]["kernel"].T, torch_mha.out_proj.weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(g_params["out"]["bias"], torch_mha.out_proj.bias.grad.numpy(), **TOL)


def test_jax_nn_xla_path_agrees_and_cpu_dispatches_to_the_formula():
    rng = np.random.default_rng(4)
    q, k, v = normal(rng, (2, 5, 3, 8)), normal(rng, (2, 7, 3, 8)), normal(rng, (2, 7, 3, 8))  # [B, T, N, H]
    mask = rng.random((2, 1, 5, 7)) < 0.6
    mask[..., 0] = True  # jax.nn averages every value on a fully masked row; we define 0
    bias = normal(rng, (1, 3, 5, 7))
    theirs = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, implementation="xla")
    heads_first = [a.transpose(0, 2, 1, 3) for a in (q, k, v)]  # ours: [B, N, T, H]
    ours = scaled_dot_product_attention(*heads_first, mask, bias)
    np.testing.assert_allclose(ours.transpose(0, 2, 1, 3), theirs, **TOL)

    # Our "xla" route reshapes any layout for jax.nn and keeps the fully-masked-row rule.
    mask[1, 0, 3] = False
    xla = jax.jit(functools.partial(dot_product_attention, implementation="xla"))
    for any_rank in (mask, mask[:, :, :1], mask[0], mask[0, 0]):
        expected = np_attention(*heads_first, any_rank, bias)
        np.testing.assert_allclose(xla(*heads_first, any_rank, bias), expected, **TOL)
    q3, mask3 = heads_first[0][:, 0], mask[:, 0, :, :5]  # [B, T, d] and bool[B, T, T], one fully masked row
    np.testing.assert_allclose(xla(q3, q3, q3, mask3), np_attention(q3, q3, q3, mask3), **TOL)

    assert attention_kernels.default_platform() == ("cpu", "")
    assert choose_implementation(*heads_first, mask) == "jnp"
    assert choose_implementation(*(a.astype(jnp.bfloat16) for a in heads_first)) == "jnp"
    # On CPU the dispatcher traces to exactly the formula: nothing but the maths runs.
    auto = jax.make_jaxpr(functools.partial(dot_product_attention, implementation=None))
    formula = jax.make_jaxpr(scaled_dot_product_attention)
    assert str(auto(*heads_first, mask)) == str(formula(*heads_first, mask))
    np.testing.assert_allclose(xla(*heads_first, mask), dot_product_attention(*heads_first, mask), **TOL)


def test_choice_of_kernel_on_other_platforms():
    """The GPU/TPU rules, judged from shapes with the platform given (no accelerator needed)."""
    rng = np.random.default_rng(9)
    q, k, v = (jnp.asarray(normal(rng, (2, 4, 16, 64)), jnp.bfloat16) for _ in range(3))
    mask = np.ones((2, 1, 1, 16), bool)
    gpu = dict(platform="gpu", capability="9.0")
    assert choose_implementation(q, k, v, mask, **gpu) == "cudnn"
    assert choose_implementation(q, k, v, mask, platform="gpu", capability="7.5") == "xla"  # no flash before Ampere
    assert choose_implementation(q, k, v, mask, platform="tpu") == "xla"
    assert choose_implementation(*(a.astype(jnp.float32) for a in (q, k, v)), **gpu) == "xla"
    assert choose_implementation(q[..., :15, :], k[..., :15, :], v[..., :15, :], mask[..., :15], **gpu) == "xla"
    assert choose_implementation(q[..., :15, :], k[..., :15, :], v[..., :15, :], **gpu) == "cudnn"  # odd T, no mask
    assert choose_implementation(q, k, v[..., :32], **gpu) == "jnp"  # d_v != d_k: jax.nn cannot take it


def _cuda_capability() -> int:
    device = jax.devices()[0]
    major = str(getattr(device, "compute_capability", "")).split(".")[0]
    return int(major) if device.platform == "gpu" and major.isdigit() else 0


@pytest.mark.skipif(
    _cuda_capability() < 8,
    reason="cuDNN flash attention needs an NVIDIA GPU of compute capability >= 8.0 (run with JAX_PLATFORMS=cuda)",
)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_cudnn_path_matches_jnp_on_gpu(dtype):
    rng = np.random.default_rng(5)
    q, k, v = (jnp.asarray(normal(rng, (2, 4, 16, 64)), dtype) for _ in range(3))  # [B, N, T, H]
    mask = np.arange(16)[None] < np.array([[16], [10]])
    mask = mask[:, None, None, :]
    assert choose_implementation(q, k, v, mask) == "cudnn"
    assert choose_implementation(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32)) == "xla"

    def loss(q, k, v, implementation):
        out = dot_product_attention(q, k, v, mask, implementation=implementation)
        return (out.astype(jnp.float32) ** 2).sum(), out

    (_, fused), g_fused = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v, "cudnn")
    (_, plain), g_plain = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v, "jnp")
    np.testing.assert_allclose(np.float32(fused), np.float32(plain), atol=2e-2, rtol=2e-2)
    for a, b in zip(g_fused, g_plain):
        np.testing.assert_allclose(np.float32(a), np.float32(b), atol=5e-2, rtol=5e-2)


def test_jit_vmap_grad_compose():
    rng = np.random.default_rng(6)
    q, k, v = (normal(rng, (3, 2, 5, 4)) for _ in range(3))
    mask = rng.random((3, 1, 5, 5)) < 0.7
    direct = np_attention(q, k, v, mask)
    np.testing.assert_allclose(jax.jit(scaled_dot_product_attention)(q, k, v, mask), direct, **TOL)
    np.testing.assert_allclose(jax.jit(jax.vmap(scaled_dot_product_attention))(q, k, v, mask), direct, **TOL)

    def loss(q, k, v, mask):
        return jnp.tanh(scaled_dot_product_attention(q, k, v, mask)).sum()

    grad = jax.grad(loss, argnums=(0, 1, 2))
    batched = jax.jit(grad)(q, k, v, mask)
    per_example = jax.jit(jax.vmap(grad))(q, k, v, mask)  # the loss is a sum over examples: same gradients
    for whole, each in zip(batched, per_example):
        np.testing.assert_allclose(each, whole, **TOL)
    assert all(np.abs(np.asarray(g)).max() > 1e-3 for g in batched)


def test_multihead_padding_never_changes_valid_outputs_and_dropout_is_seeded():
    rng = np.random.default_rng(7)
    x = normal(rng, (2, 6, 16))
    valid = np.arange(6)[None] < np.array([[6], [3]])
    mha = MultiHeadAttention(num_heads=2, features=16, dropout=0.5)
    variables = jax.jit(mha.init)(jax.random.key(0), x, valid)
    apply = jax.jit(mha.apply, static_argnames="train")
    out = apply(variables, x, valid)

    junk = x.copy()
    junk[1, 3:] = 100 * normal(rng, (3, 16))
    np.testing.assert_allclose(apply(variables, junk, valid)[1, :3], out[1, :3], **TOL)
    alone = apply(variables, x[1:, :3], valid[1:, :3])
    np.testing.assert_allclose(alone[0], out[1, :3], **TOL)
    # An example that is all padding still gives finite numbers.
    assert np.isfinite(np.asarray(apply(variables, x, np.zeros_like(valid)))).all()

    no_dropout = jax.jit(MultiHeadAttention(num_heads=2, features=16).apply)(variables, x, valid)
    np.testing.assert_allclose(out, no_dropout, **TOL)

    def train(seed):
        return apply(variables, x, valid, train=True, rngs={"dropout": jax.random.key(seed)})

    np.testing.assert_array_equal(train(1), train(1))
    assert np.abs(np.asarray(train(1) - train(2))).max() > 1e-3
    assert np.abs(np.asarray(train(1) - out)).max() > 1e-3


def test_multihead_sown_weights_are_a_distribution_over_valid_keys():
    rng = np.random.default_rng(8)
    x = normal(rng, (2, 5, 8))
    valid = np.arange(5)[None] < np.array([[5], [2]])
    mha = MultiHeadAttention(num_heads=2, features=8)
    variables = jax.jit(mha.init)(jax.random.key(0), x, valid)
    fused = jax.jit(mha.apply)(variables, x, valid)
    out, state = jax.jit(mha.apply, static_argnames="mutable")(variables, x, valid, mutable=("intermediates",))
    (weights,) = state["intermediates"]["attention_weights"]
    assert weights.shape == (2, 2, 5, 5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, **TOL)
    assert np.all(np.asarray(weights[1, :, :, 2:]) == 0)
    np.testing.assert_allclose(out, fused, **TOL)  # the weights path and the fused path agree


BAD_INPUTS = {
    "q rank 1": (dict(q=(4,)), ValueError, "rank >= 2"),
    "d of q and k differ": (dict(k=(2, 7, 5)), ValueError, "same d"),
    "leading axes differ": (dict(k=(3, 7, 4), v=(3, 7, 4)), ValueError, "leading axes"),
    "v length differs": (dict(v=(2, 6, 4)), ValueError, "T_k"),
    "integer q": (dict(q_dtype=np.int32), TypeError, "floating"),
    "mask not broadcastable": (dict(mask=(3, 7)), ValueError, "(3, 7) does not broadcast to the scores"),
    "mask not bool": (dict(mask=(2, 1, 7), mask_dtype=np.float32), TypeError, "mask must be bool"),
    "bias not broadcastable": (dict(bias=(2, 4, 7)), ValueError, "(2, 4, 7) does not broadcast to the scores"),
    "unknown implementation": (dict(implementation="flash"), ValueError, "implementation must be"),
    "cudnn on float32 or CPU": (dict(implementation="cudnn"), ValueError, "cannot run these inputs"),
}


@pytest.mark.parametrize("bad", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_raise_clear_errors_at_trace_time(bad):
    spec, error, message = bad
    shapes = {"q": (2, 5, 4), "k": (2, 7, 4), "v": (2, 7, 4)} | {n: s for n, s in spec.items() if n in "qkv"}
    q = np.zeros(shapes["q"], spec.get("q_dtype", np.float32))
    k, v = np.zeros(shapes["k"], np.float32), np.zeros(shapes["v"], np.float32)
    mask = np.ones(spec["mask"], spec.get("mask_dtype", bool)) if "mask" in spec else None
    bias = np.zeros(spec["bias"], np.float32) if "bias" in spec else None
    attend = jax.jit(functools.partial(dot_product_attention, implementation=spec.get("implementation")))
    with pytest.raises(error, match=re.escape(message)) as info:
        attend(q, k, v, mask, bias)
    if "broadcast" in message:
        assert "(2, 5, 7)" in str(info.value)  # both shapes are named


def test_multihead_rejects_bad_inputs():
    mha = MultiHeadAttention(num_heads=3, features=16)
    with pytest.raises(ValueError, match="multiple of num_heads=3"):
        jax.eval_shape(mha.init, jax.random.key(0), np.zeros((2, 5, 16), np.float32))
    mha = MultiHeadAttention(num_heads=2, features=16)
    with pytest.raises(ValueError, match=r"rank 3 \[batch, time, width\], got float32 array of shape \(64, 10\)"):
        jax.eval_shape(mha.init, jax.random.key(0), np.zeros((64, 10), np.float32))
    with pytest.raises(ValueError, match=r"bool\[batch, time\] = \(2, 5\).*got shape \(2, 6\)"):
        jax.eval_shape(mha.init, jax.random.key(0), np.zeros((2, 5, 16), np.float32), np.ones((2, 6), bool))
    with pytest.raises(TypeError, match="got dtype float32"):
        jax.eval_shape(mha.init, jax.random.key(0), np.zeros((2, 5, 16), np.float32), np.ones((2, 5), np.float32))
