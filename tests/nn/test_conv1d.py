"""conv1d and max_pool_1d against the tutorial's formula and PyTorch (forward and gradients, copied weights)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn.conv1d import Conv1D, conv1d, max_pool_1d


def test_conv1d_with_a_flipped_kernel_is_the_tutorials_formula():
    # y(i) = Σ_m x(i − m + 1) k(m), 1-based, over the valid range: a true convolution, i.e. conv1d with k reversed.
    rng = np.random.default_rng(0)
    x, k = rng.normal(size=12).astype(np.float32), np.array([1.0, -2.0, 0.5], np.float32)
    formula = np.array([sum(x[i - m] * k[m - 1] for m in range(1, 4)) for i in range(3, 13)])  # x(i-m+1) = x[i-m]
    ours = conv1d({"kernel": jnp.asarray(k[::-1].copy()).reshape(3, 1, 1)}, jnp.asarray(x)[None, :, None], "VALID")
    np.testing.assert_allclose(np.asarray(ours)[0, :, 0], formula, rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("stride,padding,dilation", [(1, 2, 1), (2, 0, 1), (1, 4, 2), (3, 1, 1)])
def test_conv1d_equals_torch_forward_and_gradients(stride, padding, dilation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 40)).astype(np.float32)  # PyTorch's NCW
    w = rng.normal(size=(6, 4, 5)).astype(np.float32)  # PyTorch's (out, in, width)
    b = rng.normal(size=6).astype(np.float32)
    cotangent = None

    def ours(x_nwc, params):
        return conv1d(params, x_nwc, padding, stride=stride, dilation=dilation)

    params = {"kernel": jnp.asarray(w.transpose(2, 1, 0)), "bias": jnp.asarray(b)}
    y, pullback = jax.vjp(ours, jnp.asarray(x.transpose(0, 2, 1)), params)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv1d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation)
    cotangent = rng.normal(size=ty.shape).astype(np.float32)
    ty.backward(torch.tensor(cotangent))
    np.testing.assert_allclose(np.asarray(y).transpose(0, 2, 1), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    dx, dparams = pullback(jnp.asarray(cotangent.transpose(0, 2, 1)))
    np.testing.assert_allclose(np.asarray(dx).transpose(0, 2, 1), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(dparams["kernel"]).transpose(2, 1, 0), tw.grad.numpy(), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(np.asarray(dparams["bias"]), tb.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.torch
def test_max_pool_1d_equals_torch_forward_and_gradients():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).normal(size=(2, 3, 11)).astype(np.float32)  # odd: the last step is dropped
    y, pullback = jax.vjp(max_pool_1d, jnp.asarray(x.transpose(0, 2, 1)))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool1d(tx, 2)
    ty.sum().backward()
    np.testing.assert_allclose(np.asarray(y).transpose(0, 2, 1), ty.detach().numpy())
    (dx,) = pullback(jnp.ones_like(y))
    np.testing.assert_allclose(np.asarray(dx).transpose(0, 2, 1), tx.grad.numpy())


def test_conv1d_module_calls_the_function_with_its_parameters():
    layer = Conv1D(8, 5, stride=2)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 30, 3)), jnp.float32)
    variables = layer.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].shape == (5, 3, 8)
    np.testing.assert_allclose(layer.apply(variables, x), conv1d(variables["params"], x, "SAME", stride=2))
