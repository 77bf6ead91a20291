"""The LSTM recurrence with a hand-written backward pass: the fast path behind `medjax.nn.recurrent.lstm_layer`.

Autodiff through `lax.scan` differentiates every step separately: the backward loop accumulates the recurrent weight
gradient step by step and replays the per-step slicing of the forward pass. Here, as in cuDNN, the backward loop does
only what is truly sequential (``dZ_t @ W_hᵀ`` and elementwise work) and the weight gradient is one large matmul after
the loop. Measured on a 2-core CPU (PERF-NOTES.md) this is what brought the tutorial LSTM below PyTorch's oneDNN LSTM.

The maths is the tutorial's (see `medjax.nn.recurrent.lstm_cell`); ``reference == fast`` for outputs and gradients is
tested in tests/nn/test_recurrent.py. Reverse-mode only: `jax.custom_vjp` has no forward-mode rule (use the
``implementation="scan"`` reference for `jax.jvp` / `jax.jacfwd`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _g_scale(hidden: int, dtype) -> jax.Array:
    """f32[4H]: 2 on the g (cell candidate) columns, 1 elsewhere (PyTorch gate order i, f, g, o).

    With the g pre-activations doubled once outside the loop, one sigmoid over all four gates gives every gate inside
    it, since tanh(z) = 2σ(2z) − 1: one kernel per step instead of a sigmoid and a tanh on slices.
    """
    return jnp.concatenate(
        [jnp.ones((2 * hidden,), dtype), jnp.full((hidden,), 2, dtype), jnp.ones((hidden,), dtype)]
    )


def _shifted(xs: jax.Array, reverse: bool) -> jax.Array:
    """The input of the step that follows each step in scan order, zeros after the last one."""
    pad = jnp.zeros_like(xs[:1])
    return jnp.concatenate([pad, xs[:-1]]) if reverse else jnp.concatenate([xs[1:], pad])


def _previous(stacked: jax.Array, initial: jax.Array, reverse: bool) -> jax.Array:
    """The carry that entered each step: the stacked carries shifted one step back in scan order."""
    first = initial[None]
    return jnp.concatenate([stacked[1:], first]) if reverse else jnp.concatenate([first, stacked[:-1]])


def _forward(xw, w_h, mask, c0, h0, reverse):
    hidden = h0.shape[-1]
    scale = _g_scale(hidden, xw.dtype)
    xw = xw * scale.reshape(1, 1, -1)
    w_h = w_h * scale.reshape(1, -1)

    # The next step's projected input rides in the carry: XLA CPU compiles a per-step slice fused into the gate
    # arithmetic slowly (~25 µs a step instead of ~4 µs); slicing it one step early keeps the slice a plain copy.
    def step(carry, inputs):
        c, h, z_x = carry
        z_x_next, valid = inputs
        act = jax.nn.sigmoid(z_x + h @ w_h)
        i, f, g, o = jnp.split(act, 4, axis=-1)
        c_new = f * c + i * (2 * g - 1)
        h_new = o * jnp.tanh(c_new)
        if valid is not None:
            c_new = jnp.where(valid[:, None], c_new, c)
            h_new = jnp.where(valid[:, None], h_new, h)
        return (c_new, h_new, z_x_next), (act, c_new, h_new)

    first = xw[-1] if reverse else xw[0]
    (c, h, _), (acts, cs, hs) = lax.scan(step, (c0, h0, first), (_shifted(xw, reverse), mask), reverse=reverse)
    return hs, (c, h), (acts, cs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_recurrence(xw, w_h, mask, c0, h0, reverse=False):
    """Runs the LSTM recurrence over precomputed input projections, time-major.

    Args:
      xw: f32[time, batch, 4 * hidden], ``x_t @ W_x + b`` for every step, gate columns in order i, f, g, o.
      w_h: f32[hidden, 4 * hidden], the recurrent weights.
      mask: bool[time, batch] (True on valid steps) or None. On a False step the carry is held unchanged.
      c0: f32[batch, hidden], the initial cell state.
      h0: f32[batch, hidden], the initial hidden state.
      reverse: run from the last step to the first.

    Returns:
      ``(hs, (c, h))``: hs f32[time, batch, hidden] is the hidden state carried out of each step (held, not zeroed, on
      masked steps); ``(c, h)`` the final carry, each f32[batch, hidden].
    """
    hs, carry, _ = _forward(xw, w_h, mask, c0, h0, reverse)
    return hs, carry


def _recurrence_fwd(xw, w_h, mask, c0, h0, reverse):
    hs, carry, (acts, cs) = _forward(xw, w_h, mask, c0, h0, reverse)
    return (hs, carry), (acts, cs, hs, w_h, mask, c0, h0)


def _recurrence_bwd(reverse, residuals, cotangents):
    acts, cs, hs, w_h, mask, c0, h0 = residuals
    d_hs, (d_c, d_h) = cotangents
    hidden = h0.shape[-1]
    i, f, g, o = jnp.split(acts, 4, axis=-1)
    g = 2 * g - 1
    c_prev = _previous(cs, c0, reverse)
    tanh_c = jnp.tanh(cs)
    # Everything that does not depend on the carried gradients, for all steps at once (vectorised, outside the
    # loop). With dc_t = dc + dh ⊙ o(1 − tanh²c), the pre-activation gradient (w.r.t. the *unscaled* z, d tanh = 1 − g²)
    # is dz = [dc_t, dc_t, dc_t, dh] ⊙ k, and dc_{t−1} = dc_t ⊙ f.
    k = jnp.concatenate([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], axis=-1)
    p = o * (1 - tanh_c * tanh_c)
    held = None
    if mask is not None:
        # A held step contributes nothing to z and hands both carried gradients through unchanged.
        valid = mask[:, :, None]
        k, p, f = jnp.where(valid, k, 0), jnp.where(valid, p, 0), jnp.where(valid, f, 1)
        held = jnp.broadcast_to(~valid, p.shape).astype(p.dtype)
    w_h_t = w_h.T

    def step(carry, inputs):
        dc, dh = carry
        k_t, p_t, f_t, dh_out, held_t = inputs
        dh = dh + dh_out
        dc_t = dc + dh * p_t
        dz = jnp.concatenate([dc_t, dc_t, dc_t, dh], axis=-1) * k_t
        dh_prev = dz @ w_h_t
        if held_t is not None:
            dh_prev = dh_prev + dh * held_t
        return (dc_t * f_t, dh_prev), dz

    (dc0, dh0), dz = lax.scan(step, (d_c, d_h), (k, p, f, d_hs, held), reverse=not reverse)
    time, batch, gates = dz.shape
    h_prev = _previous(hs, h0, reverse).reshape(time * batch, hidden)
    # One (T·B, H)ᵀ @ (T·B, 4H) matmul instead of T small ones inside the loop.
    d_w_h = h_prev.T @ dz.reshape(time * batch, gates)
    return dz, d_w_h, None, dc0, dh0


lstm_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
