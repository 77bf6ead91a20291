"""Document classifiers over word embeddings: a (Bi)LSTM and an attention / transformer encoder.

Both read token ids ``ids: int32[batch, time]`` with a padding mask ``mask: bool[batch, time]`` (True on real tokens)
and return ``logits: f32[batch, classes]``. Padding never changes the logits: the LSTM freezes its carry and zeroes its
outputs past each document's end, attention gives padded keys zero weight, and the pooling below averages (or takes the
maximum) over real tokens only.

Each model is split in two methods so that keyword extraction can differentiate with respect to the embeddings
(gradient × input): ``embed(ids) -> f32[batch, time, embed_dim]`` and ``classify(embeddings, mask, train) -> logits``;
``__call__`` chains them. The attention layers sow their weights (``"intermediates"`` / ``"attention_weights"``).

Example:
  >>> model = LSTMTextClassifier(vocab_size=100, num_classes=5)
  >>> ids, mask = jnp.ones((2, 7), jnp.int32), jnp.ones((2, 7), bool)
  >>> variables = model.init(jax.random.key(0), ids, mask)
  >>> model.apply(variables, ids, mask).shape
  (2, 5)
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import check_array
from medjax.nn.encoder import TransformerEncoder, masked_mean
from medjax.nn.multihead import MultiHeadAttention
from medjax.nn.recurrent import LSTM


def masked_max(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Maximum over the valid steps: ``f32[batch, time, d]`` -> ``f32[batch, d]``; zeros for a row with none."""
    filled = jnp.where(mask[:, :, None], x, -jnp.inf)
    pooled = filled.max(axis=1)
    return jnp.where(mask.any(axis=1, keepdims=True), pooled, 0.0)


POOLINGS = {"mean": masked_mean, "max": masked_max}


def _valid_mask(mask: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
    """The padding mask ``bool[batch, time]`` after checking it against the inputs' ``(batch, time)``."""
    if mask is None:
        return jnp.ones(shape, bool)
    check_array(mask, "mask", shape=shape, dtype_kind="b", hint="the padding mask is True on real tokens")
    return mask


class LSTMTextClassifier(nn.Module):
    """Embeddings -> (Bi)LSTM -> pooling over the valid steps -> dropout -> dense.

    Attributes:
      vocab_size: rows of the embedding table (the vocabulary, ``<pad>`` and ``<unk>`` included).
      num_classes: K, the number of logits.
      embed_dim: E, the width of a word embedding.
      hidden: H, the LSTM state size per direction.
      num_layers: stacked LSTM layers.
      bidirectional: read the document both ways and concatenate (2H features).
      dropout: rate on the embeddings, between LSTM layers and on the pooled vector.
      pooling: ``"mean"`` or ``"max"`` over the valid steps, or ``"last"``: the final state of each direction (the
        forward state at the last real token, the backward state at the first).
    """

    vocab_size: int
    num_classes: int
    embed_dim: int = 64
    hidden: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    pooling: str = "mean"

    def setup(self):
        if self.pooling not in (*POOLINGS, "last"):
            raise ValueError(f"pooling must be one of {[*POOLINGS, 'last']}, got {self.pooling!r}")
        self.embedding = nn.Embed(self.vocab_size, self.embed_dim)
        self.lstm = LSTM(self.hidden, self.num_layers, self.bidirectional, self.dropout)
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.num_classes)

    def embed(self, ids: jax.Array) -> jax.Array:
        """``ids: int[batch, time]`` -> ``f32[batch, time, embed_dim]``."""
        check_array(ids, "ids", dims=("batch", "time"), dtype_kind="iu")
        return self.embedding(ids)

    def classify(self, embeddings: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """``embeddings: f32[batch, time, E]``, ``mask: bool[batch, time]`` -> ``logits: f32[batch, K]``."""
        check_array(embeddings, "embeddings", dims=("batch", "time", "embed"), last_dim=self.embed_dim)
        mask = _valid_mask(mask, embeddings.shape[:2])
        x = self.drop(embeddings, deterministic=not train)
        outputs, (_, h_n) = self.lstm(x, mask, train=train)
        if self.pooling == "last":
            # h_n is [layers * directions, batch, H] in PyTorch's order: the last layer's directions come last.
            directions = 2 if self.bidirectional else 1
            pooled = jnp.concatenate(list(h_n[-directions:]), axis=-1)
        else:
            pooled = POOLINGS[self.pooling](outputs, mask)
        return self.head(self.drop(pooled, deterministic=not train))

    def __call__(self, ids: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """``ids: int[batch, time]``, ``mask: bool[batch, time]`` -> ``logits: f32[batch, K]``."""
        return self.classify(self.embed(ids), mask, train)


class TransformerTextClassifier(nn.Module):
    """Embeddings -> positions + transformer encoder (or one attention layer) -> masked mean -> dropout -> dense.

    With ``num_layers=0`` the encoder is the tutorial's single self-attention layer (multi-head attention with a
    residual connection, no feed-forward block and no positions): a bag of contextualised words.

    Attributes:
      vocab_size: rows of the embedding table.
      num_classes: K.
      embed_dim: D, the model width (must divide by ``num_heads``).
      num_layers: encoder blocks; 0 for the single attention layer.
      num_heads: attention heads.
      mlp_dim: hidden width of each block's feed-forward network.
      dropout: rate on the embeddings, inside the encoder and on the pooled vector.
      positions: ``"sinusoidal"``, ``"learned"`` or ``None`` (see `TransformerEncoder`).
      max_length: the longest document, for learned positions.
    """

    vocab_size: int
    num_classes: int
    embed_dim: int = 64
    num_layers: int = 1
    num_heads: int = 4
    mlp_dim: int = 128
    dropout: float = 0.1
    positions: str | None = "sinusoidal"
    max_length: int = 512

    def setup(self):
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")
        self.embedding = nn.Embed(self.vocab_size, self.embed_dim)
        if self.num_layers == 0:
            self.attention = MultiHeadAttention(self.num_heads, self.embed_dim, self.dropout)
        else:
            self.encoder = TransformerEncoder(
                self.num_layers, self.num_heads, self.mlp_dim, self.dropout, self.positions, self.max_length
            )
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.num_classes)

    def embed(self, ids: jax.Array) -> jax.Array:
        """``ids: int[batch, time]`` -> ``f32[batch, time, embed_dim]``.

        Scaled by sqrt(D) as in Vaswani et al.: the embedding initialiser draws entries of size ~1/sqrt(D), while
        position vectors have entries of size ~1, which would otherwise drown the words.
        """
        check_array(ids, "ids", dims=("batch", "time"), dtype_kind="iu")
        return self.embedding(ids) * math.sqrt(self.embed_dim)

    def classify(self, embeddings: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """``embeddings: f32[batch, time, D]``, ``mask: bool[batch, time]`` -> ``logits: f32[batch, K]``."""
        check_array(embeddings, "embeddings", dims=("batch", "time", "embed"), last_dim=self.embed_dim)
        mask = _valid_mask(mask, embeddings.shape[:2])
        if self.num_layers == 0:
            x = self.drop(embeddings, deterministic=not train)
            x = x + self.attention(x, mask, train=train)
        else:  # the encoder drops out its input itself, after adding positions
            x = self.encoder(embeddings, mask, train=train)
        pooled = masked_mean(x, mask)
        return self.head(self.drop(pooled, deterministic=not train))

    def __call__(self, ids: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """``ids: int[batch, time]``, ``mask: bool[batch, time]`` -> ``logits: f32[batch, K]``."""
        return self.classify(self.embed(ids), mask, train)
