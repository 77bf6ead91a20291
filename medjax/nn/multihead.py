"""Multi-head self-attention as a thin Linen layer over `medjax.nn.attention`'s formula.

Each head computes ``softmax(q kᵀ / √d_head) v`` on its own slice of the projections; the layer checks its input and
mask once, projects, and hands the heads to `medjax.nn.attention_kernels.dot_product_attention`, which picks the
kernel (the `jnp` formula on CPU, cuDNN's flash attention on an NVIDIA GPU).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.attention import attention_weights
from medjax.nn.attention_kernels import dot_product_attention
from medjax.nn.checks import broadcasts_to, check_array


def _as_attention_mask(mask, batch: int, length: int, heads: int) -> jax.Array | None:
    """A padding mask bool[B, T] (True on valid steps) or a full mask bool[B|1, H|1, T, T] -> bool[B|1, H|1, T|1, T]."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be bool (True on valid steps / allowed pairs), got dtype {mask.dtype}")
    if mask.shape == (batch, length):
        # Padding hides keys only; a padded query still gets a (finite, unused) output.
        return mask[:, None, None, :]
    full = (batch, heads, length, length)
    if mask.ndim == 4 and broadcasts_to(mask.shape, full) and mask.shape[2:] == full[2:]:
        return mask
    raise ValueError(
        f"mask must be a padding mask bool[batch, time] = {(batch, length)} or a full mask "
        f"bool[batch|1, heads|1, time, time] = {full}, got shape {mask.shape}"
    )


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention: per head ``softmax(q kᵀ / √d_head) v``, heads concatenated and projected back.

    Parameters: Dense ``query``, ``key``, ``value`` (``[width, features]`` kernels and biases) and ``out``
    (``[features, width]``), so the output has the input's width (``width == features``) and drops into a residual
    connection. `keys_values` and `attend` are its two halves, for a decoder's cached self-attention and its
    cross-attention over an encoder's output (`medjax.nn.transformer_seq2seq`). With
    ``features == width`` the layout is that of ``torch.nn.MultiheadAttention(width, num_heads)``: kernels are its
    ``in_proj_weight`` blocks and ``out_proj.weight`` transposed.

    The attention weights ``f32[batch, heads, time, time]`` are sown as ``("intermediates", "attention_weights")``
    when the ``intermediates`` collection is mutable (``model.apply(..., mutable=["intermediates"])``), for keyword
    extraction. Dropout, on the attention weights as in PyTorch, draws from the ``"dropout"`` rng and runs only when
    ``train=True``.

    Attributes:
      num_heads: number of heads; must divide ``features``.
      features: width of the queries, keys and values over all heads (``num_heads * d_head``).
      dropout: dropout rate on the attention weights.

    Example:
      >>> mha = MultiHeadAttention(num_heads=4, features=32)
      >>> x, pad = jnp.ones((2, 10, 32)), jnp.arange(10)[None] < jnp.array([[10], [6]])
      >>> variables = mha.init(jax.random.key(0), x, pad)
      >>> mha.apply(variables, x, pad).shape
      (2, 10, 32)
    """

    num_heads: int
    features: int
    dropout: float = 0.0

    def setup(self):
        if self.features % self.num_heads:
            raise ValueError(f"features={self.features} must be a multiple of num_heads={self.num_heads}")
        self.query = nn.Dense(self.features)
        self.key = nn.Dense(self.features)
        self.value = nn.Dense(self.features)
        # Back to the input's width, which is ``features`` in every medjax model (checked in `attend`).
        self.out = nn.Dense(self.features)
        self.drop = nn.Dropout(self.dropout)

    def _heads(self, projection: nn.Module, x: jax.Array) -> jax.Array:
        y = projection(x)
        return y.reshape(*y.shape[:-1], self.num_heads, self.features // self.num_heads)

    def keys_values(self, source: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The projected keys and values of ``source: f32[batch, S, width]``: two ``f32[batch, S, heads, d_head]``
        (what a decoder caches, or computes once from the encoder's output for cross-attention)."""
        return self._heads(self.key, source), self._heads(self.value, source)

    def attend(self, x: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> jax.Array:
        """Queries from ``x: f32[batch, T, width]`` over projected ``keys``/``values`` (`keys_values`); ``mask``
        bool broadcastable to ``[batch, heads, T, S]``. Returns f32[batch, T, width]."""
        if x.shape[-1] != self.features:
            raise ValueError(f"MultiHeadAttention projects back to features={self.features}; the input's width is "
                             f"{x.shape[-1]}")
        q = self._heads(self.query, x).transpose(0, 2, 1, 3)
        k, v = keys.transpose(0, 2, 1, 3), values.transpose(0, 2, 1, 3)
        if self.is_mutable_collection("intermediates") or (train and self.dropout > 0):
            # The weights themselves are needed: to sow them or to drop some out. Otherwise a fused kernel may run.
            weights = attention_weights(q, k, mask)
            self.sow("intermediates", "attention_weights", weights)
            weights = self.drop(weights, deterministic=not train)
            context = jnp.einsum("bhqk,bhkd->bhqd", weights.astype(v.dtype), v)
        else:
            context = dot_product_attention(q, k, v, mask)
        return self.out(context.transpose(0, 2, 1, 3).reshape(*x.shape[:-1], self.features))

    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """Self-attention over ``x: f32[batch, time, width]``.

        Args:
          x: f32[batch, time, width].
          mask: bool[batch, time] padding mask (True on valid steps), or bool[batch|1, heads|1, time, time] (True
            where query i may attend to key j).
          train: enables dropout.

        Returns:
          f32[batch, time, width]. Valid steps never depend on padded ones.
        """
        x = jnp.asarray(x)
        check_array(x, "MultiHeadAttention x", dims=("batch", "time", "width"))
        batch, length, _ = x.shape
        mask = _as_attention_mask(mask, batch, length, self.num_heads)
        return self.attend(x, *self.keys_values(x), mask, train)
