"""The LSTM recurrence with a hand-written backward pass: the fast path behind `medjax.nn.recurrent.lstm_layer`.

Autodiff through `lax.scan` differentiates every step separately: its backward loop also accumulates the recurrent
weight gradient step by step. Here, as in cuDNN, the backward loop does only what is truly sequential (``dZ_t @ W_hᵀ``
and elementwise work) and the weight gradient is one large ``(T·B, H)ᵀ @ (T·B, 4H)`` matmul after the loop. On a
2-core CPU the per-step cost is mostly the number of small kernels XLA launches, so both loops are written to launch
few (see PERF-NOTES.md and the comments below).

The maths is the tutorial's `medjax.nn.recurrent.lstm_cell`; ``lstm_layer(..., implementation="scan")`` runs that
cell itself under `lax.scan`, and this kernel is tested to give the same outputs and gradients. Reverse-mode only:
`jax.custom_vjp` has no forward-mode rule (use ``implementation="scan"`` for `jax.jvp` / `jax.jacfwd`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _g_scale(hidden: int, dtype) -> jax.Array:
    """f32[4H]: 2 on the g (cell candidate) columns, 1 elsewhere (PyTorch gate order i, f, g, o).

    With the g pre-activations doubled once outside the loop, one sigmoid over all four gates gives every gate, since
    tanh(z) = 2σ(2z) − 1: one kernel per step instead of a sigmoid and a tanh on slices.
    """
    return jnp.concatenate(
        [jnp.ones((2 * hidden,), dtype), jnp.full((hidden,), 2, dtype), jnp.ones((hidden,), dtype)]
    )


def _forward(xw, w_h, mask, c0, h0, reverse):
    time, _, gates = xw.shape
    scale = _g_scale(gates // 4, xw.dtype)
    xw = xw * scale.reshape(1, 1, -1)
    w_h = w_h * scale.reshape(1, -1)
    ahead = -1 if reverse else 1

    # The next step's projected input is read one step early into the carry: XLA CPU fuses a per-step slice into the
    # gate arithmetic and compiles that slowly (~25 µs a step instead of ~4 µs); read ahead, it is a plain copy.
    # (At the last step the index is clamped and the value unused.)
    def step(carry, inputs):
        c, h, z_x = carry
        t, valid = inputs
        z_x_next = lax.dynamic_index_in_dim(xw, t + ahead, keepdims=False)
        act = jax.nn.sigmoid(z_x + h @ w_h)
        i, f, g, o = jnp.split(act, 4, axis=-1)
        c_new = f * c + i * (2 * g - 1)
        h_new = o * jnp.tanh(c_new)
        if valid is not None:
            c_new = jnp.where(valid[:, None], c_new, c)
            h_new = jnp.where(valid[:, None], h_new, h)
        # Saved for the backward pass: the gate activations and the cell state *entering* the step (the backward
        # loop carries the state leaving it), so no shifted copy of a stacked array is ever made.
        return (c_new, h_new, z_x_next), (act, c, h_new)

    first = xw[-1] if reverse else xw[0]
    (c, h, _), (acts, c_in, hs) = lax.scan(step, (c0, h0, first), (jnp.arange(time), mask), reverse=reverse)
    return hs, (c, h), (acts, c_in)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_recurrence(xw, w_h, mask, c0, h0, reverse=False):
    """Runs the LSTM recurrence over precomputed input projections, time-major.

    Args:
      xw: f32[time, batch, 4H], ``x_t W_x + b`` for every step, gate columns in order i, f, g, o.
      w_h: f32[H, 4H], the recurrent weights.
      mask: bool[time, batch] (True on valid steps) or None. On a False step the carry is held unchanged.
      c0: f32[batch, H], the initial cell state.
      h0: f32[batch, H], the initial hidden state.
      reverse: run from the last step to the first.

    Returns:
      ``(hs, (c, h))``: hs f32[time, batch, H] is the hidden state carried out of each step (held, not zeroed, on
      masked steps); ``(c, h)`` the final carry, each f32[batch, H].
    """
    hs, carry, _ = _forward(xw, w_h, mask, c0, h0, reverse)
    return hs, carry


def _recurrence_fwd(xw, w_h, mask, c0, h0, reverse):
    hs, carry, (acts, c_in) = _forward(xw, w_h, mask, c0, h0, reverse)
    return (hs, carry), (acts, c_in, hs, w_h, mask, h0, carry[0])


def _recurrence_bwd(reverse, residuals, cotangents):
    acts, c_in, hs, w_h, mask, h0, c_last = residuals
    d_hs, (d_c, d_h) = cotangents
    time, batch, gates = acts.shape
    w_h_t = w_h.T
    ahead = 1 if reverse else -1  # the step the backward loop visits next

    # The carry holds this step's saved values, read one step ahead as in the forward loop.
    def step(carry, inputs):
        dc, dh, c, act, c_prev, dh_out = carry
        t, valid = inputs
        ahead_values = tuple(lax.dynamic_index_in_dim(a, t + ahead, keepdims=False) for a in (acts, c_in, d_hs))
        dh = dh + dh_out
        i, f, g, o = jnp.split(act, 4, axis=-1)
        g = 2 * g - 1
        tanh_c = jnp.tanh(c)
        dc_t = dc + dh * o * (1 - tanh_c * tanh_c)
        # Gradients with respect to the *unscaled* pre-activations z = x W_x + h W_h + b (d tanh z = 1 − g²).
        dz = jnp.concatenate(
            [dc_t * g * i * (1 - i), dc_t * c_prev * f * (1 - f), dc_t * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
            axis=-1,
        )
        dc_prev = dc_t * f
        if valid is None:
            dh_prev = dz @ w_h_t
        else:
            # A held step contributes nothing to z and hands both carried gradients through unchanged.
            dz = jnp.where(valid[:, None], dz, 0)
            dh_prev = jnp.where(valid[:, None], dz @ w_h_t, dh)
            dc_prev = jnp.where(valid[:, None], dc_prev, dc)
        return (dc_prev, dh_prev, c_prev) + ahead_values, dz

    last = 0 if reverse else time - 1
    carry = (d_c, d_h, c_last, acts[last], c_in[last], d_hs[last])
    (dc0, dh0, *_), dz = lax.scan(step, carry, (jnp.arange(time), mask), reverse=not reverse)
    return dz, recurrent_weight_gradient(hs, h0, dz, reverse), None, dc0, dh0


def recurrent_weight_gradient(hs, h0, dz, reverse: bool) -> jax.Array:
    """dL/dW_h = Σ_t h_{t-1}ᵀ dz_t as one matmul over all steps: f32[H, 4H] from hs f32[T, B, H] (the state leaving
    each step), h0 f32[B, H] and dz f32[T, B, 4H]. Contracting the leading axis directly, rather than transposing
    first, spares XLA:CPU a transposed copy and measured faster for small H."""
    time, batch, hidden = hs.shape
    h_in = jnp.concatenate([hs[1:], h0[None]]) if reverse else jnp.concatenate([h0[None], hs[:-1]])
    contract_rows = (((0,), (0,)), ((), ()))
    return lax.dot_general(h_in.reshape(time * batch, hidden), dz.reshape(time * batch, -1), contract_rows)


lstm_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
