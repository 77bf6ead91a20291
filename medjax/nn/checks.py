"""Input validators that fail early, with a message naming what was expected and what came.

Every check reads only ``shape`` and ``dtype``, which are static under ``jit``, so the checks run at trace time on
NumPy arrays, ``jax.Array``s, tracers and ``jax.ShapeDtypeStruct``s alike, before XLA compiles anything. A wrong dtype
raises ``TypeError``; a wrong rank or size raises ``ValueError``.

Example:
  >>> import numpy as np
  >>> check_array(np.zeros((2, 28, 28), np.uint8), "images", dims=IMAGE_DIMS)
  Traceback (most recent call last):
  ...
  TypeError: images: expected float array of rank 4 [batch, height, width, channels], got uint8 array of shape (2, 28, 28)
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Axis names of an NHWC image batch, the layout of every image model in medjax.
IMAGE_DIMS = ("batch", "height", "width", "channels")

# dtype kind letter (as in ``numpy.dtype.kind``) -> the NumPy abstract type that tests it, and its name in messages.
# ``np.issubdtype`` is used rather than ``dtype.kind`` because bfloat16's kind is "V", yet it is a float.
_KINDS = {
    "f": (np.floating, "float"),
    "i": (np.signedinteger, "signed integer"),
    "u": (np.unsignedinteger, "unsigned integer"),
    "b": (np.bool_, "bool"),
    "c": (np.complexfloating, "complex"),
}


def _kind_name(dtype_kind: str) -> str:
    if set(dtype_kind) == {"i", "u"}:
        return "integer"
    return " or ".join(_KINDS[k][1] for k in dtype_kind)


def _dtype_matches(dtype: Any, dtype_kind: str) -> bool:
    # ml_dtypes (bfloat16, float8) register as floating subtypes, but NumPy cannot see that; JAX's issubdtype can.
    return any(jnp.issubdtype(dtype, _KINDS[k][0]) for k in dtype_kind)


def describe(x: Any) -> str:
    """Says what an input is, for error messages: ``"uint8 array of shape (2, 28, 28)"`` or ``"list"``."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{np.dtype(x.dtype).name} array of shape {tuple(x.shape)}"
    return type(x).__name__


def check_array(
    x: Any,
    name: str,
    *,
    rank: int | None = None,
    dims: Sequence[str] | None = None,
    shape: Sequence[int | None] | None = None,
    last_dim: int | None = None,
    dtype_kind: str | None = "f",
    hint: str | None = None,
) -> None:
    """Raises a clear error unless ``x`` is an array of the expected kind, rank and sizes.

    Args:
      x: the value to check (anything with ``shape`` and ``dtype``; other values fail with ``TypeError``).
      name: what ``x`` is called at the public boundary, e.g. ``"images"``; it starts the message.
      rank: the expected number of axes. Implied by ``dims`` or ``shape`` when those are given.
      dims: names of the axes, e.g. ``IMAGE_DIMS``; shown in the message as ``[batch, height, width, channels]``.
      shape: expected sizes per axis, ``None`` for any size, e.g. ``(batch, time)`` to match a mask to its inputs.
      last_dim: expected size of the last axis (a shorthand for ``shape=(None, ..., last_dim)``).
      dtype_kind: accepted dtype kinds as ``numpy.dtype.kind`` letters: ``"f"`` float, ``"i"`` signed, ``"u"``
        unsigned, ``"iu"`` any integer, ``"b"`` bool, ``"c"`` complex; ``None`` accepts any dtype.
      hint: a sentence appended to the message, telling the user how to fix the input.

    Raises:
      TypeError: ``x`` is not an array, or its dtype is not of ``dtype_kind``.
      ValueError: its rank or one of its sizes differs from what was asked.
    """
    if dims is not None:
        rank = len(dims)
    if shape is not None:
        if rank is not None and len(shape) != rank:
            raise ValueError(f"check_array({name!r}): shape {tuple(shape)} has {len(shape)} axes but rank is {rank}")
        rank = len(shape)
    if last_dim is not None:
        if rank is None:
            raise ValueError(f"check_array({name!r}): last_dim needs rank, dims or shape")
        shape = list(shape) if shape is not None else [None] * rank
        shape[-1] = last_dim

    kind = f"{_kind_name(dtype_kind)} array" if dtype_kind else "array"
    expected = kind
    if shape is not None and any(s is not None for s in shape):
        sizes = ["*" if s is None else str(s) for s in shape]
        expected += f" of shape ({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"
        if dims is not None:
            expected += " [" + ", ".join(dims) + "]"
    elif rank is not None:
        expected += f" of rank {rank}"
        if dims is not None:
            expected += " [" + ", ".join(dims) + "]"
    message = f"{name}: expected {expected}, got {describe(x)}"
    if hint:
        message += f". {hint}"

    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(message)
    if dtype_kind and not _dtype_matches(x.dtype, dtype_kind):
        raise TypeError(message)
    if rank is not None and len(x.shape) != rank:
        raise ValueError(message)
    if shape is not None and any(s is not None and s != got for s, got in zip(shape, x.shape)):
        raise ValueError(message)


def check_images(x: Any, name: str = "images", *, channels: int | None = None) -> None:
    """Raises a clear error unless ``x`` is a float NHWC image batch, f32[batch, height, width, channels].

    Integer pixels (uint8 as stored by MedMNIST and most image files) are refused with a ``TypeError`` that says how
    to scale them, rather than silently cast: a model trained on [0, 1] floats gives nonsense on [0, 255] integers.

    Args:
      x: the images.
      name: what they are called in the message.
      channels: the expected channel count, if known.
    """
    integer = hasattr(x, "dtype") and _dtype_matches(x.dtype, "iub")
    check_array(
        x,
        name,
        dims=IMAGE_DIMS,
        last_dim=channels,
        hint=f"Scale integer pixels to float first, e.g. {name}.astype(np.float32) / 255" if integer else None,
    )


def check_labels(labels: Any, name: str, num_classes: int, *, shape: Sequence[int | None] | None = None) -> None:
    """Raises a clear error unless ``labels`` are integer class ids in ``[0, num_classes)``.

    The range is checked only on concrete (host) arrays: under ``jit`` the values are unknown, so only the dtype and
    shape are checked there. Data loaders and losses call this on the host, once per data set or batch.

    Args:
      labels: int[...] class ids.
      name: what the labels are called, e.g. ``"labels"``; it starts the message.
      num_classes: the number of classes; valid ids are ``0 .. num_classes - 1``.
      shape: expected sizes per axis (``None`` for any), e.g. ``(batch,)``.

    Raises:
      TypeError: the labels are not an integer array.
      ValueError: their shape is wrong, or a value lies outside ``[0, num_classes)``.
    """
    check_array(labels, name, shape=shape, dtype_kind="iu")
    concrete = isinstance(labels, np.ndarray) or (
        isinstance(labels, jax.Array) and not isinstance(labels, jax.core.Tracer)
    )
    if not concrete or np.size(labels) == 0:
        return
    values = np.asarray(labels)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name}: expected class ids in [0, {num_classes}) for {num_classes} classes, "
            f"got values in [{low}, {high}] ({describe(labels)})"
        )


def broadcasts_to(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without adding axes to ``target``."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(tuple(shape)), reversed(tuple(target))))


def check_attention(q: Any, k: Any, v: Any, mask: Any = None, bias: Any = None) -> tuple[int, ...]:
    """Raises a clear error unless q, k, v, mask and bias fit ``softmax(q kᵀ / √d_k + bias) v``.

    Args:
      q: f[..., T_q, d_k]; k: f[..., T_k, d_k] with the leading axes of q; v: f[..., T_k, d_v] with those of k.
      mask: None or bool broadcastable to the scores ``[..., T_q, T_k]``.
      bias: None or float broadcastable to the scores.

    Returns:
      The scores' shape ``[..., T_q, T_k]``.
    """
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.ndim < 2:
            raise ValueError(f"{name} must be [..., time, d] (rank >= 2), got shape {a.shape}")
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{name} must be a floating array, got dtype {a.dtype}")
    if q.ndim != k.ndim or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"q and k must have the same leading axes [..., time, d], got q {q.shape} and k {k.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same d (last axis), got q {q.shape} and k {k.shape}")
    if v.ndim != k.ndim or v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"v must be [..., T_k, d_v] with the leading axes and T_k of k, got k {k.shape}, v {v.shape}")
    scores = tuple(q.shape[:-1]) + tuple(k.shape[-2:-1])
    if mask is not None:
        if mask.dtype != jnp.bool_:
            raise TypeError(
                f"mask must be bool (True where attending is allowed), got dtype {mask.dtype}; "
                "pass an additive mask as bias"
            )
        if not broadcasts_to(mask.shape, scores):
            raise ValueError(f"mask of shape {mask.shape} does not broadcast to the scores [..., T_q, T_k] {scores}")
    if bias is not None:
        if not jnp.issubdtype(bias.dtype, jnp.floating):
            raise TypeError(f"bias must be a floating array, got dtype {bias.dtype}")
        if not broadcasts_to(bias.shape, scores):
            raise ValueError(f"bias of shape {bias.shape} does not broadcast to the scores [..., T_q, T_k] {scores}")
    return scores
