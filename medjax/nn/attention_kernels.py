"""Which kernel computes scaled dot-product attention: the `jnp` formula, XLA's or cuDNN's, through `jax.nn`.

`dot_product_attention` is the checked entry point: it validates q, k, v, mask and bias once, then runs

- ``"jnp"``: `medjax.nn.attention.scaled_dot_product_attention`, the tutorial's formula. On CPU it is the default up
  to `BLOCKWISE_FROM` keys, measured faster here than `jax.nn.dot_product_attention`'s XLA path (PERF-NOTES).
- ``"blockwise"``: `medjax.nn.blockwise_attention.blockwise_attention`, the same numbers one block of `BLOCK` keys at
  a time in O(T) memory; the CPU default beyond `BLOCKWISE_FROM` keys, where the formula's ``[..., T, T]`` scores
  cost more than the loop (`python -m benchmarks.attention_kernels`, forward + backward on a 2-core AMD EPYC: 0.94×
  the formula's time at T = 512, 0.65× at 1,024; at T = 256 the transformer's train step gained nothing, 1.04×, and
  the tutorial's short sequences ran 2.9× slower, so shorter inputs keep the formula).
- ``"cudnn"``: cuDNN's fused flash attention (``jax.nn.dot_product_attention(implementation="cudnn")``), the default
  on an NVIDIA GPU for the inputs it can take (`choose_implementation`).
- ``"xla"``: ``jax.nn.dot_product_attention(implementation="xla")``, the default on other accelerators.

All three give the same maths and the same rule for a fully masked row (weights and output 0).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from medjax.nn.attention import scaled_dot_product_attention
from medjax.nn.blockwise_attention import blockwise_attention
from medjax.nn.checks import check_attention

IMPLEMENTATIONS = ("jnp", "blockwise", "xla", "cudnn")
# On CPU, attention over more keys than this runs blockwise, in blocks of BLOCK keys (benchmarks/RESULTS.md).
BLOCKWISE_FROM, BLOCK = 256, 256


def default_platform() -> tuple[str, str]:
    """The default backend (``"cpu"``, ``"gpu"``, ``"tpu"``) and, on an NVIDIA GPU, its compute capability, else ""."""
    platform = jax.default_backend()
    if platform != "gpu":
        return platform, ""
    return platform, str(getattr(jax.local_devices()[0], "compute_capability", ""))


def _cudnn_ineligible(q, k, v, masked: bool, platform: str, capability: str) -> str | None:
    """Why cuDNN's flash attention (via `jax.nn.dot_product_attention`) cannot run these inputs, or None if it can.

    The conditions are those of jax's ``check_layout`` / ``check_is_flash_attention`` that hold from jax 0.4.35 to
    0.10 (later versions allow head dims up to 256 on Hopper; 128 is the common bound).
    """
    major = capability.split(".")[0]
    if platform != "gpu" or not major.isdigit():
        return f"it needs an NVIDIA (CUDA) GPU, the default backend is {platform}"
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


def choose_implementation(q, k, v, mask=None, bias=None, *, platform: str | None = None, capability: str = "") -> str:
    """The kernel `dot_product_attention` uses when ``implementation=None``, judged from static shapes.

    Args:
      q, k, v, mask, bias: as for `dot_product_attention` (only shapes and dtypes are read).
      platform: ``"cpu"``, ``"gpu"``, ``"tpu"``; None reads `default_platform` (and then ``capability`` too).
      capability: the GPU's CUDA compute capability, e.g. ``"9.0"``; "" for none.

    Returns:
      ``"jnp"`` on CPU up to `BLOCKWISE_FROM` keys and ``"blockwise"`` beyond (without a bias); ``"jnp"`` also when
      `jax.nn.dot_product_attention` cannot take the inputs (d_v != d_k or mixed dtypes);
      ``"cudnn"`` on a CUDA GPU for eligible inputs (f16/bf16, head dim a multiple of 8 up to 128, even lengths with
      a mask), ``"xla"`` otherwise.
    """
    if platform is None:
        platform, capability = default_platform()
    if platform == "cpu":
        return "blockwise" if bias is None and k.shape[-2] > BLOCKWISE_FROM else "jnp"
    if _cudnn_ineligible(q, k, v, mask is not None or bias is not None, platform, capability) is None:
        return "cudnn"
    if v.shape[-1] != q.shape[-1] or not q.dtype == k.dtype == v.dtype:
        return "jnp"
    return "xla"


def _jax_nn_attention(q, k, v, mask, bias, implementation):
    """`jax.nn.dot_product_attention` on our ``[..., T, d]`` layout, with fully masked rows set to 0."""
    if v.shape[-1] != q.shape[-1] or not q.dtype == k.dtype == v.dtype:
        raise ValueError(
            f"implementation={implementation!r} needs q, k, v of one dtype and one d, got "
            f"q {q.shape} {q.dtype}, k {k.shape} {k.dtype}, v {v.shape} {v.dtype}; use implementation='jnp'"
        )
    scores = q.shape[:-1] + k.shape[-2:-1]
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


def dot_product_attention(q, k, v, mask=None, bias=None, implementation: str | None = None) -> jax.Array:
    """`scaled_dot_product_attention` after checking its inputs, run by the kernel ``implementation`` names.

    Args:
      q: f[..., T_q, d_k] queries; any leading axes (batch, heads, ...).
      k: f[..., T_k, d_k] keys, with the leading axes of ``q``.
      v: f[..., T_k, d_v] values, with the leading axes and T_k of ``k``.
      mask: optional bool broadcastable to ``[..., T_q, T_k]``, True where attending is allowed.
      bias: optional float broadcastable to ``[..., T_q, T_k]``, added to the scaled scores.
      implementation: None chooses (`choose_implementation`); ``"jnp"`` forces the formula, ``"blockwise"`` the
        same in blocks of keys, ``"xla"`` and
        ``"cudnn"`` force `jax.nn.dot_product_attention` with that implementation.

    Returns:
      f[..., T_q, d_v], the dtype of ``v``.

    Raises:
      TypeError, ValueError: at trace time, for inputs that do not fit the formula or the kernel asked for.

    Example:
      >>> q = k = v = jnp.ones((2, 4, 10, 8))  # [batch, heads, time, d]
      >>> pad = jnp.arange(10)[None] < jnp.array([[10], [6]])  # bool[batch, time]
      >>> dot_product_attention(q, k, v, mask=pad[:, None, None, :]).shape
      (2, 4, 10, 8)
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    mask = None if mask is None else jnp.asarray(mask)
    bias = None if bias is None else jnp.asarray(bias)
    check_attention(q, k, v, mask, bias)
    if implementation is None:
        implementation = choose_implementation(q, k, v, mask, bias)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be None or one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "jnp":
        return scaled_dot_product_attention(q, k, v, mask, bias)
    if implementation == "blockwise":
        if bias is not None:
            raise ValueError("implementation='blockwise' takes a mask, not a bias; use implementation='jnp'")
        return blockwise_attention(q, k, v, mask, BLOCK)
    if implementation == "cudnn":
        reason = _cudnn_ineligible(q, k, v, mask is not None or bias is not None, *default_platform())
        if reason is not None:
            raise ValueError(f"implementation='cudnn' cannot run these inputs: {reason}")
    return _jax_nn_attention(q, k, v, mask, bias, implementation)
