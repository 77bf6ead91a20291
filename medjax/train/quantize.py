"""Post-training int8 weight quantisation: per-output-channel symmetric scales for dense, convolution and LSTM kernels.

For a kernel ``w`` whose last axis is its output channels (Flax's ``Dense``/``Conv`` ``kernel`` ``[..., in, out]``,
medjax's ``conv``/``conv1d`` kernels, the LSTM's ``w_x``/``w_h`` ``[in, 4H]``), channel ``c`` gets the scale
``s_c = max |w[..., c]| / 127`` and ``q = clip(round(w / s_c), -127, 127)`` as int8; ``w ≈ q * s_c`` with an error of
at most ``s_c / 2`` per weight. Embedding tables get one scale per row (token) the same way. Biases, norms, the
CRF's transitions and every non-``params`` collection
(``batch_stats``) stay float32. Activations stay float32 too (weight-only quantisation): the model shrinks about 4×
on disk; it computes in float32 after `dequantize_tree` (inside the jitted call, so the int8 weights are what the
call holds).

`medjax export --workdir W --int8` (`medjax.train.export`) writes the quantised model and measures what it changes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

KERNEL_NAMES = ("kernel", "w_x", "w_h")  # quantised per output channel (the last axis)
TABLE_NAMES = ("embedding",)  # quantised per row (token)


def quantize_kernel(w: jax.Array, axis: int = -1) -> tuple[jax.Array, jax.Array]:
    """``w`` -> ``(q: int8, like w; scale: f32, w's shape with 1 on every axis but axis)``, ``w ≈ q * scale``.

    ``axis`` is the channel axis that gets its own scales: the output channels (-1) of a kernel, the rows (0) of an
    embedding table (one scale per token).
    """
    axis = axis % w.ndim
    reduce = tuple(a for a in range(w.ndim) if a != axis)
    peak = jnp.max(jnp.abs(w), axis=reduce, keepdims=True)
    scale = jnp.where(peak > 0, peak / 127.0, 1.0).astype(jnp.float32)  # an all-zero channel: any scale is exact
    q = jnp.clip(jnp.round(w / scale), -127, 127).astype(jnp.int8)
    return q, scale


def dequantize_kernel(q: jax.Array, scale: jax.Array) -> jax.Array:
    """The float32 array ``q * scale``."""
    return q.astype(jnp.float32) * scale


def _channel_axis(path, leaf) -> int | None:
    name = getattr(path[-1], "key", None) if path else None
    if getattr(leaf, "ndim", 0) < 2:
        return None
    return -1 if name in KERNEL_NAMES else 0 if name in TABLE_NAMES else None


def _quantize_leaf(path, leaf):
    axis = _channel_axis(path, leaf)
    return leaf if axis is None else dict(zip(("q", "scale"), quantize_kernel(leaf, axis)))


def quantize_tree(params: Any) -> Any:
    """``params`` with every kernel and embedding table replaced by ``{"q": int8, "scale": f32}``; other leaves
    unchanged."""
    return jax.tree_util.tree_map_with_path(_quantize_leaf, params)


def _is_quantized(node) -> bool:
    return isinstance(node, dict) and set(node) == {"q", "scale"}


def dequantize_tree(quantized: Any) -> Any:
    """The inverse of `quantize_tree` up to rounding: float32 params of the original structure."""
    return jax.tree_util.tree_map(lambda node: dequantize_kernel(node["q"], node["scale"]) if _is_quantized(node)
                                  else node, quantized, is_leaf=_is_quantized)


def count_quantized(quantized: Any) -> int:
    """How many kernels `quantize_tree` replaced."""
    return sum(_is_quantized(n) for n in jax.tree_util.tree_leaves(quantized, is_leaf=_is_quantized))
