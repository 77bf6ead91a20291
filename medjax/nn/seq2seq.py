"""An LSTM encoder–decoder with additive (Bahdanau) attention over the source: the model attention was born in.

`additive_attention` is Bahdanau et al. (2015)'s equation as a plain function,
``e_j = vᵀ tanh(W_s s + W_h h_j)``, ``α = softmax(e)`` over the unmasked source, ``c = Σ_j α_j h_j``.
`LSTMSeq2Seq` encodes with medjax's `LSTM` and decodes one token at a time with `lstm_cell`: the input at step t is
``[embed(y_{t-1}); c_t]`` with ``c_t`` attended from the previous decoder state, the output reads ``[s_t; c_t]``.
Teacher forcing (``__call__``) runs the very `decode_step` that greedy and beam search run
(`medjax.nn.decoding`), so training and generation cannot drift apart.

Example:
  >>> model = LSTMSeq2Seq(vocab=4000, embed=128, hidden=256)
  >>> logits = model.apply(variables, src, src_mask, tgt_in)               # f32[B, T_tgt, vocab]
  >>> state = model.apply(variables, src, src_mask, method=model.start)    # then decode_step per token
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.recurrent import LSTM, init_lstm_params, lstm_cell


def additive_attention(params: dict, query: jax.Array, keys: jax.Array, mask: jax.Array | None = None):
    """Bahdanau's additive attention.

    Args:
      params: ``{"w_q": f32[Q, A], "w_k": f32[K, A], "v": f32[A]}``.
      query: f32[B, Q] the decoder state.
      keys: f32[B, T, K] the encoder outputs (also the values).
      mask: bool[B, T], True on real source tokens.

    Returns:
      ``(context f32[B, K], weights f32[B, T])``; the weights sum to one over the unmasked source, zero elsewhere.
    """
    scores = jnp.tanh((query @ params["w_q"])[:, None, :] + keys @ params["w_k"]) @ params["v"]
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    if mask is not None:
        weights = jnp.where(mask, weights, 0.0)
    return jnp.einsum("bt,btk->bk", weights, keys), weights


class LSTMSeq2Seq(nn.Module):
    """Embeddings shared by source and target (one joint subword vocabulary), an LSTM encoder, an attentive decoder.

    Attributes:
      vocab: the joint subword vocabulary size.
      embed: embedding width.
      hidden: LSTM width of encoder and decoder; attention width too.
    """

    vocab: int
    embed: int = 128
    hidden: int = 256

    def setup(self):
        self.embedding = nn.Embed(self.vocab, self.embed)
        self.encoder = LSTM(self.hidden)
        init = nn.initializers.lecun_normal()
        self.attention = {"w_q": self.param("w_q", init, (self.hidden, self.hidden)),
                          "w_k": self.param("w_k", init, (self.hidden, self.hidden)),
                          "v": self.param("v", nn.initializers.normal(self.hidden ** -0.5), (self.hidden,))}
        self.cell = self.param("decoder", init_lstm_params, self.embed + self.hidden, self.hidden)
        self.bridge = nn.Dense(self.hidden)
        self.out = nn.Dense(self.vocab)

    def start(self, src: jax.Array, src_mask: jax.Array) -> dict:
        """The decoder's initial state: ``{"c", "h": f32[B, H], "memory": f32[B, T, H], "mask": bool[B, T]}``."""
        memory, (_, h) = self.encoder(self.embedding(src), src_mask)
        h = jnp.tanh(self.bridge(h[-1]))
        return {"c": jnp.zeros_like(h), "h": h, "memory": memory, "mask": src_mask}

    def decode_step(self, state: dict, token: jax.Array):
        """One step: i32[B] previous token -> (f32[B, vocab] logits, the next state)."""
        context, _ = additive_attention(self.attention, state["h"], state["memory"], state["mask"])
        x = jnp.concatenate([self.embedding(token), context], axis=-1)
        (c, h), _ = lstm_cell(self.cell, (state["c"], state["h"]), x)
        logits = self.out(jnp.concatenate([h, context], axis=-1))
        return logits, state | {"c": c, "h": h}

    def __call__(self, src: jax.Array, src_mask: jax.Array, tgt_in: jax.Array) -> jax.Array:
        """Teacher forcing: i32[B, S] source, bool[B, S], i32[B, T] shifted target -> f32[B, T, vocab] logits."""
        state = self.start(src, src_mask)
        logits = []
        # A Python loop over a fixed T unrolls under jit; Linen's setup-bound submodules cannot enter lax.scan
        # directly, and T is a length bucket (a few values), so this compiles a few times only.
        for t in range(tgt_in.shape[1]):
            step_logits, state = self.decode_step(state, tgt_in[:, t])
            logits.append(step_logits)
        return jnp.stack(logits, axis=1)
