"""Positions, the pre-LayerNorm encoder (against PyTorch) and the tutorial's attention classifier (against NumPy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn.encoder import EncoderBlock, TransformerEncoder, TutorialAttentionClassifier, masked_mean
from medjax.nn.positions import LearnedPositions, sinusoidal_positions

TOL = dict(rtol=1e-5, atol=1e-5)


def normal(rng, shape):
    return rng.normal(size=shape).astype(np.float32)


def lengths_mask(lengths, time):
    return np.arange(time)[None] < np.asarray(lengths)[:, None]


@pytest.mark.parametrize("dim", [16, 7])
def test_sinusoidal_positions_follow_vaswani(dim):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) (Vaswani et al. 2017, §3.5)."""
    table = np.asarray(sinusoidal_positions(60, dim))
    expected = np.zeros((60, dim))
    for pos in range(60):
        for column in range(dim):
            i = column // 2
            angle = pos / 10000 ** (2 * i / dim)
            expected[pos, column] = np.sin(angle) if column % 2 == 0 else np.cos(angle)
    assert table.shape == (60, dim) and table.dtype == np.float32
    np.testing.assert_allclose(table, expected, atol=1e-6)


def test_position_errors_and_learned_table():
    with pytest.raises(ValueError, match="dim must be >= 1, got 0"):
        sinusoidal_positions(5, 0)
    with pytest.raises(TypeError, match="length must be an int, got float"):
        sinusoidal_positions(5.0, 4)
    positions = LearnedPositions(max_length=8)
    x = np.zeros((2, 5, 4), np.float32)
    variables = positions.init(jax.random.key(0), x)
    table = variables["params"]["embedding"]
    assert table.shape == (8, 4)
    np.testing.assert_array_equal(positions.apply(variables, x), table[:5])
    with pytest.raises(ValueError, match="9 steps but the table holds max_length=8"):
        positions.apply(variables, np.zeros((2, 9, 4), np.float32))


def _torch_block_params(layer):
    def t(p):
        return p.detach().numpy()

    width = layer.self_attn.embed_dim
    w, b = t(layer.self_attn.in_proj_weight), t(layer.self_attn.in_proj_bias)
    attention = {n: {"kernel": w[i * width : (i + 1) * width].T, "bias": b[i * width : (i + 1) * width]}
                 for i, n in enumerate(("query", "key", "value"))}
    attention["out"] = {"kernel": t(layer.self_attn.out_proj.weight).T, "bias": t(layer.self_attn.out_proj.bias)}
    return {
        "norm_attention": {"scale": t(layer.norm1.weight), "bias": t(layer.norm1.bias)},
        "attention": attention,
        "norm_mlp": {"scale": t(layer.norm2.weight), "bias": t(layer.norm2.bias)},
        "mlp_in": {"kernel": t(layer.linear1.weight).T, "bias": t(layer.linear1.bias)},
        "mlp_out": {"kernel": t(layer.linear2.weight).T, "bias": t(layer.linear2.bias)},
    }


def test_encoder_block_matches_torch_pre_layernorm_layer():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        16, 4, dim_feedforward=32, dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
        layer_norm_eps=1e-6,
    )
    with torch.no_grad():  # move LayerNorm off its identity initialisation so its weights are tested too
        for norm in (layer.norm1, layer.norm2):
            norm.weight.add_(0.3 * torch.randn(16))
            norm.bias.add_(0.3 * torch.randn(16))
    rng = np.random.default_rng(0)
    x, cotangent = normal(rng, (3, 6, 16)), normal(rng, (3, 6, 16))
    valid = lengths_mask([6, 4, 2], 6)
    cotangent[~valid] = 0  # compare the valid steps only

    tx = torch.tensor(x, requires_grad=True)
    t_out = layer(tx, src_key_padding_mask=torch.tensor(~valid))
    (t_out * torch.tensor(cotangent)).sum().backward()

    block = EncoderBlock(num_heads=4, mlp_dim=32)
    params = _torch_block_params(layer)

    def loss(params, x):
        out = block.apply({"params": params}, x, valid)
        return (out * cotangent).sum(), out

    (_, out), (g_params, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    np.testing.assert_allclose(np.asarray(out)[valid], t_out.detach().numpy()[valid], **TOL)
    np.testing.assert_allclose(g_x, tx.grad.numpy(), **TOL)
    expected = {
        ("mlp_in", "kernel"): layer.linear1.weight.grad.numpy().T,
        ("mlp_out", "bias"): layer.linear2.bias.grad.numpy(),
        ("norm_attention", "scale"): layer.norm1.weight.grad.numpy(),
        ("norm_mlp", "bias"): layer.norm2.bias.grad.numpy(),
        ("attention", "out", "kernel"): layer.self_attn.out_proj.weight.grad.numpy().T,
        ("attention", "query", "kernel"): layer.self_attn.in_proj_weight.grad.numpy()[:16].T,
        ("attention", "value", "bias"): layer.self_attn.in_proj_bias.grad.numpy()[32:],
    }
    for path, theirs in expected.items():
        ours = g_params
        for name in path:
            ours = ours[name]
        np.testing.assert_allclose(ours, theirs, err_msg=str(path), **TOL)


@pytest.fixture(scope="module")
def encoder_case():
    """A 2-block encoder with dropout, its variables, and a batch whose second example has 3 valid steps of 6."""
    rng = np.random.default_rng(1)
    x = normal(rng, (2, 6, 8))
    valid = lengths_mask([6, 3], 6)
    encoder = TransformerEncoder(num_layers=2, num_heads=2, mlp_dim=16, dropout=0.3)
    variables = jax.jit(encoder.init)(jax.random.key(0), x, valid)
    apply = jax.jit(encoder.apply, static_argnames="train")
    return encoder, variables, apply, x, valid


def test_encoder_valid_steps_never_see_padding(encoder_case):
    _, variables, apply, x, valid = encoder_case
    out = apply(variables, x, valid)
    junk = x.copy()
    junk[1, 3:] = 50 * normal(np.random.default_rng(2), (3, 8))
    np.testing.assert_allclose(apply(variables, junk, valid)[1, :3], out[1, :3], **TOL)
    # The same example without any padded step.
    np.testing.assert_allclose(apply(variables, x[1:, :3], valid[1:, :3])[0], out[1, :3], **TOL)


def test_encoder_sinusoidal_positions_are_added_to_the_input(encoder_case):
    _, variables, apply, x, valid = encoder_case
    unpositioned = TransformerEncoder(num_layers=2, num_heads=2, mlp_dim=16, dropout=0.3, positions=None)
    shifted = x + np.asarray(sinusoidal_positions(6, 8))[None]
    apply_unpositioned = jax.jit(unpositioned.apply)
    np.testing.assert_allclose(apply_unpositioned(variables, shifted, valid), apply(variables, x, valid), **TOL)
    assert np.abs(np.asarray(apply_unpositioned(variables, x, valid) - apply(variables, x, valid))).max() > 1e-3


def test_encoder_dropout_is_off_at_eval_and_seeded_at_train(encoder_case):
    encoder, variables, apply, x, valid = encoder_case
    without = TransformerEncoder(num_layers=2, num_heads=2, mlp_dim=16, dropout=0.0)
    np.testing.assert_allclose(apply(variables, x, valid), jax.jit(without.apply)(variables, x, valid), **TOL)

    def train(seed):
        return apply(variables, x, valid, train=True, rngs={"dropout": jax.random.key(seed)})

    np.testing.assert_array_equal(train(1), train(1))
    assert np.abs(np.asarray(train(1) - train(2))).max() > 1e-3
    assert np.abs(np.asarray(train(1) - apply(variables, x, valid))).max() > 1e-3


def test_encoder_options_and_errors(encoder_case):
    encoder, _, _, x, valid = encoder_case
    learned = TransformerEncoder(num_layers=1, num_heads=2, mlp_dim=16, positions="learned", max_length=10)
    learned_vars = jax.eval_shape(learned.init, jax.random.key(0), x, valid)
    assert learned_vars["params"]["positions"]["embedding"].shape == (10, 8)
    assert set(learned_vars["params"]) == {"positions", "block_0", "norm"}
    with pytest.raises(ValueError, match="positions must be one of"):
        rotary = TransformerEncoder(num_layers=1, num_heads=2, mlp_dim=16, positions="rotary")
        jax.eval_shape(rotary.init, jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"mask: expected bool array of shape \(2, 6\) .* shape \(2, 5\)"):
        jax.eval_shape(encoder.init, jax.random.key(0), x, valid[:, :5])
    with pytest.raises(ValueError, match=r"rank 3 \[batch, time, features\], got float32 array of shape \(6, 8\)"):
        jax.eval_shape(encoder.init, jax.random.key(0), x[0])


def np_classifier(params, x, mask):
    """The fixed tutorial model in NumPy: h = tanh(xW+b) + PE; q, k, v; masked attention; masked mean; linear."""
    p = {name: {k: np.asarray(v, np.float64) for k, v in layer.items()} for name, layer in params.items()}

    def dense(name, a):
        return a @ p[name]["kernel"] + p[name]["bias"]

    h = np.tanh(dense("embed", x.astype(np.float64)))
    time, hidden = h.shape[1:]
    for pos in range(time):
        for column in range(hidden):
            angle = pos / 10000 ** (2 * (column // 2) / hidden)
            h[:, pos, column] += np.sin(angle) if column % 2 == 0 else np.cos(angle)
    q, k, v = dense("query", h), dense("key", h), dense("value", h)
    logits = []
    for b in range(x.shape[0]):
        n = mask[b].sum()
        e = q[b, :n] @ k[b, :n].T / np.sqrt(hidden)
        alpha = np.exp(e - e.max(1, keepdims=True))
        alpha /= alpha.sum(1, keepdims=True)
        logits.append(dense("classifier", (alpha @ v[b, :n]).mean(0)))
    return np.stack(logits)


def test_tutorial_classifier_matches_numpy_and_keeps_examples_apart():
    rng = np.random.default_rng(2)
    x = normal(rng, (3, 7, 10))
    mask = lengths_mask([7, 4, 1], 7)
    model = TutorialAttentionClassifier(hidden=8, num_classes=3)
    variables = jax.jit(model.init)(jax.random.key(0), x, mask)
    apply = jax.jit(model.apply, static_argnames="mutable")
    logits = apply(variables, x, mask)
    assert logits.shape == (3, 3)
    np.testing.assert_allclose(logits, np_classifier(variables["params"], x, mask), **TOL)

    # The tutorial's bug: attention over the batch axis let one patient change another's prediction.
    other = x.copy()
    other[0] = normal(rng, (7, 10))
    np.testing.assert_allclose(apply(variables, other, mask)[1:], logits[1:], **TOL)
    # Padding content and padding length do not matter.
    padded = np.concatenate([x, normal(rng, (3, 5, 10))], axis=1)
    np.testing.assert_allclose(apply(variables, padded, lengths_mask([7, 4, 1], 12)), logits, **TOL)

    sown_logits, state = apply(variables, x, mask, mutable=("intermediates",))
    (weights,) = state["intermediates"]["attention_weights"]
    assert weights.shape == (3, 7, 7)
    np.testing.assert_allclose(weights[1, :, :4].sum(-1), 1.0, **TOL)
    assert np.all(np.asarray(weights[1, :, 4:]) == 0)
    np.testing.assert_allclose(sown_logits, logits, **TOL)

    empty = apply(variables, x, np.zeros_like(mask))
    assert np.isfinite(np.asarray(empty)).all()
    with pytest.raises(ValueError, match=r"rank 3 \[batch, time, features\], got float32 array of shape \(64, 10\)"):
        jax.eval_shape(model.init, jax.random.key(0), np.zeros((64, 10), np.float32))  # the tutorial's 2-D input
    with pytest.raises(TypeError, match=r"mask: expected bool array .* got float32 array of shape \(3, 7\)"):
        jax.eval_shape(model.init, jax.random.key(0), x, mask.astype(np.float32))


def test_masked_mean_counts_valid_steps_only():
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[True, True, False], [False, False, False]])
    np.testing.assert_allclose(masked_mean(x, mask), [[1.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(masked_mean(x, None), x.mean(axis=1))


def test_encoder_gradients_compose_with_jit_and_vmap(encoder_case):
    encoder, variables, _, x, valid = encoder_case

    def loss(params, x, valid):
        out = encoder.apply({"params": params}, x[None], valid[None])
        return jnp.where(valid[None, :, None], out, 0.0).sum()

    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(variables["params"], x, valid)
    single = jax.jit(jax.grad(loss))
    for i in range(2):
        reference = single(variables["params"], x[i], valid[i])
        for ours, ref in zip(jax.tree_util.tree_leaves(per_example), jax.tree_util.tree_leaves(reference)):
            np.testing.assert_allclose(ours[i], ref, **TOL)
