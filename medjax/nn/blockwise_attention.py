"""Scaled dot-product attention computed one block of keys at a time, in O(T) memory: the same numbers as
`medjax.nn.attention.scaled_dot_product_attention`, without the ``[..., T_q, T_k]`` scores.

The forward pass keeps, per query, the running maximum ``m`` of its scores, the running sum ``l`` of their
exponentials and the running weighted sum of the values, and rescales them when a block raises the maximum (the
online softmax of Milakov & Gimelshein 2018, as FlashAttention does, Dao et al. 2022)::

    s = q k_jᵀ / √d,   m' = max(m, max s),   l' = l·e^(m-m') + Σ e^(s-m'),   acc' = acc·e^(m-m') + e^(s-m') v_j

and returns ``acc / l``. The backward pass (a `jax.custom_vjp`) recomputes each block's weights from the saved
log-sum-exp ``m + log l`` instead of storing them: with ``D = Σ dO ⊙ O`` per query,
``dV_j = Pᵀ dO``, ``dS = P ⊙ (dO V_jᵀ - D)``, ``dQ = Σ_j dS K_j / √d``, ``dK_j = dSᵀ Q / √d``.

Masks follow `scaled_dot_product_attention`: True where attending is allowed, and a query with no allowed key gets 0.
Scores are accumulated in float32 (or wider).

Example:
  >>> q = k = v = jnp.ones((2, 4, 1000, 32))            # [batch, heads, time, d]
  >>> blockwise_attention(q, k, v, block=256).shape      # never holds a 1000 x 1000 score matrix
  (2, 4, 1000, 32)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                        block: int = 128) -> jax.Array:
    """``softmax(q kᵀ / √d_k) v`` over key blocks of ``block`` steps.

    Args:
      q: f[..., T_q, d_k]; k: f[..., T_k, d_k]; v: f[..., T_k, d_v], with the same leading axes.
      mask: optional bool broadcastable to ``[..., T_q, T_k]``, True where attending is allowed.
      block: keys per block; ``T_k`` is padded up to a multiple of it (padding is masked out).

    Returns:
      f[..., T_q, d_v] in the dtype of ``v``.
    """
    lead, t_q, t_k = q.shape[:-2], q.shape[-2], k.shape[-2]
    batch = math.prod(lead)
    if mask is None:
        mask = jnp.ones((1, 1, t_k), bool)
        mask_rows = 1
    else:
        mask = jnp.asarray(mask, bool)
        mask = mask.reshape((1,) * (len(lead) + 2 - mask.ndim) + mask.shape)
        mask_rows = mask.shape[-2]
        mask = jnp.broadcast_to(mask, lead + (mask_rows, t_k)).reshape(batch, mask_rows, t_k)
    blocks = -(-t_k // block)
    pad = blocks * block - t_k
    k3, v3 = k.reshape(batch, t_k, k.shape[-1]), v.reshape(batch, t_k, v.shape[-1])
    if pad:
        k3 = jnp.pad(k3, ((0, 0), (0, pad), (0, 0)))
        v3 = jnp.pad(v3, ((0, 0), (0, pad), (0, 0)))
        mask = jnp.pad(mask, ((0, 0), (0, 0), (0, pad)))
    out = _attention(q.reshape(batch, t_q, q.shape[-1]), k3, v3, mask, block)
    return out.reshape(lead + (t_q, v.shape[-1]))


def _blocks(a: jax.Array, block: int) -> jax.Array:
    """[B, T, ...] -> [T / block, B, block, ...]: the scanned axis first."""
    return jnp.moveaxis(a.reshape(a.shape[0], a.shape[1] // block, block, *a.shape[2:]), 1, 0)


def _mask_blocks(mask: jax.Array, block: int) -> jax.Array:
    return jnp.moveaxis(mask.reshape(mask.shape[0], mask.shape[1], -1, block), 2, 0)


def _forward(q, k, v, mask, block):
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    scale = 1.0 / math.sqrt(q.shape[-1])
    lowest = jnp.finfo(dtype).min
    b, t_q = q.shape[:2]

    def step(carry, blocks):
        m, l, acc = carry
        kb, vb, mb = blocks
        s = jnp.einsum("bqd,bkd->bqk", q, kb, preferred_element_type=dtype) * scale
        s = jnp.where(mb, s, lowest)
        m_new = jnp.maximum(m, s.max(axis=-1))
        p = jnp.where(mb, jnp.exp(s - m_new[..., None]), 0.0)
        correction = jnp.exp(m - m_new)
        l = l * correction + p.sum(axis=-1)
        acc = acc * correction[..., None] + jnp.einsum("bqk,bkd->bqd", p, vb.astype(dtype))
        return (m_new, l, acc), None

    start = (jnp.full((b, t_q), lowest, dtype), jnp.zeros((b, t_q), dtype), jnp.zeros((b, t_q, v.shape[-1]), dtype))
    (m, l, acc), _ = jax.lax.scan(step, start, (_blocks(k, block), _blocks(v, block), _mask_blocks(mask, block)))
    valid = l > 0
    out = jnp.where(valid[..., None], acc / jnp.where(valid, l, 1.0)[..., None], 0.0)
    lse = jnp.where(valid, m + jnp.log(jnp.where(valid, l, 1.0)), jnp.inf)  # inf: every weight of the row is 0
    return out.astype(v.dtype), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(q, k, v, mask, block):
    return _forward(q, k, v, mask, block)[0]


def _attention_fwd(q, k, v, mask, block):
    out, lse = _forward(q, k, v, mask, block)
    return out, (q, k, v, mask, out, lse)


def _attention_bwd(block, residuals, d_out):
    q, k, v, mask, out, lse = residuals
    dtype = lse.dtype
    scale = 1.0 / math.sqrt(q.shape[-1])
    d_out = d_out.astype(dtype)
    delta = jnp.sum(d_out * out.astype(dtype), axis=-1)

    def step(d_q, blocks):
        kb, vb, mb = blocks
        s = jnp.einsum("bqd,bkd->bqk", q, kb, preferred_element_type=dtype) * scale
        p = jnp.where(mb, jnp.exp(s - lse[..., None]), 0.0)
        d_v = jnp.einsum("bqk,bqd->bkd", p, d_out)
        d_s = p * (jnp.einsum("bqd,bkd->bqk", d_out, vb.astype(dtype)) - delta[..., None])
        d_q = d_q + jnp.einsum("bqk,bkd->bqd", d_s, kb.astype(dtype)) * scale
        d_k = jnp.einsum("bqk,bqd->bkd", d_s, q.astype(dtype)) * scale
        return d_q, (d_k, d_v)

    d_q, (d_k, d_v) = jax.lax.scan(step, jnp.zeros(q.shape, dtype),
                                   (_blocks(k, block), _blocks(v, block), _mask_blocks(mask, block)))

    def unblock(a, like):
        return jnp.moveaxis(a, 0, 1).reshape(like.shape).astype(like.dtype)

    return d_q.astype(q.dtype), unblock(d_k, k), unblock(d_v, v), None


_attention.defvjp(_attention_fwd, _attention_bwd)
