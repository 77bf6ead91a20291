"""Winograd F(2×2, 3×3) against the plain convolution it replaces: values and gradients, every shape the models use."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn.conv import Conv2D, choose_implementation, conv2d
from medjax.nn.winograd import winograd_conv3x3


def _plain(x, kernel):
    return conv2d({"kernel": kernel}, x, padding=1)


@pytest.mark.parametrize(
    "batch, size, c_in, c_out",
    [
        (2, 28, 1, 32),  # the tutorial CNN's first layer on MedMNIST
        (1, 14, 128, 128), (1, 7, 256, 256), (1, 4, 512, 512),  # the ResNet-18 layers `auto` gives Winograd
        (1, 1, 3, 2), (3, 5, 4, 3), (2, 9, 6, 5),  # one pixel; odd sizes (a half tile at the edge)
    ],
)
def test_values_and_gradients_equal_the_plain_convolution(batch, size, c_in, c_out):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size + 1, c_in)), jnp.float32)  # non-square too
    kernel = jnp.asarray(rng.normal(size=(3, 3, c_in, c_out)) / np.sqrt(9 * c_in), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(batch, size, size + 1, c_out)), jnp.float32)

    @jax.jit  # one compilation for both kernels, values and gradients
    def both(x, kernel):
        def run(conv):
            grads = jax.grad(lambda x, k: jnp.sum(jnp.tanh(conv(x, k)) * weights), argnums=(0, 1))(x, kernel)
            return conv(x, kernel), grads

        return run(winograd_conv3x3), run(_plain)

    got, want = both(x, kernel)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(scale, 1.0))


def test_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match="3×3"):
        winograd_conv3x3(jnp.zeros((1, 4, 4, 2)), jnp.zeros((5, 5, 2, 3)))


@pytest.mark.parametrize(
    "x_shape, kernel_shape, stride, padding, platform, want",
    [
        ((128, 14, 14, 128), (3, 3, 128, 128), 1, 1, "cpu", "winograd"),  # ResNet-18 stages 2-4
        ((128, 4, 4, 512), (3, 3, 512, 512), 1, "SAME", "cpu", "winograd"),
        ((128, 28, 28, 64), (3, 3, 64, 64), 1, 1, "cpu", "xla"),  # stage 1: Winograd measured 1.5× slower
        ((64, 14, 14, 32), (3, 3, 32, 64), 1, 1, "cpu", "xla"),  # the tutorial CNN
        ((128, 14, 14, 128), (3, 3, 128, 256), 2, 1, "cpu", "xla"),  # stride 2
        ((128, 14, 14, 128), (1, 1, 128, 256), 1, 0, "cpu", "xla"),
        ((128, 56, 56, 128), (3, 3, 128, 128), 1, 1, "cpu", "xla"),  # a large map (224 px inputs)
        ((128, 7, 7, 256), (3, 3, 256, 256), 1, 1, "gpu", "xla"),  # cuDNN chooses its own
    ],
)
def test_auto_chooses_winograd_only_where_it_was_measured_faster(x_shape, kernel_shape, stride, padding, platform,
                                                                 want):
    assert choose_implementation(x_shape, kernel_shape, stride, padding, platform) == want
    # bfloat16 (--precision bf16) stays on XLA's convolution: Winograd was measured in float32 only.
    assert choose_implementation(x_shape, kernel_shape, stride, padding, platform, jnp.bfloat16) == "xla"


@pytest.mark.parametrize("use_bias", [False, True])
def test_conv2d_module_gives_the_same_values_and_gradients_with_either_kernel(use_bias):
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 128))
    modules = {name: Conv2D(128, (3, 3), padding=1, use_bias=use_bias, implementation=name)
               for name in ("xla", "winograd", "auto")}
    variables = modules["xla"].init(jax.random.key(1), x)

    def loss(variables, x, name):
        return jnp.sum(jnp.sin(modules[name].apply(variables, x)))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    want = grad(variables, x, "xla")
    for name in ("winograd", "auto"):
        for a, b in zip(jax.tree.leaves(grad(variables, x, name)), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv2d_module_refuses_winograd_where_it_cannot_run():
    x = jnp.zeros((1, 8, 8, 4))
    with pytest.raises(ValueError, match="3×3 convolutions with stride 1 and padding 1 only"):
        Conv2D(4, (3, 3), stride=2, padding=1, implementation="winograd").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="implementation must be one of"):
        Conv2D(4, (3, 3), implementation="fft").init(jax.random.key(0), x)
