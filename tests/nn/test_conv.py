"""conv2d, max_pool_2x2 and TutorialCNN against the tutorial's formula, flax.linen and PyTorch with copied weights.

Tolerances: float32 on both sides, so values and gradients agree to summation-order rounding. Errors are measured
relative to the largest magnitude of the reference array (``_assert_close``), because gradients of the first dense
layer reach ~1e-1 while many entries are ~1e-8, where an entry-wise relative error means nothing.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from medjax.nn.conv import Conv2D, TutorialCNN, conv2d, max_pool_2x2


def _assert_close(actual, reference, tol=1e-5):
    actual, reference = np.asarray(actual), np.asarray(reference)
    assert actual.shape == reference.shape
    scale = max(1.0, float(np.abs(reference).max()))
    error = float(np.abs(actual - reference).max())
    assert error <= tol * scale, f"max abs error {error:.3g} > {tol:g} × {scale:.3g}"


def conv1d_reference(x, k):
    """The tutorial's formula, y(i) = Σ_m x(i − m + 1) k(m) with 1-based i, m, over the 'valid' range i = K .. N."""
    n, size = len(x), len(k)
    return np.array([sum(x[i - m + 1 - 1] * k[m - 1] for m in range(1, size + 1)) for i in range(size, n + 1)])


def _conv_rows(x_rows, kernel_rows):
    """conv2d along the height axis only, per column: x f32[N, M], kernel f32[K] -> f32[N − K + 1, M]."""
    params = {"kernel": jnp.asarray(kernel_rows).reshape(-1, 1, 1, 1)}
    return np.asarray(conv2d(params, jnp.asarray(x_rows)[None, :, :, None], "VALID"))[0, :, :, 0]


def test_conv2d_is_cross_correlation_and_the_tutorial_formula_is_a_true_convolution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 4)).astype(np.float32)  # y(i, j): the formula runs along i, for each column j
    k = np.array([1.0, -2.0, 0.5], np.float32)  # asymmetric, so a flip is visible
    tutorial = np.stack([conv1d_reference(x[:, j], k) for j in range(x.shape[1])], axis=1)
    np.testing.assert_allclose(tutorial[:, 0], np.convolve(x[:, 0], k, "valid"), rtol=1e-6)

    correlation = np.stack([np.correlate(x[:, j], k, "valid") for j in range(x.shape[1])], axis=1)
    np.testing.assert_allclose(_conv_rows(x, k), correlation, rtol=1e-5, atol=1e-6)
    # The tutorial's convolution is conv2d with the kernel reversed, and differs from conv2d with the kernel as is.
    np.testing.assert_allclose(_conv_rows(x, k[::-1].copy()), tutorial, rtol=1e-5, atol=1e-6)
    assert np.abs(_conv_rows(x, k) - tutorial).max() > 0.1


@pytest.mark.torch
@pytest.mark.parametrize("size, stride, padding", [(8, 1, 1), (8, 1, "SAME"), (8, 2, 1), (7, 2, 1), (9, 1, "VALID")])
def test_conv2d_equals_torch(size, stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    bias = rng.normal(size=(5,)).astype(np.float32)
    ours = conv2d({"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}, jnp.asarray(x), padding, stride=stride)
    torch_padding = {"SAME": 1, "VALID": 0}.get(padding, padding)
    theirs = torch.nn.functional.conv2d(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        torch.from_numpy(kernel).permute(3, 2, 0, 1),
        torch.from_numpy(bias),
        stride=stride,
        padding=torch_padding,
    ).permute(0, 2, 3, 1)
    _assert_close(ours, theirs.numpy())


def test_same_padding_with_stride_2_is_asymmetric():
    # Why ResNet uses padding=1: on an even size, "SAME" with stride 2 pads only bottom/right.
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    params = {"kernel": jnp.ones((3, 3, 1, 1))}
    same, symmetric = conv2d(params, x, "SAME", stride=2), conv2d(params, x, 1, stride=2)
    assert same.shape == symmetric.shape == (1, 2, 2, 1)
    assert float(symmetric[0, 0, 0, 0]) == 0 + 1 + 4 + 5  # window centred on (0, 0)
    assert float(same[0, 0, 0, 0]) == sum([0, 1, 2, 4, 5, 6, 8, 9, 10])  # window centred on (1, 1)


def test_conv2d_bad_padding_and_channels():
    params = {"kernel": jnp.ones((3, 3, 2, 4))}
    with pytest.raises(ValueError, match="padding: expected 'SAME', 'VALID'"):
        conv2d(params, jnp.ones((1, 4, 4, 2)), "same")
    with pytest.raises(ValueError, match=r"padding: expected \(\(top, bottom\), \(left, right\)\)"):
        conv2d(params, jnp.ones((1, 4, 4, 2)), [(1, 1)])
    with pytest.raises(ValueError, match=r"x: expected float array of shape \(\*, \*, \*, 2\)"):
        conv2d(params, jnp.ones((1, 4, 4, 3)))


@pytest.mark.torch
@pytest.mark.parametrize("height, width", [(8, 6), (7, 9)])  # odd sizes drop the last row / column, like PyTorch
def test_max_pool_values_and_gradients_equal_torch_and_flax(height, width):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, height, width, 3)).astype(np.float32)  # continuous values: no tied maxima
    cotangent = rng.normal(size=(2, height // 2, width // 2, 3)).astype(np.float32)

    ours, vjp = jax.vjp(max_pool_2x2, jnp.asarray(x))
    flax_out, flax_vjp = jax.vjp(lambda v: nn.max_pool(v, (2, 2), strides=(2, 2), padding="VALID"), jnp.asarray(x))

    x_torch = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    torch_out = torch.nn.MaxPool2d(2)(x_torch)
    torch_out.backward(torch.from_numpy(cotangent).permute(0, 3, 1, 2))

    np.testing.assert_array_equal(ours, torch_out.detach().permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(ours, flax_out)
    np.testing.assert_array_equal(vjp(jnp.asarray(cotangent))[0], x_torch.grad.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(vjp(jnp.asarray(cotangent))[0], flax_vjp(jnp.asarray(cotangent))[0])


def test_max_pool_ties_split_the_gradient_and_bad_sizes_are_refused():
    grad = jax.grad(lambda v: max_pool_2x2(v).sum())(jnp.zeros((1, 2, 2, 1)))
    np.testing.assert_array_equal(grad, np.full((1, 2, 2, 1), 0.25))
    assert max_pool_2x2(jnp.arange(4, dtype=jnp.int32).reshape(1, 2, 2, 1)).dtype == jnp.int32
    with pytest.raises(ValueError, match="at least 2"):
        max_pool_2x2(jnp.ones((1, 1, 4, 1)))
    with pytest.raises(ValueError, match=r"x: expected array of rank 4 \[batch, height, width, channels\]"):
        max_pool_2x2(jnp.ones((4, 4, 1)))


def _torch_tutorial_cnn(torch, channels, height, width, num_classes=10):
    """The tutorial's program, fixed: F imported, and the head sized for the actual image."""
    F = torch.nn.functional

    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(channels, 32, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
            self.pool = torch.nn.MaxPool2d(2)
            self.fc1 = torch.nn.Linear(64 * (height // 4) * (width // 4), 128)
            self.fc2 = torch.nn.Linear(128, num_classes)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            return self.fc2(F.relu(self.fc1(x.flatten(1))))

    return CNN()


def _to_flax(tensors, height, width):
    """PyTorch parameters (or their gradients) by name -> TutorialCNN params: OIHW -> HWIO; the first dense layer's
    rows go from PyTorch's NCHW flatten order to our NHWC order."""
    t = {name: value.detach().numpy() for name, value in tensors.items()}
    h, w = height // 4, width // 4
    fc1 = t["fc1.weight"].reshape(128, 64, h, w).transpose(2, 3, 1, 0).reshape(h * w * 64, 128)
    return {
        "conv1": {"kernel": t["conv1.weight"].transpose(2, 3, 1, 0), "bias": t["conv1.bias"]},
        "conv2": {"kernel": t["conv2.weight"].transpose(2, 3, 1, 0), "bias": t["conv2.bias"]},
        "dense1": {"kernel": fc1, "bias": t["fc1.bias"]},
        "dense2": {"kernel": t["fc2.weight"].T, "bias": t["fc2.bias"]},
    }


@pytest.mark.torch
@pytest.mark.parametrize("height, width, channels", [(28, 28, 1), (32, 32, 1), (28, 32, 3)])
def test_tutorial_cnn_equals_torch_forward_and_gradients(height, width, channels):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(4, height, width, channels)).astype(np.float32)
    labels = rng.integers(0, 10, size=4)

    reference = _torch_tutorial_cnn(torch, channels, height, width)
    x_torch = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    logits_torch = reference(x_torch)
    torch.nn.functional.cross_entropy(logits_torch, torch.from_numpy(labels)).backward()

    model = TutorialCNN()
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, height, width, channels)))
    params = _to_flax(dict(reference.named_parameters()), height, width)
    assert jax.tree.map(jnp.shape, variables["params"]) == jax.tree.map(np.shape, params)

    def loss(params, x):
        logits = model.apply({"params": params}, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(labels)[:, None], axis=1))

    logits = model.apply({"params": params}, jnp.asarray(x))
    grads, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))

    _assert_close(logits, logits_torch.detach().numpy())
    _assert_close(grad_x, x_torch.grad.permute(0, 2, 3, 1).numpy())
    torch_grads = _to_flax({name: p.grad for name, p in reference.named_parameters()}, height, width)
    for path, expected in jax.tree_util.tree_leaves_with_path(torch_grads):
        actual = grads[path[0].key][path[1].key]
        _assert_close(actual, expected)


def test_tutorial_cnn_any_size_and_channel_count():
    model = TutorialCNN(num_classes=3, features=(4, 8, 8), dense=16)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 17, 8, 5)))
    assert shapes["params"]["dense1"]["kernel"].shape == (2 * 1 * 8, 16)  # 17 -> 8 -> 4 -> 2; 8 -> 4 -> 2 -> 1
    assert set(shapes["params"]) == {"conv1", "conv2", "conv3", "dense1", "dense2"}
    # Running it (not just tracing) with fixed weights: init's random draws would only add compile time here.
    variables = jax.tree.map(lambda leaf: np.full(leaf.shape, 0.1, leaf.dtype), shapes)
    logits = jax.jit(model.apply)(variables, np.ones((2, 17, 8, 5), np.float32))
    assert logits.shape == (2, 3) and np.all(np.isfinite(logits))


def test_tutorial_cnn_torch_default_init_bounds():
    params = jax.jit(TutorialCNN().init)(jax.random.key(1), jnp.zeros((1, 28, 28, 1)))["params"]
    for name, fan_in in [("conv1", 9), ("conv2", 9 * 32), ("dense1", 64 * 7 * 7), ("dense2", 128)]:
        for leaf in params[name].values():
            bound = 1 / np.sqrt(fan_in)
            assert np.abs(leaf).max() <= bound
            assert np.abs(leaf).max() > 0.8 * bound  # uniform over the whole range, not a narrower distribution


def test_tutorial_cnn_bad_inputs():
    model = TutorialCNN()
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))  # checks need only shapes
    with pytest.raises(TypeError, match=r"images: expected float array .* got uint8 .* Scale integer pixels to float"):
        jax.eval_shape(model.apply, variables, np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match=r"images: expected float array of rank 4 \[batch, height, width, channels\], "
                       r"got float32 array of shape \(2, 28, 28\)(?![,\d])"):
        jax.eval_shape(model.apply, variables, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"conv1 input: .* shape \(\*, \*, \*, 1\) .* initialised for 1 input"):
        jax.eval_shape(model.apply, variables, np.zeros((2, 28, 28, 3), np.float32))
    with pytest.raises(ValueError, match=r"initialised for images whose pooled feature map has 3136 values, got "
                       r"images of shape \(2, 32, 32, 1\) giving 4096"):
        jax.eval_shape(model.apply, variables, np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="at least 4"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 3, 28, 1)))


def test_conv2d_module_wraps_the_pure_function():
    layer = Conv2D(4, (3, 3), stride=2, padding=1, use_bias=False)
    variables = jax.jit(layer.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
    assert set(variables["params"]) == {"kernel"}
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 2)).astype(np.float32)
    pure = jax.jit(lambda params, x: conv2d(params, x, 1, stride=2))
    np.testing.assert_array_equal(jax.jit(layer.apply)(variables, x), pure(variables["params"], x))
