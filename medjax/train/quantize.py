"""Post-training int8 weight quantisation: per-output-channel symmetric scales for dense, convolution and LSTM kernels.

For a kernel ``w`` whose last axis is its output channels (Flax's ``Dense``/``Conv`` ``kernel`` ``[..., in, out]``,
medjax's ``conv``/``conv1d`` kernels, the LSTM's ``w_x``/``w_h`` ``[in, 4H]``), channel ``c`` gets the scale
``s_c = max |w[..., c]| / 127`` and ``q = clip(round(w / s_c), -127, 127)`` as int8; ``w ≈ q * s_c`` with an error of
at most ``s_c / 2`` per weight. Biases, norms, embeddings, the CRF's transitions and every non-``params`` collection
(``batch_stats``) stay float32. Activations stay float32 too (weight-only quantisation): the model shrinks about 4×
on disk; it computes in float32 after `dequantize_tree` (inside the jitted call, so the int8 weights are what the
call holds).

`medjax export --workdir W --int8` (`medjax.train.export`) writes the quantised model and measures what it changes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

KERNEL_NAMES = ("kernel", "w_x", "w_h")


def quantize_kernel(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``w: f32[..., out]`` -> ``(q: int8[..., out], scale: f32[out])`` with ``w ≈ q * scale``."""
    reduce = tuple(range(w.ndim - 1))
    peak = jnp.max(jnp.abs(w), axis=reduce, keepdims=True)
    scale = jnp.where(peak > 0, peak / 127.0, 1.0).astype(jnp.float32)  # an all-zero channel: any scale is exact
    q = jnp.clip(jnp.round(w / scale), -127, 127).astype(jnp.int8)
    return q, scale.reshape(-1)


def dequantize_kernel(q: jax.Array, scale: jax.Array) -> jax.Array:
    """The float32 kernel ``q * scale`` (scale broadcast over the last axis)."""
    return q.astype(jnp.float32) * scale.reshape((1,) * (q.ndim - 1) + (-1,))


def _is_kernel(path, leaf) -> bool:
    name = getattr(path[-1], "key", None) if path else None
    return name in KERNEL_NAMES and getattr(leaf, "ndim", 0) >= 2


def quantize_tree(params: Any) -> Any:
    """``params`` with every kernel replaced by ``{"q": int8, "scale": f32}``; other leaves unchanged."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: dict(zip(("q", "scale"), quantize_kernel(leaf))) if _is_kernel(path, leaf) else leaf,
        params)


def _is_quantized(node) -> bool:
    return isinstance(node, dict) and set(node) == {"q", "scale"}


def dequantize_tree(quantized: Any) -> Any:
    """The inverse of `quantize_tree` up to rounding: float32 params of the original structure."""
    return jax.tree_util.tree_map(lambda node: dequantize_kernel(node["q"], node["scale"]) if _is_quantized(node)
                                  else node, quantized, is_leaf=_is_quantized)


def count_quantized(quantized: Any) -> int:
    """How many kernels `quantize_tree` replaced."""
    return sum(_is_quantized(n) for n in jax.tree_util.tree_leaves(quantized, is_leaf=_is_quantized))
