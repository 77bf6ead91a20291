"""A linear-chain conditional random field as pure functions, with a thin Linen wrapper.

The score of a tag path y_1..y_n for emissions e (Lample et al. 2016, eq. 1, with explicit start and end scores) is

    s(y) = start[y_1] + sum_t e_t[y_t] + sum_{t>1} transitions[y_{t-1}, y_t] + end[y_n],

and log p(y | x) = s(y) - log Z with log Z = logsumexp over all K^n paths, computed in O(n K^2) by the forward
algorithm. Viterbi decoding is the same recursion with max in place of logsumexp, plus backtracking.

Masks: ``mask[b, t]`` is True on real tokens. A padded step is skipped entirely (the recursions carry their state
through it unchanged), so padding, wherever it sits, never changes a likelihood or a decoded tag. A sequence with no
real token has log-likelihood 0 and score 0.

Example:
  >>> ll = crf_log_likelihood(emissions, tags, mask, transitions, start, end)  # f32[batch]
  >>> best, score = viterbi_decode(emissions, mask, transitions, start, end)   # int32[batch, time], f32[batch]
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Added to the score of a forbidden transition: finite, so no inf - inf arises, yet far below any real path's score.
FORBIDDEN = -1e4


def _check(emissions, mask, transitions, start, end) -> None:
    """Shape checks done at trace time, so a wrong argument fails before compilation with a clear message."""
    if emissions.ndim != 3:
        raise ValueError(f"emissions must be f32[batch, time, tags], got shape {emissions.shape}")
    batch, time, k = emissions.shape
    if mask.shape != (batch, time):
        raise ValueError(f"mask must be bool[batch, time] = {(batch, time)}, got shape {mask.shape}")
    if transitions.shape != (k, k):
        raise ValueError(f"transitions must be f32[tags, tags] = {(k, k)}, got shape {transitions.shape}")
    if start.shape != (k,) or end.shape != (k,):
        raise ValueError(f"start and end must be f32[tags] = {(k,)}, got {start.shape} and {end.shape}")


def _time_major(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, 0, 1)


def crf_log_likelihood(
    emissions: jax.Array,
    tags: jax.Array,
    mask: jax.Array,
    transitions: jax.Array,
    start: jax.Array,
    end: jax.Array,
) -> jax.Array:
    """log p(tags | emissions) of each sequence, by the forward algorithm (``lax.scan`` over time, logsumexp).

    Args:
      emissions: f32[batch, time, K] unary scores (the tagger's per-token logits).
      tags: int[batch, time] gold tag ids in [0, K); values on padded steps are ignored.
      mask: bool[batch, time], True on real tokens.
      transitions: f32[K, K], ``transitions[i, j]`` scores tag i followed by tag j.
      start: f32[K] score of the first tag; end: f32[K] score of the last tag.

    Returns:
      f32[batch], the log-likelihood of each sequence (0 for an all-padding row). The training loss is its negated
      mean over the real sequences.
    """
    _check(emissions, mask, transitions, start, end)
    if tags.shape != mask.shape:
        raise ValueError(f"tags must be int[batch, time] = {mask.shape}, got shape {tags.shape}")
    batch, _, k = emissions.shape
    rows = jnp.arange(batch)

    def step(carry, inputs):
        alpha, gold, prev_tag, seen = carry
        emission, tag, valid = inputs
        # Log-sum over the previous tag of alpha + transition, for every current tag: f32[batch, K].
        after = jax.nn.logsumexp(alpha[:, :, None] + transitions[None], axis=1) + emission
        first = start[None] + emission
        new_alpha = jnp.where(seen[:, None], after, first)
        link = jnp.where(seen, transitions[prev_tag, tag], start[tag])
        new_gold = gold + link + emission[rows, tag]
        valid_k = valid[:, None]
        carry = (
            jnp.where(valid_k, new_alpha, alpha),
            jnp.where(valid, new_gold, gold),
            jnp.where(valid, tag, prev_tag),
            seen | valid,
        )
        return carry, None

    init = (
        jnp.zeros((batch, k), emissions.dtype),
        jnp.zeros((batch,), emissions.dtype),
        jnp.zeros((batch,), tags.dtype),
        jnp.zeros((batch,), bool),
    )
    (alpha, gold, last_tag, seen), _ = jax.lax.scan(
        step, init, (_time_major(emissions), _time_major(tags), _time_major(mask))
    )
    log_z = jax.nn.logsumexp(alpha + end[None], axis=-1)
    return jnp.where(seen, gold + end[last_tag] - log_z, 0.0)


def viterbi_decode(
    emissions: jax.Array,
    mask: jax.Array,
    transitions: jax.Array,
    start: jax.Array,
    end: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The highest-scoring tag path of each sequence (``lax.scan`` forward with max, then a reverse scan to backtrack).

    Args:
      emissions, mask, transitions, start, end: as in `crf_log_likelihood`.

    Returns:
      ``(tags, score)``: int32[batch, time] best tags, -1 on padded steps; f32[batch] the path's score s(y)
      (0 for an all-padding row).
    """
    _check(emissions, mask, transitions, start, end)
    batch, _, k = emissions.shape
    identity = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (batch, k))

    def forward(carry, inputs):
        delta, seen = carry
        emission, valid = inputs
        candidates = delta[:, :, None] + transitions[None]
        after = jnp.max(candidates, axis=1) + emission
        new_delta = jnp.where(seen[:, None], after, start[None] + emission)
        # A skipped step (padding) or the first real step points each tag back to itself, so backtracking passes
        # through unchanged.
        backpointer = jnp.where((valid & seen)[:, None], jnp.argmax(candidates, axis=1).astype(jnp.int32), identity)
        return (jnp.where(valid[:, None], new_delta, delta), seen | valid), backpointer

    init = (jnp.zeros((batch, k), emissions.dtype), jnp.zeros((batch,), bool))
    (delta, seen), backpointers = jax.lax.scan(forward, init, (_time_major(emissions), _time_major(mask)))
    final = delta + end[None]
    last = jnp.argmax(final, axis=-1).astype(jnp.int32)
    score = jnp.where(seen, jnp.max(final, axis=-1), 0.0)

    def backward(tag, backpointer):
        # The tag at step t is `tag`; the backpointer of step t gives the tag at step t - 1.
        return jnp.take_along_axis(backpointer, tag[:, None], axis=1)[:, 0], tag

    _, path = jax.lax.scan(backward, last, backpointers, reverse=True)
    return jnp.where(mask, _time_major(path), -1), score


def iob2_allowed(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Which IOB2 tag may follow which: ``I-X`` only after ``B-X`` or ``I-X``, and never first in a sentence.

    Args:
      tags: the tag names, e.g. ``("O", "B-Disease", "I-Disease")``.

    Returns:
      ``(transitions, start)``: bool[K, K] (``[i, j]``: tag j may follow tag i) and bool[K] (tag j may open a sentence).
    """
    inside = [tag[2:] if tag.startswith("I-") else None for tag in tags]
    start = np.array([kind is None for kind in inside])
    transitions = np.array([[inside[j] is None or tags[i][2:] == inside[j] and tags[i][:2] in ("B-", "I-")
                             for j in range(len(tags))] for i in range(len(tags))])
    return transitions, start


def constrain(scores: dict[str, jax.Array], allowed: tuple[np.ndarray, np.ndarray]) -> dict[str, jax.Array]:
    """CRF scores with forbidden transitions and starts pushed to `FORBIDDEN`, so Viterbi decodes only valid paths.

    Args:
      scores: ``{"transitions": f32[K, K], "start": f32[K], "end": f32[K]}``.
      allowed: `iob2_allowed`'s ``(transitions, start)`` masks.
    """
    transitions, start = allowed
    return {"transitions": jnp.where(transitions, scores["transitions"], FORBIDDEN),
            "start": jnp.where(start, scores["start"], FORBIDDEN), "end": scores["end"]}


class CRF(nn.Module):
    """Learned CRF scores over ``num_tags`` tags: ``transitions`` f32[K, K], ``start`` and ``end`` f32[K].

    ``__call__`` returns the per-sequence log-likelihood; ``decode`` (call with ``method="decode"``) the Viterbi path;
    ``scores`` the parameters themselves.
    Scores start at zero, so an untrained CRF decodes each token's argmax emission.
    """

    num_tags: int

    def setup(self):
        k = self.num_tags
        self.transitions = self.param("transitions", nn.initializers.zeros_init(), (k, k))
        self.start = self.param("start", nn.initializers.zeros_init(), (k,))
        self.end = self.param("end", nn.initializers.zeros_init(), (k,))

    def __call__(self, emissions: jax.Array, tags: jax.Array, mask: jax.Array) -> jax.Array:
        """f32[batch] log p(tags | emissions); see `crf_log_likelihood`."""
        return crf_log_likelihood(emissions, tags, mask, self.transitions, self.start, self.end)

    def scores(self) -> dict[str, jax.Array]:
        """The CRF's parameters ``{"transitions": f32[K, K], "start": f32[K], "end": f32[K]}``, to hand to the pure
        functions elsewhere (a tagger returns them beside its emissions)."""
        return {"transitions": self.transitions, "start": self.start, "end": self.end}

    def decode(self, emissions: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(int32[batch, time] best tags with -1 on padding, f32[batch] scores); see `viterbi_decode`."""
        return viterbi_decode(emissions, mask, self.transitions, self.start, self.end)
