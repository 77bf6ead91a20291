"""Scaled dot-product attention: the tutorial's equations as plain `jnp`, and nothing else.

For one sequence of steps ``x_1 .. x_T``::

    q = W_q x,   k = W_k x,   v = W_v x,   e = q kᵀ / √d_k,   α = softmax(e),   c = Σ_i α_i v_i

`attention_weights` is ``α`` and `scaled_dot_product_attention` is ``c``, on arrays ``[..., time, d]`` whose leading
axes (batch, heads, ...) are kept apart: a step only ever attends to steps of its own sequence. The tutorial's program
computed ``h hᵀ`` on a ``(batch, hidden)`` tensor, so its "attention" mixed different patients of the batch, and it
left out the ``1/√d_k`` scale; both are what this module fixes.

Masks are boolean and True where attending is allowed (as in `jax.nn.dot_product_attention`); they broadcast to the
scores ``[..., T_q, T_k]``. A query whose keys are all masked out (an empty, fully padded sequence) has no
distribution to attend with: its weights and its output are defined as 0, never NaN.

These functions do not check their inputs: `medjax.nn.attention_kernels.dot_product_attention` does, then runs this
formula (on CPU) or a fused kernel of `jax.nn` (on GPU); `medjax.nn.multihead.MultiHeadAttention` wraps it in a layer.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _cotangent_as(x: jax.Array, dtype) -> jax.Array:
    """``x`` unchanged; its cotangent is cast to ``dtype`` on the way back."""
    return x


_cotangent_as.defvjp(lambda x, dtype: (x, None), lambda dtype, _, g: (g.astype(dtype),))


def attention_weights(q: jax.Array, k: jax.Array, mask: jax.Array | None = None, bias: jax.Array | None = None):
    """The attention distribution ``α = softmax(q kᵀ / √d_k + bias)`` over the allowed keys.

    Args:
      q: f[..., T_q, d_k] queries.
      k: f[..., T_k, d_k] keys, with the leading axes of ``q``.
      mask: optional bool, broadcastable to ``[..., T_q, T_k]``; True where query i may attend to key j.
      bias: optional float, broadcastable to ``[..., T_q, T_k]``, added to the scaled scores (finite values).

    Returns:
      f32[..., T_q, T_k] (or wider if the inputs are f64): each row sums to 1 over its allowed keys and is 0 on the
      masked ones; a row with no allowed key is all 0.

    Example:
      >>> q = k = jnp.ones((2, 5, 8))
      >>> attention_weights(q, k).shape  # each of the 2 x 5 rows sums to 1
      (2, 5, 5)
    """
    # Scores and softmax in at least f32, also for bf16/f16 inputs: the exponent overflows half precision. The
    # scores' gradient goes back in the inputs' dtype, so the two backward matmuls run in it too.
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    e = jnp.einsum("...qd,...kd->...qk", q, k, preferred_element_type=dtype)
    e = (_cotangent_as(e, q.dtype) if q.dtype != dtype else e) / math.sqrt(q.shape[-1])
    if bias is not None:
        e = e + jnp.broadcast_to(bias, e.shape).astype(dtype)
    if mask is None:
        return jax.nn.softmax(e, axis=-1)
    mask = jnp.broadcast_to(mask, e.shape)
    # The lowest finite value rather than -inf keeps a fully masked row finite (uniform) before it is zeroed.
    alpha = jax.nn.softmax(jnp.where(mask, e, jnp.finfo(dtype).min), axis=-1)
    return jnp.where(mask, alpha, 0.0)


def scaled_dot_product_attention(q, k, v, mask=None, bias=None, return_weights: bool = False):
    """The context ``c = softmax(q kᵀ / √d_k + bias) v``, each query attending within its own sequence.

    Args:
      q: f[..., T_q, d_k] queries; any leading axes (batch, heads, ...).
      k: f[..., T_k, d_k] keys, with the leading axes of ``q``.
      v: f[..., T_k, d_v] values, with the leading axes and T_k of ``k``.
      mask: optional bool broadcastable to ``[..., T_q, T_k]``, True where attending is allowed; e.g. a padding
        mask ``bool[B, T]`` becomes ``mask[:, None, :]`` for ``q: [B, T, d]``. A query with no allowed key gets 0.
      bias: optional float broadcastable to ``[..., T_q, T_k]``, added to the scaled scores.
      return_weights: also return ``α`` (`attention_weights`).

    Returns:
      f[..., T_q, d_v] in the dtype of ``v``; with ``return_weights``, the pair ``(c, α)``.

    Example:
      >>> q = k = v = jnp.ones((2, 4, 10, 8))  # [batch, heads, time, d]
      >>> pad = jnp.arange(10)[None] < jnp.array([[10], [6]])  # bool[batch, time]
      >>> scaled_dot_product_attention(q, k, v, mask=pad[:, None, None, :]).shape
      (2, 4, 10, 8)
    """
    alpha = attention_weights(q, k, mask, bias)
    c = jnp.einsum("...qk,...kd->...qd", alpha.astype(v.dtype), v)
    return (c, alpha) if return_weights else c
