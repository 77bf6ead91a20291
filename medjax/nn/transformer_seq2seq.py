"""A transformer encoder–decoder built on medjax's `MultiHeadAttention`, with a key/value cache for decoding.

Encoder: medjax's `TransformerEncoder`. Decoder block: causal self-attention, cross-attention over the encoder
output, a feed-forward layer, each pre-norm and residual (Vaswani et al. 2017, pre-LN as in most modern recipes).
One embedding matrix serves source, target and the output projection (Press & Wolf 2017; a joint subword vocabulary).
`decode_step` writes the new token's keys and values into a fixed-size cache ``f32[B, max_len, heads, d]`` at
position ``t`` and attends to positions ``<= t``: the same numbers as recomputing the whole prefix (tested).

Example:
  >>> model = TransformerSeq2Seq(vocab=4000, width=128, heads=4, layers=2, max_len=96)
  >>> logits = model.apply(variables, src, src_mask, tgt_in)                   # teacher forcing
  >>> state = model.apply(variables, src, src_mask, method=model.start)        # then decode_step per token
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.encoder import TransformerEncoder
from medjax.nn.multihead import MultiHeadAttention
from medjax.nn.positions import sinusoidal_positions


class DecoderBlock(nn.Module):
    """Causal self-attention over the cached keys/values, cross-attention over the encoder's, then the MLP; each
    pre-norm and residual. Both attentions are medjax's `MultiHeadAttention`, used in its two halves."""

    width: int
    heads: int

    def setup(self):
        self.self_attention = MultiHeadAttention(self.heads, self.width)
        self.cross_attention = MultiHeadAttention(self.heads, self.width)
        self.norms = [nn.LayerNorm() for _ in range(3)]
        self.hidden = nn.Dense(4 * self.width)
        self.back = nn.Dense(self.width)

    def cross(self, memory):
        """The encoder output's keys and values, computed once per source: two f32[B, S, heads, d]."""
        return self.cross_attention.keys_values(memory)

    def __call__(self, y, self_k, self_v, self_mask, cross_k, cross_v, cross_mask):
        y = y + self.self_attention.attend(self.norms[0](y), self_k, self_v, self_mask)
        y = y + self.cross_attention.attend(self.norms[1](y), cross_k, cross_v, cross_mask)
        # The exact GELU, as the encoder's block and PyTorch's default.
        return y + self.back(nn.gelu(self.hidden(self.norms[2](y)), approximate=False))

    def self_keys_values(self, y):
        return self.self_attention.keys_values(self.norms[0](y))


class TransformerSeq2Seq(nn.Module):
    """Attributes: vocab (joint), width, heads, layers (encoder and decoder each), max_len (positions and cache)."""

    vocab: int
    width: int = 128
    heads: int = 4
    layers: int = 2
    max_len: int = 96

    def setup(self):
        self.embedding = nn.Embed(self.vocab, self.width)
        self.encoder = TransformerEncoder(num_layers=self.layers, num_heads=self.heads, mlp_dim=4 * self.width,
                                          positions=None)
        self.blocks = [DecoderBlock(self.width, self.heads) for _ in range(self.layers)]
        self.final_norm = nn.LayerNorm()

    def _embed(self, tokens, offset=0):
        positions = sinusoidal_positions(self.max_len, self.width)
        x = self.embedding(tokens) * self.width ** 0.5
        return x + jax.lax.dynamic_slice_in_dim(positions, offset, tokens.shape[1], axis=0)[None]

    def _logits(self, y):
        return self.embedding.attend(self.final_norm(y))

    def start(self, src, src_mask):
        """Encoder output's per-layer cross keys/values, an empty self-attention cache, and step 0."""
        memory = self.encoder(self._embed(src), src_mask)
        batch, split = src.shape[0], (self.heads, self.width // self.heads)
        empty = jnp.zeros((batch, self.max_len) + split, memory.dtype)
        return {"cross": [block.cross(memory) for block in self.blocks], "mask": src_mask,
                "cache": [(empty, empty) for _ in self.blocks], "t": jnp.zeros((batch,), jnp.int32)}

    def decode_step(self, state, token):
        """i32[B] previous token -> (f32[B, vocab] logits, state with this step's keys/values cached)."""
        t = state["t"][0]
        y = self._embed(token[:, None], t)
        visible = (jnp.arange(self.max_len) <= t)[None, None, None, :]
        cross_mask = state["mask"][:, None, None, :]
        cache = []
        for block, (k, v), (ck, cv) in zip(self.blocks, state["cache"], state["cross"]):
            new_k, new_v = block.self_keys_values(y)
            k = jax.lax.dynamic_update_slice_in_dim(k, new_k, t, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(v, new_v, t, axis=1)
            cache.append((k, v))
            y = block(y, k, v, visible, ck, cv, cross_mask)
        return self._logits(y)[:, 0], state | {"cache": cache, "t": state["t"] + 1}

    def __call__(self, src, src_mask, tgt_in):
        """Teacher forcing with a causal mask: i32[B, S], bool[B, S], i32[B, T] -> f32[B, T, vocab]."""
        state = self.start(src, src_mask)
        y = self._embed(tgt_in)
        length = tgt_in.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
        cross_mask = src_mask[:, None, None, :]
        for block, (ck, cv) in zip(self.blocks, state["cross"]):
            k, v = block.self_keys_values(y)
            y = block(y, k, v, causal, ck, cv, cross_mask)
        return self._logits(y)
