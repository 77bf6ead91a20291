"""Scaled dot-product attention as plain `jnp`, and multi-head attention as a thin Linen wrapper.

The tutorial's equations, for one sequence of steps ``x_1 .. x_T``::

    q = W_q x,   k = W_k x,   v = W_v x,   e = q kᵀ / √d_k,   α = softmax(e),   c = Σ_i α_i v_i

`attention_weights` is ``α`` and `scaled_dot_product_attention` is ``c``, on arrays ``[..., time, d]`` whose leading
axes (batch, heads, ...) are kept apart: a step only ever attends to steps of its own sequence. The tutorial's program
computed ``h hᵀ`` on a ``(batch, hidden)`` tensor, so its "attention" mixed different patients of the batch, and it
left out the ``1/√d_k`` scale; both are what this module fixes.

Masks are boolean and True where attending is allowed (as in `jax.nn.dot_product_attention`); they broadcast to the
scores ``[..., T_q, T_k]``. A query whose keys are all masked out (an empty, fully padded sequence) has no
distribution to attend with: its weights and its output are defined as 0, never NaN.

Which kernel computes the attention (``implementation``): on CPU the plain `jnp` maths (measured faster here than
`jax.nn.dot_product_attention`'s XLA path, see PERF-NOTES); on an NVIDIA GPU cuDNN's fused flash attention when the
inputs allow it (`choose_implementation`), else XLA's. All give the same maths and the same fully-masked-row rule.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import check_array

IMPLEMENTATIONS = ("jnp", "xla", "cudnn")


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _check_qk(q: jax.Array, k: jax.Array, mask, bias) -> tuple[int, ...]:
    """Validates q, k, mask and bias at trace time; returns the scores' shape ``[..., T_q, T_k]``."""
    for name, a in (("q", q), ("k", k)):
        if a.ndim < 2:
            raise ValueError(f"{name} must be [..., time, d] (rank >= 2), got shape {a.shape}")
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{name} must be a floating array, got dtype {a.dtype}")
    if q.ndim != k.ndim or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"q and k must have the same leading axes [..., time, d], got q {q.shape} and k {k.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same d (last axis), got q {q.shape} and k {k.shape}")
    scores = q.shape[:-1] + k.shape[-2:-1]
    if mask is not None:
        if mask.dtype != jnp.bool_:
            raise TypeError(
                f"mask must be bool (True where attending is allowed), got dtype {mask.dtype}; "
                "pass an additive mask as bias"
            )
        if not _broadcasts_to(mask.shape, scores):
            raise ValueError(f"mask of shape {mask.shape} does not broadcast to the scores [..., T_q, T_k] {scores}")
    if bias is not None:
        if not jnp.issubdtype(bias.dtype, jnp.floating):
            raise TypeError(f"bias must be a floating array, got dtype {bias.dtype}")
        if not _broadcasts_to(bias.shape, scores):
            raise ValueError(f"bias of shape {bias.shape} does not broadcast to the scores [..., T_q, T_k] {scores}")
    return scores


def _check_v(k: jax.Array, v: jax.Array) -> None:
    if not jnp.issubdtype(v.dtype, jnp.floating):
        raise TypeError(f"v must be a floating array, got dtype {v.dtype}")
    if v.ndim != k.ndim or v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"v must be [..., T_k, d_v] with the leading axes and T_k of k, got k {k.shape}, v {v.shape}")


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
    q, k = jnp.asarray(q), jnp.asarray(k)
    mask = None if mask is None else jnp.asarray(mask)
    bias = None if bias is None else jnp.asarray(bias)
    shape = _check_qk(q, k, mask, bias)
    # Scores and softmax in at least f32, also for bf16/f16 inputs: the exponent overflows half precision.
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    scores = jnp.einsum("...qd,...kd->...qk", q, k, preferred_element_type=dtype) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + jnp.broadcast_to(bias, shape).astype(dtype)
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    mask = jnp.broadcast_to(mask, shape)
    # The lowest finite value rather than -inf keeps a fully masked row finite (uniform) before it is zeroed.
    weights = jax.nn.softmax(jnp.where(mask, scores, jnp.finfo(dtype).min), axis=-1)
    return jnp.where(mask, weights, 0.0)


def _cudnn_ineligible(q: jax.Array, k: jax.Array, v: jax.Array, masked: bool) -> str | None:
    """Why cuDNN's flash attention (via `jax.nn.dot_product_attention`) cannot run these inputs, or None if it can.

    The conditions are those of jax's ``check_layout`` / ``check_is_flash_attention`` that hold from jax 0.4.35 to
    0.10 (later versions allow head dims up to 256 on Hopper; 128 is the common bound).
    """
    device = jax.devices()[0]
    capability = str(getattr(device, "compute_capability", ""))
    major = capability.split(".")[0]
    if device.platform != "gpu" or not major.isdigit():
        return f"it needs an NVIDIA (CUDA) GPU, the default device is {device.platform}"
    if int(major) < 8:
        return f"flash attention needs compute capability >= 8.0, the GPU has {capability}"
    if not q.dtype == k.dtype == v.dtype or q.dtype not in (jnp.float16, jnp.bfloat16):
        return f"q, k, v must all be float16 or all bfloat16, got {q.dtype}, {k.dtype}, {v.dtype}"
    d = q.shape[-1]
    if v.shape[-1] != d or d % 8 or d > 128:
        return f"the head dim of q, k and v must be one multiple of 8 and <= 128, got {d} and {v.shape[-1]}"
    # A mask reaches cuDNN as an additive bias, whose gradient needs even sequence lengths.
    if masked and (q.shape[-2] % 2 or k.shape[-2] % 2):
        return f"with a mask or bias both lengths must be even, got T_q={q.shape[-2]}, T_k={k.shape[-2]}"
    return None


def choose_implementation(q, k, v, mask=None, bias=None) -> str:
    """The kernel `scaled_dot_product_attention` uses when ``implementation=None``, judged from static shapes.

    Returns:
      ``"jnp"`` on CPU (or when `jax.nn.dot_product_attention` cannot take the inputs: d_v != d_k or mixed dtypes),
      ``"cudnn"`` on a CUDA GPU for eligible inputs (f16/bf16, head dim a multiple of 8 up to 128, even lengths with
      a mask), ``"xla"`` otherwise.
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    if jax.devices()[0].platform == "cpu":
        return "jnp"
    if _cudnn_ineligible(q, k, v, mask is not None or bias is not None) is None:
        return "cudnn"
    if v.shape[-1] != q.shape[-1] or not q.dtype == k.dtype == v.dtype:
        return "jnp"
    return "xla"


def _attention_jax_nn(q, k, v, mask, bias, scores, implementation):
    """`jax.nn.dot_product_attention` on our ``[..., T, d]`` layout, with fully masked rows set to 0."""
    if v.shape[-1] != q.shape[-1] or not q.dtype == k.dtype == v.dtype:
        raise ValueError(
            f"implementation={implementation!r} needs q, k, v of one dtype and one d, got "
            f"q {q.shape} {q.dtype}, k {k.shape} {k.dtype}, v {v.shape} {v.dtype}; use implementation='jnp'"
        )
    lead, (t_q, t_k, d) = q.shape[:-2], scores[-2:] + q.shape[-1:]
    # jax.nn wants [batch, time, heads, d]: the last leading axis becomes the heads, the others the batch.
    heads = lead[-1] if len(lead) >= 2 else 1
    batch = math.prod(lead) // heads

    def to_btnd(a):
        return a.reshape(batch, heads, a.shape[-2], a.shape[-1]).transpose(0, 2, 1, 3)

    def to_bnts(a):
        a = a.reshape((1,) * (len(scores) - a.ndim) + a.shape)
        if len(lead) > 2:
            a = jnp.broadcast_to(a, scores).reshape(batch, heads, t_q, t_k)
        elif len(lead) < 2:
            a = a[:, None] if lead else a[None, None]
        if implementation == "cudnn":
            # cuDNN needs full T and S, and jax tests its bias broadcast only over the batch axis ([1, N, T, S]).
            batch_axis = 1 if a.shape[:2] == (1, heads) else batch
            return jnp.broadcast_to(a, (batch_axis, heads, t_q, t_k))
        # XLA broadcasts itself: a padding mask [B, 1, 1, S] is never copied to [B, N, T, S].
        return a

    if implementation == "cudnn" and bias is not None:
        bias = bias.astype(q.dtype)
    out = jax.nn.dot_product_attention(
        to_btnd(q),
        to_btnd(k),
        to_btnd(v),
        bias=None if bias is None else to_bnts(bias),
        mask=None if mask is None else to_bnts(mask),
        implementation=implementation,
    )
    out = out.transpose(0, 2, 1, 3).reshape(lead + (t_q, d))
    if mask is None:
        return out
    # jax.nn averages all values for a fully masked row; our rule is 0.
    valid = jnp.any(jnp.broadcast_to(mask, scores), axis=-1)
    return jnp.where(valid[..., None], out, jnp.zeros((), out.dtype))


def scaled_dot_product_attention(q, k, v, mask=None, bias=None, implementation: str | None = None) -> jax.Array:
    """The context ``c = softmax(q kᵀ / √d_k + bias) v``, each query attending within its own sequence.

    Args:
      q: f[..., T_q, d_k] queries; any leading axes (batch, heads, ...).
      k: f[..., T_k, d_k] keys, with the leading axes of ``q``.
      v: f[..., T_k, d_v] values, with the leading axes and T_k of ``k``.
      mask: optional bool broadcastable to ``[..., T_q, T_k]``, True where attending is allowed; e.g. a padding
        mask ``bool[B, T]`` becomes ``mask[:, None, :]`` for ``q: [B, T, d]``. A query with no allowed key gets 0.
      bias: optional float broadcastable to ``[..., T_q, T_k]``, added to the scaled scores.
      implementation: None chooses (`choose_implementation`); ``"jnp"`` forces the plain maths, ``"xla"`` and
        ``"cudnn"`` force `jax.nn.dot_product_attention` with that implementation.

    Returns:
      f[..., T_q, d_v], the dtype of ``v``.

    Example:
      >>> q = k = v = jnp.ones((2, 4, 10, 8))  # [batch, heads, time, d]
      >>> pad = jnp.arange(10)[None] < jnp.array([[10], [6]])  # bool[batch, time]
      >>> scaled_dot_product_attention(q, k, v, mask=pad[:, None, None, :]).shape
      (2, 4, 10, 8)
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    mask = None if mask is None else jnp.asarray(mask)
    bias = None if bias is None else jnp.asarray(bias)
    scores = _check_qk(q, k, mask, bias)
    _check_v(k, v)
    if implementation is None:
        implementation = choose_implementation(q, k, v, mask, bias)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be None or one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "jnp":
        weights = attention_weights(q, k, mask, bias)
        return jnp.einsum("...qk,...kd->...qd", weights.astype(v.dtype), v)
    if implementation == "cudnn":
        reason = _cudnn_ineligible(q, k, v, mask is not None or bias is not None)
        if reason is not None:
            raise ValueError(f"implementation='cudnn' cannot run these inputs: {reason}")
    return _attention_jax_nn(q, k, v, mask, bias, scores, implementation)


def _as_attention_mask(mask, batch: int, length: int, heads: int) -> jax.Array | None:
    """A padding mask bool[B, T] (True on valid steps) or a full mask bool[B|1, H|1, T, T] -> bool[B|1, H|1, T|1, T]."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be bool (True on valid steps / allowed pairs), got dtype {mask.dtype}")
    if mask.shape == (batch, length):
        # Padding hides keys only; a padded query still gets a (finite, unused) output.
        return mask[:, None, None, :]
    full = (batch, heads, length, length)
    if mask.ndim == 4 and _broadcasts_to(mask.shape, full) and mask.shape[2:] == full[2:]:
        return mask
    raise ValueError(
        f"mask must be a padding mask bool[batch, time] = {(batch, length)} or a full mask "
        f"bool[batch|1, heads|1, time, time] = {full}, got shape {mask.shape}"
    )


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention: per head ``softmax(q kᵀ / √d_head) v``, heads concatenated and projected back.

    Parameters: Dense ``query``, ``key``, ``value`` (``[width, features]`` kernels and biases) and ``out``
    (``[features, width]``), so the output has the input's width and drops into a residual connection. With
    ``features == width`` the layout is that of ``torch.nn.MultiheadAttention(width, num_heads)``: kernels are its
    ``in_proj_weight`` blocks and ``out_proj.weight`` transposed.

    The attention weights ``f32[batch, heads, time, time]`` are sown as ``("intermediates", "attention_weights")``
    when the ``intermediates`` collection is mutable (``model.apply(..., mutable=["intermediates"])``), for keyword
    extraction. Dropout, on the attention weights as in PyTorch, draws from the ``"dropout"`` rng and runs only when
    ``train=True``.

    Attributes:
      num_heads: number of heads; must divide ``features``.
      features: width of the queries, keys and values over all heads (``num_heads * d_head``).
      dropout: dropout rate on the attention weights.

    Example:
      >>> mha = MultiHeadAttention(num_heads=4, features=32)
      >>> x, pad = jnp.ones((2, 10, 32)), jnp.arange(10)[None] < jnp.array([[10], [6]])
      >>> variables = mha.init(jax.random.key(0), x, pad)
      >>> mha.apply(variables, x, pad).shape
      (2, 10, 32)
    """

    num_heads: int
    features: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """Self-attention over ``x: f32[batch, time, width]``.

        Args:
          x: f32[batch, time, width].
          mask: bool[batch, time] padding mask (True on valid steps), or bool[batch|1, heads|1, time, time] (True
            where query i may attend to key j).
          train: enables dropout.

        Returns:
          f32[batch, time, width]. Valid steps never depend on padded ones.
        """
        x = jnp.asarray(x)
        check_array(x, "MultiHeadAttention x", dims=("batch", "time", "width"))
        if self.features % self.num_heads:
            raise ValueError(f"features={self.features} must be a multiple of num_heads={self.num_heads}")
        batch, length, width = x.shape
        mask = _as_attention_mask(mask, batch, length, self.num_heads)
        head_dim = self.features // self.num_heads

        def heads(name: str) -> jax.Array:
            y = nn.Dense(self.features, name=name)(x)
            return y.reshape(batch, length, self.num_heads, head_dim).transpose(0, 2, 1, 3)

        q, k, v = heads("query"), heads("key"), heads("value")
        if self.is_mutable_collection("intermediates") or (train and self.dropout > 0):
            # The weights themselves are needed: to sow them or to drop some out. Otherwise a fused kernel may run.
            weights = attention_weights(q, k, mask)
            self.sow("intermediates", "attention_weights", weights)
            weights = nn.Dropout(self.dropout)(weights, deterministic=not train)
            context = jnp.einsum("bhqk,bhkd->bhqd", weights.astype(v.dtype), v)
        else:
            context = scaled_dot_product_attention(q, k, v, mask)
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, self.features)
        return nn.Dense(width, name="out")(context)
