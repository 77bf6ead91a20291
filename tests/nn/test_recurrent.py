"""The LSTM/RNN maths against NumPy, a step-by-step loop, PyTorch with copied weights and finite differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medjax.nn import recurrent
from medjax.nn.recurrent import (
    IMPLEMENTATIONS,
    LSTM,
    TutorialLSTMClassifier,
    init_lstm_params,
    last_valid,
    lstm_cell,
    lstm_layer,
    rnn_cell,
)


def _float64():
    """A context in which new arrays are float64 (`jax.enable_x64` on new jax, `jax.experimental` on older)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _numpy_lstm_cell(params, c, h, x):
    """The tutorial's equations, one gate at a time (columns i, f, g, o of the fused weights)."""
    w_x, w_h, b = (np.asarray(params[k], np.float64) for k in ("w_x", "w_h", "b"))
    hidden = w_h.shape[0]
    gate = {name: slice(n * hidden, (n + 1) * hidden) for n, name in enumerate("ifgo")}
    i = _sigmoid(x @ w_x[:, gate["i"]] + h @ w_h[:, gate["i"]] + b[gate["i"]])
    f = _sigmoid(x @ w_x[:, gate["f"]] + h @ w_h[:, gate["f"]] + b[gate["f"]])
    o = _sigmoid(x @ w_x[:, gate["o"]] + h @ w_h[:, gate["o"]] + b[gate["o"]])
    g = np.tanh(x @ w_x[:, gate["g"]] + h @ w_h[:, gate["g"]] + b[gate["g"]])
    c = f * c + i * g
    return c, o * np.tanh(c)


def _batch(batch=3, time=6, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features)).astype(np.float32)
    lengths = np.array([time, 2, time - 1, 1][:batch])
    mask = np.arange(time)[None, :] < lengths[:, None]
    return jnp.asarray(x), jnp.asarray(mask)


def _params(features=4, hidden=5, seed=1):
    # Wider than PyTorch's init so that the gates leave their linear region and errors would show.
    params = init_lstm_params(jax.random.key(seed), features, hidden)
    return jax.tree.map(lambda p: 3 * p, params)


def test_lstm_cell_matches_numpy_equations():
    params = _params()
    rng = np.random.default_rng(2)
    x, c, h = rng.normal(size=(3, 4)), rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    (c_j, h_j), out = lstm_cell(params, (jnp.float32(c), jnp.float32(h)), jnp.float32(x))
    c_np, h_np = _numpy_lstm_cell(params, c, h, x)
    np.testing.assert_allclose(c_j, c_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_j, h_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, h_j)


def test_rnn_cell_matches_numpy_equation():
    rng = np.random.default_rng(3)
    params = {"w_x": rng.normal(size=(4, 5)), "w_h": rng.normal(size=(5, 5)), "b": rng.normal(size=(5,))}
    x, h = rng.normal(size=(3, 4)), rng.normal(size=(3, 5))
    # The tutorial's form W_hh h + W_xh x + b, per example, with W_hh = w_hᵀ and W_xh = w_xᵀ.
    z = np.einsum("ij,bj->bi", params["w_h"].T, h) + np.einsum("ij,bj->bi", params["w_x"].T, x) + params["b"]
    params32 = jax.tree.map(jnp.float32, params)
    for activation, expected in [(jnp.tanh, np.tanh(z)), (jax.nn.relu, np.maximum(z, 0))]:
        h_j, out = rnn_cell(params32, jnp.float32(h), jnp.float32(x), activation)
        np.testing.assert_allclose(h_j, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out, h_j)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("reverse", [False, True])
def test_layer_equals_python_loop_over_the_cell(implementation, reverse):
    x, mask = _batch()
    params = _params()
    rng = np.random.default_rng(4)
    c0, h0 = (jnp.asarray(rng.normal(size=(3, 5)), jnp.float32) for _ in range(2))
    outputs, (c_n, h_n) = lstm_layer(params, x, mask, (c0, h0), reverse, implementation)

    steps = reversed(range(x.shape[1])) if reverse else range(x.shape[1])
    c, h = c0, h0
    c_np, h_np = np.float64(c0), np.float64(h0)
    expected, expected_np = np.zeros(outputs.shape, np.float32), np.zeros(outputs.shape)
    for t in steps:
        valid = np.asarray(mask[:, t, None])
        (c_new, h_new), _ = lstm_cell(params, (c, h), x[:, t])
        c, h = jnp.where(valid, c_new, c), jnp.where(valid, h_new, h)
        expected[:, t] = np.where(valid, h_new, 0)
        c_new, h_new = _numpy_lstm_cell(params, c_np, h_np, np.float64(x[:, t]))
        c_np, h_np = np.where(valid, c_new, c_np), np.where(valid, h_new, h_np)
        expected_np[:, t] = np.where(valid, h_new, 0)
    for want, want_c, want_h in ((expected, c, h), (expected_np, c_np, h_np)):
        np.testing.assert_allclose(outputs, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c_n, want_c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h_n, want_h, rtol=1e-5, atol=1e-6)


def test_scan_implementation_runs_lstm_cell_itself(monkeypatch):
    """``implementation="scan"`` is `lax.scan` over `lstm_cell`: replacing the cell changes what the layer computes."""
    x, mask = _batch()
    params = _params()
    calls = []

    def doubled_cell(params, carry, x):
        calls.append(x.shape)
        (c, h), _ = lstm_cell(params, carry, x)
        return (c, 2 * h), 2 * h

    plain, _ = lstm_layer(params, x, mask, implementation="scan")
    monkeypatch.setattr(recurrent, "lstm_cell", doubled_cell)
    doubled, _ = lstm_layer(params, x, mask, implementation="scan")
    assert calls == [(3, 4)]  # traced once, as the body of the scan, on one time step of the batch
    assert np.abs(np.asarray(doubled - plain)).max() > 1e-2


@pytest.mark.parametrize("kernel", ["custom_vjp", "ffi"])
@pytest.mark.parametrize("mask_kind", ["none", "padded", "holes"])
def test_fast_kernels_equal_the_lstm_cell_scan_in_values_and_gradients(mask_kind, kernel):
    x, mask = _batch()
    mask = {"none": None, "padded": mask, "holes": mask.at[0, 2].set(False).at[2, 0].set(False)}[mask_kind]
    params = _params()
    rng = np.random.default_rng(5)
    carry = tuple(jnp.asarray(rng.normal(size=(3, 5)), jnp.float32) for _ in range(2))
    weights = jnp.asarray(rng.normal(size=(2, 3, 6, 5)), jnp.float32)

    def loss(params, x, carry, implementation):
        total = 0.0
        for direction, reverse in enumerate((False, True)):
            outputs, (c, h) = lstm_layer(params, x, mask, carry, reverse, implementation)
            total += jnp.sum(outputs * weights[direction]) + jnp.sum(c * h) + jnp.sum(jnp.sin(h))
        return total

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    fast, reference = grad(params, x, carry, kernel), grad(params, x, carry, "scan")
    for got, want in zip(jax.tree.leaves(fast), jax.tree.leaves(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", [name for name in IMPLEMENTATIONS if name != "ffi"])
def test_layer_gradients_match_finite_differences(implementation):
    """In float64, so "auto" runs the XLA loop; the float32-only C++ kernel is held to "scan" in test_lstm_kernel."""
    with _float64():
        x, mask = _batch(batch=2, time=4, features=3)
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), _params(features=3, hidden=2))
        carry = (jnp.full((2, 2), 0.3), jnp.full((2, 2), -0.2))
        x = jnp.asarray(x, jnp.float64)

        def run(params, x, carry):
            forward = lstm_layer(params, x, mask, carry, False, implementation)
            backward = lstm_layer(params, x, mask, carry, True, implementation)
            return forward, backward

        modes = ("fwd", "rev") if implementation == "scan" else ("rev",)
        check_grads(jax.jit(run), (params, x, carry), order=1, modes=modes, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_positions_never_change_valid_outputs(bidirectional):
    x, mask = _batch()
    noisy = jnp.where(mask[:, :, None], x, 1e3 * jax.random.normal(jax.random.key(7), x.shape))
    model = LSTM(5, num_layers=2, bidirectional=bidirectional)
    variables = model.init(jax.random.key(0), x)

    def loss(variables, x):
        outputs, carries = model.apply(variables, x, mask)
        return jnp.sum(last_valid(outputs, mask) ** 2) + jnp.sum(carries[1] ** 2), (outputs, carries)

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (clean_loss, clean), clean_grad = grad(variables, x)
    (noisy_loss, dirty), noisy_grad = grad(variables, noisy)
    np.testing.assert_array_equal(clean[0][~mask], 0)
    noisy_run, clean_run = (noisy_loss, dirty, noisy_grad), (clean_loss, clean, clean_grad)
    for got, want in zip(jax.tree.leaves(noisy_run), jax.tree.leaves(clean_run)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_last_valid_reads_each_sequences_last_valid_step():
    outputs = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
    mask = jnp.array([[True, True, False, False], [True, False, True, False]])  # the second has a hole
    np.testing.assert_array_equal(last_valid(outputs, mask), np.stack([outputs[0, 1], outputs[1, 2]]))
    np.testing.assert_array_equal(last_valid(outputs), outputs[:, -1])


def test_jit_vmap_grad_compose_with_the_pure_functions():
    x, mask = _batch()
    ensemble = jax.vmap(lambda k: init_lstm_params(k, 4, 5))(jax.random.split(jax.random.key(0), 3))

    def loss(params):
        outputs, _ = lstm_layer(params, x, mask)
        return jnp.mean(last_valid(outputs, mask) ** 2)

    values, grads = jax.jit(jax.vmap(jax.value_and_grad(loss)))(ensemble)
    single = jax.jit(jax.value_and_grad(loss))
    for member in range(3):
        value, grad = single(jax.tree.map(lambda p: p[member], ensemble))
        np.testing.assert_allclose(values[member], value, rtol=1e-6)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grad)):
            np.testing.assert_allclose(got[member], want, rtol=1e-5, atol=1e-7)

    # The cell on one example at a time (vmapped) equals the cell on the batch.
    params = _params()
    carry = (jnp.zeros((3, 5)), jnp.zeros((3, 5)))
    per_example = jax.vmap(lstm_cell, in_axes=(None, 0, 0))(params, carry, x[:, 0])
    for got, want in zip(jax.tree.leaves(per_example), jax.tree.leaves(lstm_cell(params, carry, x[:, 0]))):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "args, error, message",
    [
        (dict(x=jnp.zeros((6, 4))), ValueError, r"x: expected float array of rank 3 \[batch, time, features\], got"),
        (dict(x=jnp.zeros((3, 6, 4), jnp.int32)), TypeError, r"x: expected float array .* got int32 array"),
        (dict(x=jnp.zeros((3, 0, 4))), ValueError, "at least one time step"),
        (
            dict(x=jnp.zeros((3, 6, 7))),
            ValueError,
            r"params\['w_x'\]: expected float array of shape \(7, 20\), got .* \(4, 20\)\. For x with 7 features",
        ),
        (dict(mask=jnp.ones((3, 6), jnp.int32)), TypeError, r"mask: expected bool array of shape \(3, 6\) .*int32"),
        (dict(mask=jnp.ones((6, 3), bool)), ValueError, r"mask: expected bool array of shape \(3, 6\).*\(6, 3\)"),
        (dict(initial_carry=(jnp.zeros((3, 4)),) * 2), ValueError, r"initial_carry c: expected float .* \(3, 5\)"),
        (dict(implementation="cudnn"), ValueError, "implementation must be one of"),
    ],
)
def test_bad_inputs_raise_before_compilation(args, error, message):
    call = dict(params=_params(), x=jnp.zeros((3, 6, 4)), mask=None) | args
    with pytest.raises(error, match=message):
        jax.eval_shape(lambda: lstm_layer(**call))


@pytest.mark.parametrize(
    "x, mask, error, message",
    [
        (jnp.zeros((3, 6, 4), jnp.int32), None, TypeError, r"x: expected float array .* got int32 array"),
        (jnp.zeros((3, 6)), None, ValueError, r"x: expected float array of rank 3 \[batch, time, features\]"),
        (jnp.zeros((3, 6, 4)), jnp.ones((3, 5), bool), ValueError, r"mask: expected bool array of shape \(3, 6\)"),
    ],
)
def test_module_checks_its_inputs(x, mask, error, message):
    with pytest.raises(error, match=message):
        jax.eval_shape(LSTM(5, num_layers=2).init, jax.random.key(0), x, mask)


def test_module_checks_once_not_in_every_layer(monkeypatch):
    checked = []
    monkeypatch.setattr(recurrent, "check_array", lambda x, name, **kwargs: checked.append(name))
    jax.eval_shape(LSTM(5, num_layers=2, bidirectional=True).init, jax.random.key(0), *_batch())
    assert checked == ["x", "mask"]


def test_missing_parameter_and_bad_module_carry_are_named():
    params = dict(_params())
    del params["b"]
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        lstm_layer(params, jnp.zeros((3, 6, 4)))
    model = LSTM(5, num_layers=2)
    carry = (jnp.zeros((1, 3, 5)), jnp.zeros((1, 3, 5)))
    with pytest.raises(ValueError, match=r"c0: expected float array of shape \(2, 3, 5\).*got .* \(1, 3, 5\)"):
        model.init(jax.random.key(0), jnp.zeros((3, 6, 4)), initial_carry=carry)


def test_dropout_acts_between_layers_only_when_training():
    x, mask = _batch()
    model = LSTM(5, num_layers=2, dropout=0.5)
    variables = model.init(jax.random.key(0), x)

    @functools.partial(jax.jit, static_argnums=2)
    def run(variables, key, train):
        return model.apply(variables, x, mask, train=train, rngs={"dropout": key})

    key = jax.random.key(1)
    plain = LSTM(5, num_layers=2).apply(variables, x, mask)
    for got, want in zip(jax.tree.leaves(run(variables, key, False)), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(got, want)
    dropped, (c_n, h_n) = run(variables, key, True)
    # Layer 0 reads the input undropped; layer 1 reads dropped outputs of layer 0.
    np.testing.assert_array_equal(h_n[0], plain[1][1][0])
    np.testing.assert_array_equal(c_n[0], plain[1][0][0])
    assert np.abs(np.asarray(dropped - plain[0])).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(dropped)[~np.asarray(mask)], 0)


def _from_torch(lstm, bidirectional):
    """Our parameter tree from a PyTorch nn.LSTM: transposed weights, the two biases summed."""
    suffixes = ("", "_reverse") if bidirectional else ("",)
    params = {}
    for layer in range(lstm.num_layers):
        for suffix in suffixes:
            get = lambda name: getattr(lstm, f"{name}_l{layer}{suffix}").detach().numpy()  # noqa: E731
            params[f"layer_{layer}{suffix}"] = {
                "w_x": jnp.asarray(get("weight_ih").T),
                "w_h": jnp.asarray(get("weight_hh").T),
                "b": jnp.asarray(get("bias_ih") + get("bias_hh")),
            }
    return params


def _torch_grads(lstm, bidirectional):
    """PyTorch's parameter gradients laid out like `_from_torch` (both bias gradients equal ours)."""
    suffixes = ("", "_reverse") if bidirectional else ("",)
    grads = {}
    for layer in range(lstm.num_layers):
        for suffix in suffixes:
            get = lambda name: getattr(lstm, f"{name}_l{layer}{suffix}").grad.numpy()  # noqa: E731
            np.testing.assert_allclose(get("bias_ih"), get("bias_hh"), rtol=1e-5, atol=1e-6)
            grads[f"layer_{layer}{suffix}"] = {
                "w_x": get("weight_ih").T,
                "w_h": get("weight_hh").T,
                "b": get("bias_ih"),
            }
    return grads


@pytest.mark.torch
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_matches_torch_lstm_with_copied_weights(bidirectional, padded):
    """The default kernel ("auto": the C++ loop on CPU); the lstm_cell scan equals it (test_fast_kernels_equal_...)."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    torch.manual_seed(0)
    batch, time, features, hidden, layers = 4, 7, 10, 32, 2
    lstm = torch.nn.LSTM(features, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    directions = 2 if bidirectional else 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, time, features)).astype(np.float32)
    c0, h0 = (0.5 * rng.normal(size=(layers * directions, batch, hidden)).astype(np.float32) for _ in range(2))
    out_weight = rng.normal(size=(batch, time, directions * hidden)).astype(np.float32)
    carry_weight = rng.normal(size=(2, layers * directions, batch, hidden)).astype(np.float32)
    lengths = np.array([7, 3, 5, 1]) if padded else np.full(batch, time)
    mask = np.arange(time)[None, :] < lengths[:, None]

    x_t = torch.tensor(x, requires_grad=True)
    inputs = torch.nn.utils.rnn.pack_padded_sequence(x_t, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    packed, (h_n, c_n) = lstm(inputs, (torch.tensor(h0), torch.tensor(c0)))
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(packed, batch_first=True, total_length=time)
    loss_t = (out_t * torch.tensor(out_weight)).sum() + (c_n * torch.tensor(carry_weight[0])).sum()
    (loss_t + (h_n * torch.tensor(carry_weight[1])).sum()).backward()

    model = LSTM(hidden, layers, bidirectional=bidirectional)
    params = _from_torch(lstm, bidirectional)

    @jax.jit
    def loss(params, x):
        outputs, (c, h) = model.apply({"params": params}, x, jnp.asarray(mask) if padded else None, (c0, h0))
        total = jnp.sum(outputs * out_weight) + jnp.sum(c * carry_weight[0]) + jnp.sum(h * carry_weight[1])
        return total, (outputs, c, h)

    (_, (outputs, c, h)), (d_params, d_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
    np.testing.assert_allclose(outputs, out_t.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, c_n.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_n.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_x, x_t.grad.numpy(), rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(d_params), jax.tree.leaves(_torch_grads(lstm, bidirectional))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.torch
def test_tutorial_classifier_matches_torch_on_the_last_valid_step():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(10, 32, num_layers=2, batch_first=True), torch.nn.Linear(32, 2)
    x = np.random.default_rng(1).normal(size=(3, 9, 10)).astype(np.float32)
    lengths = np.array([9, 4, 6])
    inputs = torch.nn.utils.rnn.pack_padded_sequence(
        torch.tensor(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    _, (h_n, _) = lstm(inputs)
    expected = head(h_n[-1]).detach().numpy()  # the top layer's state after each sequence's last valid step

    params = {
        "lstm": _from_torch(lstm, False),
        "head": {
            "kernel": jnp.asarray(head.weight.detach().numpy().T),
            "bias": jnp.asarray(head.bias.detach().numpy()),
        },
    }
    mask = jnp.asarray(np.arange(9)[None, :] < lengths[:, None])
    logits = TutorialLSTMClassifier().apply({"params": params}, jnp.asarray(x), mask)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
