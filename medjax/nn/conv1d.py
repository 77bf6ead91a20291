"""The tutorial's convolution in one dimension, for signals: ``conv1d``, 1-D max pooling, and the Linen wrapper.

The tutorial writes ``y(i) = Σ_m x(i − m + 1) k(m)``; like ``torch.nn.functional.conv1d``, medjax computes the
cross-correlation ``y(i) = Σ_m x(i·stride + m) k(m)`` (no kernel flip, which learning absorbs; see `medjax.nn.conv`).
Layout is NWC for signals and WIO for kernels: ``x: f32[batch, time, channels]``, ``kernel: f32[width, in, out]``.

Example:
  >>> params = {"kernel": jnp.ones((5, 1, 8)), "bias": jnp.zeros(8)}
  >>> conv1d(params, jnp.ones((2, 252, 1)), padding=2).shape
  (2, 252, 8)
"""

from __future__ import annotations

from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import check_array
from medjax.nn.conv import torch_default_bias_init, torch_default_kernel_init

SIGNAL_DIMS = ("batch", "time", "channels")


def conv1d(params: Mapping[str, jax.Array], x: jax.Array, padding: str | int = "SAME", *,
           stride: int = 1, dilation: int = 1) -> jax.Array:
    """1-D cross-correlation plus bias, ``y = x ⋆ kernel + bias``, as one ``lax.conv_general_dilated``.

    Args:
      params: ``{"kernel": f32[width, in_channels, out_channels], "bias": f32[out_channels]}`` (bias optional).
      x: f32[batch, time, in_channels].
      padding: ``"SAME"``, ``"VALID"`` or an int ``p`` (PyTorch's ``padding=p`` on both sides).
      stride: the step between windows.
      dilation: the spacing of the kernel's taps (PyTorch's ``dilation``).

    Returns:
      f32[batch, out_time, out_channels].
    """
    kernel = params["kernel"]
    check_array(kernel, "kernel", dims=("width", "in_channels", "out_channels"))
    check_array(x, "x", dims=SIGNAL_DIMS, last_dim=kernel.shape[1])
    pads = padding if isinstance(padding, str) else [(int(padding), int(padding))]
    y = jax.lax.conv_general_dilated(x, kernel, window_strides=(stride,), padding=pads, rhs_dilation=(dilation,),
                                     dimension_numbers=("NWC", "WIO", "NWC"))
    if "bias" in params:
        y = y + params["bias"].reshape(1, 1, -1)
    return y


def max_pool_1d(x: jax.Array, size: int = 2) -> jax.Array:
    """Max pooling over non-overlapping windows of ``size`` steps, by reshape + max (the fast gradient on XLA CPU;
    see `medjax.nn.conv.max_pool_2x2`); a last partial window is dropped like ``torch.nn.MaxPool1d(size)``.

    Args:
      x: [batch, time, channels] with time >= size.

    Returns:
      [batch, time // size, channels].
    """
    b, t, c = x.shape
    if t < size:
        raise ValueError(f"max_pool_1d: expected at least {size} steps, got array of shape {tuple(x.shape)}")
    return x[:, : t // size * size].reshape(b, t // size, size, c).max(axis=2)


class Conv1D(nn.Module):
    """Linen wrapper of ``conv1d``: declares ``kernel`` (and ``bias``, PyTorch's initialisation) and calls it.

    Attributes:
      features: output channels.
      kernel_size: taps of the kernel.
      stride, padding, dilation: as in ``conv1d``.
      use_bias: add a bias (False before batch norm).
      kernel_init: initialiser of the WIO kernel.
    """

    features: int
    kernel_size: int = 5
    stride: int = 1
    padding: str | int = "SAME"
    dilation: int = 1
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] = torch_default_kernel_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: f32[batch, time, in_channels] -> f32[batch, out_time, features]."""
        check_array(x, f"{self.name} input", dims=SIGNAL_DIMS)
        fan_in = self.kernel_size * x.shape[-1]
        params = {"kernel": self.param("kernel", self.kernel_init, (self.kernel_size, x.shape[-1], self.features))}
        if self.use_bias:
            params["bias"] = self.param("bias", torch_default_bias_init(fan_in), (self.features,))
        return conv1d(params, x, self.padding, stride=self.stride, dilation=self.dilation)


def relu(x: jax.Array) -> jax.Array:
    """max(x, 0), the tutorial's activation."""
    return jnp.maximum(x, 0)
