"""Multi-label recommenders over a patient's event sequence: an LSTM or a BEHRT-style transformer encoder.

Each step of a history is a concept token (a condition, drug, procedure, measurement or visit) and a time-gap token
(days since the previous step, bucketed; `medjax.data.omop.gap_buckets`). Their embeddings are summed, as BEHRT
(Li et al. 2020) sums its concept, age and position embeddings, and read by

- ``"lstm"``: a unidirectional `medjax.nn.recurrent.LSTM`, whose last valid state has read the whole history up to
  and including the final step (the index condition), or
- ``"transformer"``: `medjax.nn.encoder.TransformerEncoder` with sinusoidal positions on top of the time-gap
  embeddings (time and order both), padded steps masked as keys.

The sequence becomes one vector as ``[masked mean over the steps, the last valid step]``: the mean summarises the
history, the last step is the index condition in context. Static features (age, sex) are appended, and a dense layer
gives one logit per label: a sigmoid per drug, trained with binary cross-entropy.

Example:
  >>> model = EventRecommender(vocab_size=50, num_labels=7, encoder="transformer", embed_dim=16, num_heads=2)
  >>> ids, gaps, mask = jnp.ones((2, 9), jnp.int32), jnp.ones((2, 9), jnp.int32), jnp.ones((2, 9), bool)
  >>> variables = model.init(jax.random.key(0), ids, gaps, mask, jnp.zeros((2, 3)))
  >>> model.apply(variables, ids, gaps, mask, jnp.zeros((2, 3))).shape
  (2, 7)
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import check_array
from medjax.nn.encoder import TransformerEncoder, masked_mean
from medjax.nn.recurrent import LSTM, last_valid

ENCODERS = ("lstm", "transformer")


class EventRecommender(nn.Module):
    """Concept + time-gap embeddings -> LSTM or transformer -> [mean, last] (+ static) -> dropout -> dense logits.

    Attributes:
      vocab_size: rows of the concept embedding table (``<pad>`` and ``<unk>`` included).
      num_labels: L, one logit per label (drug).
      encoder: ``"lstm"`` or ``"transformer"``.
      gap_buckets: rows of the time-gap embedding table.
      embed_dim: E, the embedding width (the transformer's model width; must divide by ``num_heads``).
      hidden: the LSTM state size.
      num_layers: LSTM layers or encoder blocks.
      num_heads: attention heads.
      mlp_dim: the encoder blocks' feed-forward width.
      dropout: rate on the embeddings, inside the encoder and on the pooled vector.
      max_length: the longest sequence (for the encoder's bookkeeping).
    """

    vocab_size: int
    num_labels: int
    encoder: str = "lstm"
    gap_buckets: int = 16
    embed_dim: int = 64
    hidden: int = 64
    num_layers: int = 1
    num_heads: int = 4
    mlp_dim: int = 128
    dropout: float = 0.1
    max_length: int = 256

    def setup(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        self.concepts = nn.Embed(self.vocab_size, self.embed_dim)
        self.gaps = nn.Embed(self.gap_buckets, self.embed_dim)
        if self.encoder == "lstm":
            self.lstm = LSTM(self.hidden, self.num_layers, dropout=self.dropout)
        else:
            self.transformer = TransformerEncoder(self.num_layers, self.num_heads, self.mlp_dim, self.dropout,
                                                  "sinusoidal", self.max_length)
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.num_labels)

    def __call__(self, ids: jax.Array, gaps: jax.Array, mask: jax.Array, static: jax.Array,
                 train: bool = False) -> jax.Array:
        """Scores every label for every history.

        Args:
          ids: int[batch, time] concept tokens.
          gaps: int[batch, time] time-gap tokens in [0, gap_buckets).
          mask: bool[batch, time], True on real steps; every row needs one.
          static: f32[batch, features] per-patient features (age, sex).
          train: enables dropout.

        Returns:
          logits: f32[batch, num_labels].
        """
        check_array(ids, "ids", dims=("batch", "time"), dtype_kind="iu")
        check_array(gaps, "gaps", dims=("batch", "time"), shape=ids.shape, dtype_kind="iu")
        check_array(mask, "mask", dims=("batch", "time"), shape=ids.shape, dtype_kind="b")
        check_array(static, "static", dims=("batch", "features"))
        x = self.concepts(ids) + self.gaps(gaps)
        if self.encoder == "lstm":
            h, _ = self.lstm(self.drop(x, deterministic=not train), mask, train=train)
        else:
            # Scaled by sqrt(E) as in Vaswani et al., so that the sinusoidal positions (entries ~1) do not drown the
            # embeddings (entries ~1/sqrt(E)); the encoder drops out its input itself.
            h = self.transformer(x * math.sqrt(self.embed_dim), mask, train=train)
        pooled = jnp.concatenate([masked_mean(h, mask), last_valid(h, mask), static.astype(h.dtype)], axis=-1)
        return self.head(self.drop(pooled, deterministic=not train))
