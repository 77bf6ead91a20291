"""The C++ LSTM loop (`medjax.nn.lstm_kernel`) against `lax.scan` of `lstm_cell`, under jit, vmap and donation, and the
fallback when it is not built. PyTorch with copied weights runs through it in test_recurrent (the default kernel)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn import lstm_kernel, recurrent
from medjax.nn.recurrent import LSTM, init_lstm_params, lstm_layer


def test_the_kernel_is_built_by_pip_install():
    assert lstm_kernel.why_unavailable() is None


def _inputs(batch, time, features, hidden, holes, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, time, features)), jnp.float32)
    # Lengths from 1 to time, and with holes a few False steps inside sequences too.
    mask = np.arange(time)[None, :] < rng.integers(1, time + 1, batch)[:, None]
    if holes:
        mask &= rng.random((batch, time)) > 0.2
    carry = tuple(jnp.asarray(0.5 * rng.normal(size=(batch, hidden)), jnp.float32) for _ in range(2))
    # Twice PyTorch's init range, so that gates saturate in places and errors would show.
    params = jax.tree.map(lambda p: 2 * p, init_lstm_params(jax.random.key(seed), features, hidden))
    weights = jnp.asarray(rng.normal(size=(batch, time, hidden)), jnp.float32)
    return params, x, jnp.asarray(mask), carry, weights


@pytest.mark.parametrize(
    "batch, time, features, hidden, holes",
    [(1, 1, 3, 4, False), (1, 9, 3, 5, True), (7, 1, 2, 8, False), (13, 11, 6, 12, True), (40, 6, 5, 33, True)],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_values_and_gradients_equal_the_lstm_cell_scan(batch, time, features, hidden, holes, reverse):
    """Batch 1, length 1, hidden sizes off the vector width, more rows than one thread's chunk; masks with holes."""
    params, x, mask, carry, weights = _inputs(batch, time, features, hidden, holes)

    def loss(params, x, carry, implementation):
        outputs, (c, h) = lstm_layer(params, x, mask, carry, reverse, implementation)
        return jnp.sum(outputs * weights) + jnp.sum(c * h) + jnp.sum(jnp.sin(h))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    got, want = grad(params, x, carry, "ffi"), grad(params, x, carry, "scan")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_a_stacked_bidirectional_lstm_equals_the_scan():
    _, x, mask, _, _ = _inputs(5, 8, 6, 7, holes=False)
    models = {name: LSTM(7, num_layers=2, bidirectional=True, implementation=name) for name in ("ffi", "scan")}
    variables = models["scan"].init(jax.random.key(1), x, mask)

    def loss(variables, x, name):
        outputs, (c, h) = models[name].apply(variables, x, mask)
        return jnp.sum(jnp.tanh(outputs)) + jnp.sum(c) + jnp.sum(h**2)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    for a, b in zip(jax.tree.leaves(grad(variables, x, "ffi")), jax.tree.leaves(grad(variables, x, "scan"))):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_vmap_over_members_equals_one_call_per_member_and_donation_changes_nothing():
    """The ensemble's use: parameters stacked on a leading axis, the same batch for every member."""
    _, x, mask, carry, weights = _inputs(6, 7, 3, 9, holes=True)
    members = jax.vmap(lambda key: init_lstm_params(key, 3, 9))(jax.random.split(jax.random.key(2), 3))

    def loss(params, x):
        outputs, (c, _) = lstm_layer(params, x, mask, carry, False, "ffi")
        return jnp.sum(outputs * weights) + jnp.sum(c)

    grad = jax.value_and_grad(loss)
    stacked = jax.jit(jax.vmap(grad, in_axes=(0, None)))(members, x)
    for member in range(3):
        one = grad(jax.tree.map(lambda p: p[member], members), x)
        for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(one)):
            np.testing.assert_allclose(a[member], b, rtol=1e-6, atol=1e-6)

    donated = jax.jit(jax.vmap(grad, in_axes=(0, None)), donate_argnums=0)
    copy = jax.tree.map(jnp.copy, members)
    for a, b in zip(jax.tree.leaves(donated(copy, x)), jax.tree.leaves(stacked)):
        np.testing.assert_array_equal(a, b)


def test_a_second_call_does_not_recompile():
    params, x, mask, carry, _ = _inputs(4, 5, 3, 6, holes=False)
    step = jax.jit(jax.grad(lambda p, x: jnp.sum(lstm_layer(p, x, mask, carry, implementation="ffi")[0])))
    step(params, x)
    with jax.log_compiles():  # a recompilation would also show as a second cache entry
        step(params, x + 1)
    assert step._cache_size() == 1


def test_auto_chooses_the_kernel_on_cpu_for_float32_and_bfloat16():
    assert recurrent.choose_implementation(jnp.float32) == "ffi"
    assert recurrent.choose_implementation(jnp.float64) == "custom_vjp"
    assert recurrent.choose_implementation(jnp.bfloat16) == "ffi"
    assert recurrent.choose_implementation(jnp.float32, platform="gpu") == "custom_vjp"


def test_without_the_kernel_auto_falls_back_saying_so_once_and_ffi_refuses(monkeypatch, capsys):
    reason = "the extension medjax/nn/_lstm_cpu was not built by pip install"
    monkeypatch.setattr(lstm_kernel, "why_unavailable", lambda: reason)
    lstm_kernel.say_fallback.cache_clear()
    params, x, mask, carry, _ = _inputs(3, 4, 2, 5, holes=True)
    fallback = [lstm_layer(params, x, mask, carry)[0] for _ in range(2)]  # eager: traced twice, said once
    err = capsys.readouterr().err
    assert err.count("fused CPU LSTM kernel is unavailable") == 1 and reason in err
    np.testing.assert_allclose(fallback[0], lstm_layer(params, x, mask, carry, implementation="scan")[0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="implementation='ffi' cannot run: the extension"):
        lstm_layer(params, x, mask, carry, implementation="ffi")
    lstm_kernel.say_fallback.cache_clear()


def test_a_bfloat16_layer_runs_its_recurrence_in_float32_through_the_kernel():
    params, x, mask, carry, _ = _inputs(3, 6, 4, 5, holes=True)
    rounded = jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), (params, x))

    def loss(p, x, implementation):
        hs, (c, h) = lstm_layer(p, x, mask, None, implementation=implementation)
        return jnp.sum(jnp.square(hs.astype(jnp.float32))) + jnp.sum(jnp.square(c.astype(jnp.float32)))

    fn = jax.value_and_grad(loss, argnums=(0, 1))
    text = str(jax.make_jaxpr(lambda p, x: loss(p, x, "auto"))(*rounded))
    kernel, scan16 = fn(*rounded, "auto"), fn(*rounded, "scan")
    exact = fn(*jax.tree.map(lambda a: a.astype(jnp.float32), rounded), "scan")  # the same inputs, in float32
    assert "ffi_call" in text and all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(kernel[1]))

    def error(result):
        flat = lambda r: np.concatenate([np.ravel(np.asarray(a, np.float32)) for a in jax.tree.leaves(r)])
        return np.linalg.norm(flat(result) - flat(exact)) / np.linalg.norm(flat(exact))

    # Its carry is float32, so it rounds less than a bfloat16 scan does: within bfloat16's precision of float32.
    assert error(kernel) < 0.02 and error(kernel) <= error(scan16), (error(kernel), error(scan16))


def test_ffi_refuses_float64():
    params, x, mask, carry, _ = _inputs(2, 3, 2, 4, holes=False)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        with pytest.raises(ValueError, match=r"runs float32 \(and bfloat16 layers in float32\) only, got float64"):
            lstm_layer(params64, jnp.asarray(x, jnp.float64), mask, None, implementation="ffi")
