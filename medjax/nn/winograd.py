"""Winograd's minimal filtering F(2×2, 3×3): a 3×3, stride-1, padding-1 convolution with 2.25× fewer multiplies.

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks". The output is cut into 2×2 tiles; each
reads a 4×4 input tile ``d`` (overlapping its neighbours by 2) and is

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

summed over input channels, so the 16 products ⊙ become 16 matmuls ``[tiles, C_in] @ [C_in, C_out]``: 16 multiplies
per 4 outputs per channel pair, against 36 for the direct convolution. The transforms are additions only (Bᵀ, Aᵀ)
or are done once on the weights (G). Gradients come from autodiff of these linear maps and matmuls, so the backward
pass keeps the same 2.25× saving.

`winograd_conv3x3` computes exactly what ``conv2d({"kernel": k}, x, padding=1)`` does (tested to float32 rounding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from medjax.nn.checks import IMAGE_DIMS, check_array

# G: the 4×3 filter transform (NumPy: a module-level jnp array would start the backend at import, before a
# multi-process run can call jax.distributed.initialize).
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], np.float32)


def _input_transform(rows):
    """Bᵀ d along one axis, for the four rows d0..d3 of a tile: additions only."""
    d0, d1, d2, d3 = rows
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _output_transform(rows):
    """Aᵀ m along one axis: four transformed rows to the two output rows."""
    m0, m1, m2, m3 = rows
    return m0 + m1 + m2, m1 - m2 - m3


def winograd_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3×3 cross-correlation with stride 1 and one pixel of zero padding on every side, by F(2×2, 3×3).

    Args:
      x: f32[batch, height, width, in_channels].
      kernel: f32[3, 3, in_channels, out_channels] (HWIO).

    Returns:
      f32[batch, height, width, out_channels].
    """
    check_array(kernel, "kernel", shape=(3, 3, x.shape[-1], kernel.shape[-1]), hint="winograd_conv3x3 takes 3×3")
    check_array(x, "x", dims=IMAGE_DIMS)
    batch, height, width, _ = x.shape
    tiles_h, tiles_w = -(-height // 2), -(-width // 2)
    # Pad 1 for the convolution, plus one more row / column when the size is odd, so the tiles cover the image.
    x = jnp.pad(x, ((0, 0), (1, 1 + 2 * tiles_h - height), (1, 1 + 2 * tiles_w - width), (0, 0)))
    # d[a, b]: the (a, b) element of every 4×4 tile: f32[4, 4, batch, tiles_h, tiles_w, C_in].
    d = jnp.stack([jnp.stack([x[:, a : a + 2 * tiles_h : 2, b : b + 2 * tiles_w : 2] for b in range(4)])
                   for a in range(4)])
    v = jnp.stack(_input_transform(d))  # Bᵀ d, along a
    v = jnp.stack(_input_transform(jnp.moveaxis(v, 1, 0)), axis=1)  # (Bᵀ d) B, along b
    u = jnp.einsum("ak,klio,bl->abio", _G, kernel, _G)  # G g Gᵀ: f32[4, 4, C_in, C_out]
    tiles = batch * tiles_h * tiles_w
    m = jnp.einsum("ktc,kco->kto", v.reshape(16, tiles, -1), u.reshape(16, *u.shape[2:]))
    m = m.reshape(4, 4, batch, tiles_h, tiles_w, -1)
    y = jnp.stack(_output_transform(m))  # Aᵀ m, along a
    y = jnp.stack(_output_transform(jnp.moveaxis(y, 1, 0)), axis=1)  # (Aᵀ m) A: f32[2, 2, batch, th, tw, C_out]
    y = y.transpose(2, 3, 0, 4, 1, 5).reshape(batch, 2 * tiles_h, 2 * tiles_w, -1)
    return y[:, :height, :width]
