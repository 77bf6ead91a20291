"""Greedy and beam search over any step function, with fixed shapes so one `jit` serves every batch.

A decoder is a pure step ``step(params, state, tokens: i32[N]) -> (log_probs: f32[N, V], state)``: the previous
token in, the next token's log-probabilities out, the state (an LSTM carry, a key/value cache, anything a pytree
holds) carried along; ``params`` (the model's variables) passes unchanged. `greedy` runs it on ``N = batch``,
`beam_search` on ``N = batch * beam`` (build the state with `repeat_beams`).
Both run a `lax.while_loop` of at most ``max_len`` steps that stops once every row has emitted ``eos``; after ``eos`` a
row emits ``pad`` at no cost. Beam hypotheses are ranked by their summed log-probability during the search and,
at the end, by the GNMT length penalty ``score / ((5 + length) / 6) ** alpha`` (Wu et al. 2016; alpha 0 ranks by score).

Example:
  >>> tokens = greedy(step, variables, state, bos, 64, eos=2)          # i32[B, 64]; step must be hashable
  >>> best, score = beam_search(step, variables, repeat_beams(state, 4), bos, 64, beam=4, eos=2, alpha=0.6)
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

Step = Callable[[Any, Any, jax.Array], tuple[jax.Array, Any]]
NEG = -1e9  # a finite minus infinity: -inf - -inf would give NaN in the sums


def repeat_beams(state: Any, beam: int) -> Any:
    """Each row of every leaf repeated ``beam`` times along axis 0: ``[B, ...] -> [B * beam, ...]``."""
    return jax.tree_util.tree_map(lambda leaf: jnp.repeat(leaf, beam, axis=0), state)


def _after_eos(log_probs: jax.Array, finished: jax.Array, pad: int) -> jax.Array:
    """A finished row may only emit ``pad``, at log-probability 0, so its score stays what it was."""
    only_pad = jnp.full_like(log_probs, NEG).at[:, pad].set(0.0)
    return jnp.where(finished[:, None], only_pad, log_probs)


@functools.partial(jax.jit, static_argnums=(0, 4), static_argnames=("eos", "pad"))
def greedy(step: Step, params: Any, state: Any, bos: jax.Array, max_len: int, *, eos: int, pad: int = 0) -> jax.Array:
    """The most probable next token at each step.

    Args:
      step: the decoder step (static: a hashable function).
      params: passed to every step unchanged.
      state: its initial state for ``B`` rows.
      bos: i32[B] the first input token.
      max_len: the most tokens generated.

    Returns:
      i32[B, max_len]: the tokens, ``eos`` included, ``pad`` after it.
    """
    batch = bos.shape[0]

    def body(carry):
        t, last, state, finished, out = carry
        log_probs, state = step(params, state, last)
        token = jnp.argmax(_after_eos(log_probs, finished, pad), axis=-1).astype(jnp.int32)
        return t + 1, token, state, finished | (token == eos), out.at[:, t].set(token)

    init = (0, bos.astype(jnp.int32), state, jnp.zeros(batch, bool), jnp.full((batch, max_len), pad, jnp.int32))
    return jax.lax.while_loop(lambda c: (c[0] < max_len) & ~jnp.all(c[3]), body, init)[4]


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT's ``((5 + length) / 6) ** alpha``: divides a score so longer hypotheses are not punished for length."""
    return ((5.0 + length) / 6.0) ** alpha


@functools.partial(jax.jit, static_argnums=(0, 4), static_argnames=("beam", "eos", "pad", "alpha"))
def beam_search(step: Step, params: Any, state: Any, bos: jax.Array, max_len: int, *, beam: int, eos: int, pad: int = 0,
                alpha: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """The ``beam`` best partial hypotheses kept at each step; the best finished one returned per row.

    Args:
      step: the decoder step.
      state: its initial state for ``B * beam`` rows (`repeat_beams`), row ``b * beam + k`` for beam k of example b.
      bos: i32[B] the first input token.
      max_len: the most tokens generated; a hypothesis cut there counts as finished.
      beam: hypotheses kept; 1 is greedy search.
      alpha: length-penalty exponent for the final ranking.

    Returns:
      (i32[B, max_len] tokens, f32[B] their summed log-probability).
    """
    batch = bos.shape[0]
    # Only beam 0 is live at the start, so the first top-k draws distinct tokens rather than beam copies.
    scores = jnp.tile(jnp.where(jnp.arange(beam) == 0, 0.0, NEG), (batch, 1))
    tokens = jnp.full((batch, beam, max_len), pad, jnp.int32)
    last = jnp.repeat(bos.astype(jnp.int32), beam)

    def body(carry):
        t, last, state, scores, finished, lengths, tokens = carry
        log_probs, state = step(params, state, last)
        vocab = log_probs.shape[-1]
        log_probs = _after_eos(log_probs, finished.reshape(-1), pad).reshape(batch, beam, vocab)
        top, index = jax.lax.top_k((scores[:, :, None] + log_probs).reshape(batch, beam * vocab), beam)
        parent, token = index // vocab, (index % vocab).astype(jnp.int32)
        rows = (jnp.arange(batch)[:, None] * beam + parent).reshape(-1)
        state = jax.tree_util.tree_map(lambda leaf: leaf[rows], state)
        was_finished = jnp.take_along_axis(finished, parent, axis=1)
        lengths = jnp.take_along_axis(lengths, parent, axis=1) + (~was_finished).astype(jnp.int32)
        tokens = jnp.take_along_axis(tokens, parent[:, :, None], axis=1).at[:, :, t].set(token)
        finished = was_finished | (token == eos)
        return t + 1, token.reshape(-1), state, top, finished, lengths, tokens

    init = (0, last, state, scores, jnp.zeros((batch, beam), bool), jnp.zeros((batch, beam), jnp.int32), tokens)
    _, _, _, scores, _, lengths, tokens = jax.lax.while_loop(
        lambda c: (c[0] < max_len) & ~jnp.all(c[4]), body, init)
    best = jnp.argmax(scores / length_penalty(lengths.astype(scores.dtype), alpha), axis=1)
    return tokens[jnp.arange(batch), best], scores[jnp.arange(batch), best]
