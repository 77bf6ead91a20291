"""The LSTM recurrence as one C++ call on CPU (`_lstm_cpu.cc` through `jax.ffi`), with its hand-written backward.

Same signature and maths as `medjax.nn.lstm_fast.lstm_recurrence`, the XLA loop it replaces: the projected inputs
``x_t W_x + b`` come in for all steps, the recurrent weight gradient is one large matmul after the backward call, and
what the backward needs of the forward (gate activations, cell states) is saved by the forward call. The C++ loop
splits the batch rows once over XLA's intra-op threads; rows never interact, so the threads never wait on each other
inside the sequence.

`pip install` builds the library (`medjax/nn/_lstm_cpu*.so`, see setup.py). When it is absent or does not load,
`available()` is False, `medjax.nn.recurrent` falls back to the XLA loop and says so once on stderr.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np

from medjax.nn import lstm_fast

_TARGETS = {"medjax_lstm_forward": "MedjaxLstmForward", "medjax_lstm_backward": "MedjaxLstmBackward"}


@functools.cache
def why_unavailable() -> str | None:
    """Registers the FFI targets on first call; returns None when they are registered, else why they could not be."""
    spec = importlib.util.find_spec("medjax.nn._lstm_cpu")
    if spec is None or spec.origin is None:
        return "the extension medjax/nn/_lstm_cpu was not built by pip install"
    try:
        library = ctypes.CDLL(spec.origin)
        for target, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    except (OSError, AttributeError) as err:  # a library built for another jaxlib or machine
        return f"{spec.origin} did not load ({err})"
    return None


def available() -> bool:
    """True when the C++ kernel is built and registered (it runs on CPU only)."""
    return why_unavailable() is None


@functools.cache
def say_fallback() -> None:
    """Once per process: why the LSTMs run the XLA loop instead of the C++ kernel."""
    print(f"medjax: the fused CPU LSTM kernel is unavailable: {why_unavailable()}; using the XLA loop (slower, same results)",
          file=sys.stderr)


def _mask(mask, time: int, batch: int):
    return jnp.ones((time, batch), bool) if mask is None else mask


def _ffi_call(target: str, shapes):
    """`jax.ffi.ffi_call` of a registered target, f32 results; ensembles under `vmap` call it once per member."""
    if not available():
        raise RuntimeError(f"medjax's LSTM kernel is unavailable: {why_unavailable()}")
    results = tuple(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes)
    return jax.ffi.ffi_call(target, results, vmap_method="sequential")


def _forward(xw, w_h, mask, c0, h0, reverse):
    time, batch, gates = xw.shape
    call = _ffi_call("medjax_lstm_forward", [(time, batch, gates // 4), (time, batch, gates // 4), xw.shape])
    hs, cs, acts = call(xw, w_h, _mask(mask, time, batch), c0, h0, reverse=np.int32(reverse))
    last = 0 if reverse else time - 1
    return hs, cs, acts, (cs[last], hs[last])


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_recurrence(xw, w_h, mask, c0, h0, reverse=False):
    """`medjax.nn.lstm_fast.lstm_recurrence` (same arguments, results and gradients) in one C++ call: float32, CPU."""
    hs, _, _, carry = _forward(xw, w_h, mask, c0, h0, reverse)
    return hs, carry


def _recurrence_fwd(xw, w_h, mask, c0, h0, reverse):
    hs, cs, acts, carry = _forward(xw, w_h, mask, c0, h0, reverse)
    return (hs, carry), (acts, cs, hs, w_h, mask, c0, h0)


def _recurrence_bwd(reverse, residuals, cotangents):
    acts, cs, hs, w_h, mask, c0, h0 = residuals
    d_hs, (d_c, d_h) = cotangents
    time, batch, gates = acts.shape
    call = _ffi_call("medjax_lstm_backward", [acts.shape, (batch, gates // 4), (batch, gates // 4)])
    dz, dc0, dh0 = call(acts, cs, c0, w_h, _mask(mask, time, batch), d_hs, d_c, d_h, reverse=np.int32(reverse))
    return dz, lstm_fast.recurrent_weight_gradient(hs, h0, dz, reverse), None, dc0, dh0


lstm_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
