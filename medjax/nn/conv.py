"""The tutorial's CNN: 2-D convolution, 2×2 max pooling and a dense head, for any image size and channel count.

The tutorial writes the convolution as ``y(i, j) = Σ_m x(i − m + 1, j) k(m)``: a *true* convolution, whose kernel is
flipped relative to the input. Like every deep-learning library (``torch.nn.Conv2d``, ``flax.linen.Conv``), medjax's
``conv2d`` computes the *cross-correlation* ``y(i, j) = Σ_{m,n} x(i + m, j + n) k(m, n)``, with no flip. The two differ
only by reversing the kernel, which learning absorbs; ``tests/nn/test_conv.py`` checks both statements.

Layout is NHWC for images and HWIO for kernels (XLA's preferred layout on CPU and TPU): ``x: f32[batch, height, width,
channels]``, ``kernel: f32[kernel_h, kernel_w, in_channels, out_channels]``.

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = TutorialCNN(num_classes=10)
  >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))   # 28×28 works too
  >>> model.apply(variables, jnp.zeros((64, 32, 32, 1))).shape
  (64, 10)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import IMAGE_DIMS, check_array, check_images
from medjax.nn.winograd import winograd_conv3x3

Padding = str | int | Sequence[tuple[int, int]]

# PyTorch's default initialisation (kaiming_uniform with a = √5, i.e. U(±1/√fan_in) for weights and biases): the
# tutorial's and MedMNIST's published recipes are PyTorch programs, so medjax starts from the same distribution.
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int) -> Callable[..., jax.Array]:
    """PyTorch's default bias initialiser, U(−1/√fan_in, 1/√fan_in), for a layer with ``fan_in`` inputs."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _padding_pairs(padding: Padding) -> str | list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(
                f"padding: expected 'SAME', 'VALID', an int or ((top, bottom), (left, right)), got {padding!r}"
            )
        return padding
    if isinstance(padding, int):
        return [(padding, padding), (padding, padding)]
    pairs = [tuple(int(p) for p in pair) for pair in padding]
    if len(pairs) != 2 or any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"padding: expected ((top, bottom), (left, right)), got {padding!r}")
    return pairs


def conv2d(params: Mapping[str, jax.Array], x: jax.Array, padding: Padding = "SAME", *, stride: int = 1) -> jax.Array:
    """2-D cross-correlation plus bias, ``y = x ⋆ kernel + bias``, as one ``lax.conv_general_dilated``.

    Args:
      params: ``{"kernel": f32[kernel_h, kernel_w, in_channels, out_channels], "bias": f32[out_channels]}``; the bias
        is optional (convolutions followed by batch norm have none).
      x: f32[batch, height, width, in_channels].
      padding: ``"SAME"`` (output size = ceil(input / stride)), ``"VALID"`` (no padding), an int ``p`` (PyTorch's
        ``padding=p`` on every side) or ``((top, bottom), (left, right))``. With stride 2, ``"SAME"`` pads
        asymmetrically (bottom/right first) where PyTorch pads both sides: use ``padding=1`` to match
        ``nn.Conv2d(kernel_size=3, stride=2, padding=1)``.
      stride: the step between windows, in both directions.

    Returns:
      f32[batch, out_height, out_width, out_channels].

    Raises:
      TypeError / ValueError: ``x`` is not a float NHWC array whose channel count matches the kernel's.
    """
    kernel = params["kernel"]
    check_array(kernel, "kernel", dims=("kernel_h", "kernel_w", "in_channels", "out_channels"))
    check_array(x, "x", dims=IMAGE_DIMS, last_dim=kernel.shape[2])
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=_padding_pairs(padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    if "bias" in params:
        # Explicit reshape: medjax runs with jax_numpy_rank_promotion="raise" in its tests.
        y = y + params["bias"].reshape(1, 1, 1, -1)
    return y


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max pooling with stride 2, by reshape + max.

    ``reduce_window`` (``flax.linen.max_pool``, ``lax.reduce_window``) gives the same values, but XLA CPU runs its
    gradient (select-and-scatter) about ten times slower than the gradient of a plain ``max`` over reshaped axes.
    Odd sizes are floored like ``torch.nn.MaxPool2d(2)``: the last row / column is dropped.

    Gradients equal PyTorch's wherever the maximum of a window is unique. Where several entries tie, JAX's ``max``
    splits the gradient equally among them, while PyTorch routes it to one; after a ReLU, ties are almost always
    zeros, whose gradient the ReLU blocks anyway.

    Args:
      x: [batch, height, width, channels], height and width at least 2, any dtype.

    Returns:
      [batch, height // 2, width // 2, channels].
    """
    check_array(x, "x", dims=IMAGE_DIMS, dtype_kind=None)
    b, h, w, c = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"max_pool_2x2: expected height and width of at least 2, got array of shape {tuple(x.shape)}")
    x = x[:, : h // 2 * 2, : w // 2 * 2, :]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


CONV_IMPLEMENTATIONS = ("auto", "xla", "winograd")


def _winograd_fits(kernel_shape, stride: int, padding: Padding) -> bool:
    """Whether `winograd_conv3x3` computes this convolution: 3×3, stride 1, one pixel of padding on every side."""
    return tuple(kernel_shape[:2]) == (3, 3) and stride == 1 and padding in (1, "SAME")


def choose_implementation(x_shape, kernel_shape, stride: int, padding: Padding, platform: str | None = None,
                          dtype=jnp.float32) -> str:
    """The kernel ``Conv2D(implementation="auto")`` runs: Winograd F(2×2, 3×3) (`medjax.nn.winograd`) on CPU for
    float32, 3×3, stride-1, padding-1 layers of at least 128 input and output channels on maps of at most 14×14
    pixels, else XLA's convolution. (In bfloat16 its transforms would add rounding of their own, and it was measured
    in float32 only.)

    Measured on a 2-core AMD EPYC (`benchmarks/results/conv_kernels.json`, forward + backward per layer at batch
    128): Winograd is 0.90× XLA at 14×14×128, 0.96× at 7×7×256 and 0.89× at 4×4×512, and *slower* at 28×28×64
    (1.10×) and on the tutorial CNN's layers (1.34–1.56×), where its memory-bound transforms outweigh the 2.25×
    fewer multiplies. On GPU, cuDNN chooses its own algorithms.
    """
    if ((platform or jax.default_backend()) != "cpu" or jnp.dtype(dtype) != jnp.float32
            or not _winograd_fits(kernel_shape, stride, padding)):
        return "xla"
    _, height, width, _ = x_shape
    _, _, c_in, c_out = kernel_shape
    return "winograd" if min(c_in, c_out) >= 128 and height * width <= 14 * 14 else "xla"


class Conv2D(nn.Module):
    """Linen wrapper of ``conv2d``: declares ``kernel`` (and ``bias``) and calls the pure function, or the kernel
    `choose_implementation` picks for it (same values, tested).

    Attributes:
      features: number of output channels.
      kernel_size: (kernel_h, kernel_w).
      stride: window step in both directions.
      padding: as in ``conv2d``.
      use_bias: whether to add a bias (False before batch norm, which has its own).
      kernel_init: initialiser of the HWIO kernel (PyTorch's default unless told).
      implementation: ``"xla"`` is ``conv2d`` (one ``lax.conv_general_dilated``); ``"winograd"`` is
        `winograd_conv3x3` (3×3, stride 1, padding 1 only); ``"auto"`` chooses (`choose_implementation`).
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    stride: int = 1
    padding: Padding = "SAME"
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] = torch_default_kernel_init
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: f32[batch, height, width, in_channels] -> f32[batch, out_height, out_width, features]."""
        # Checked here because Flax would report a channel mismatch as a bare "initializer expected shape" error.
        initialised = self.get_variable("params", "kernel").shape[2] if self.has_variable("params", "kernel") else None
        check_array(
            x,
            f"{self.name} input",
            dims=IMAGE_DIMS,
            last_dim=initialised,
            hint=initialised and f"The parameters were initialised for {initialised} input channels",
        )
        in_channels = x.shape[-1]
        kh, kw = self.kernel_size
        params = {"kernel": self.param("kernel", self.kernel_init, (kh, kw, in_channels, self.features))}
        if self.use_bias:
            params["bias"] = self.param("bias", torch_default_bias_init(kh * kw * in_channels), (self.features,))
        implementation = self.implementation
        if implementation == "auto":
            implementation = choose_implementation(x.shape, params["kernel"].shape, self.stride, self.padding,
                                                   dtype=jnp.result_type(x, params["kernel"]))
        if implementation == "xla":
            return conv2d(params, x, self.padding, stride=self.stride)
        if implementation != "winograd":
            raise ValueError(f"implementation must be one of {CONV_IMPLEMENTATIONS}, got {implementation!r}")
        if not _winograd_fits((kh, kw), self.stride, self.padding):
            raise ValueError("implementation='winograd' runs 3×3 convolutions with stride 1 and padding 1 only, got "
                             f"{kh}×{kw}, stride {self.stride}, padding {self.padding!r}")
        y = winograd_conv3x3(x, params["kernel"])
        return y + params["bias"].reshape(1, 1, 1, -1) if self.use_bias else y


class TutorialCNN(nn.Module):
    """The tutorial's CNN, fixed: [conv 3×3 → ReLU → max-pool 2×2] per entry of ``features``, then two dense layers.

    With the defaults this is the tutorial's program: Conv2d(C→32, 3×3, pad 1) → ReLU → MaxPool 2 →
    Conv2d(32→64) → ReLU → MaxPool 2 → Linear(64·h·w → 128) → ReLU → Linear(128 → num_classes). The first dense
    layer infers its input size at ``init``, so 28×28 and 32×32 (the size that broke the tutorial) both work, with
    any channel count.

    Attributes:
      num_classes: number of output logits.
      features: output channels of each conv block; each block halves height and width.
      dense: width of the hidden dense layer.

    Submodules are named ``conv1, conv2, ..., dense1, dense2`` (PyTorch's names for porting weights).
    """

    num_classes: int = 10
    features: Sequence[int] = (32, 64)
    dense: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Class logits of a batch of images.

        Args:
          x: f32[batch, height, width, channels], pixels already scaled to float; height and width at least
            ``2 ** len(features)`` (4 by default).
          train: accepted for the common model interface; this network has no dropout or batch norm.

        Returns:
          f32[batch, num_classes] logits.
        """
        del train
        check_images(x)
        smallest = 2 ** len(self.features)
        if x.shape[1] < smallest or x.shape[2] < smallest:
            raise ValueError(
                f"images: expected height and width of at least {smallest} ({len(self.features)} 2×2 poolings), "
                f"got array of shape {tuple(x.shape)}"
            )
        images_shape = tuple(x.shape)
        for i, features in enumerate(self.features):
            x = Conv2D(features, (3, 3), padding=1, name=f"conv{i + 1}")(x)
            x = max_pool_2x2(jax.nn.relu(x))
        x = x.reshape(x.shape[0], -1)
        dense1 = self.variables.get("params", {}).get("dense1")
        if dense1 is not None and dense1["kernel"].shape[0] != x.shape[1]:
            raise ValueError(
                f"images: the parameters were initialised for images whose pooled feature map has "
                f"{dense1['kernel'].shape[0]} values, got images of shape {images_shape} giving {x.shape[1]}; "
                "init the model on images of this size"
            )
        x = nn.Dense(
            self.dense,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(x.shape[1]),
            name="dense1",
        )(x)
        x = jax.nn.relu(x)
        return nn.Dense(
            self.num_classes,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(self.dense),
            name="dense2",
        )(x)
