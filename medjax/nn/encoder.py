"""The transformer encoder (pre-LayerNorm blocks) and the tutorial's attention classifier, made right.

`EncoderBlock` is the pre-LayerNorm block of ``torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu")``
(and of ViT / the Flax lm1b example): normalising before each sub-layer keeps the residual path an identity, which
trains stably without a learning-rate warm-up. `TransformerEncoder` adds positions, stacks blocks and normalises the
output.

`TutorialAttentionClassifier` is the tutorial's model, ``Linear(F→32) → tanh → attention → Linear(32→classes)``,
with its three bugs fixed: attention runs within each sequence (not across the batch), scores are scaled by
``1/√d``, and positions are added before attention. Padded steps are masked as keys and left out of the mean pool,
so a prediction never depends on padding or on the other examples of the batch.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.attention import scaled_dot_product_attention
from medjax.nn.attention_kernels import dot_product_attention
from medjax.nn.checks import check_array
from medjax.nn.multihead import MultiHeadAttention
from medjax.nn.positions import LearnedPositions, sinusoidal_positions

POSITIONS = ("sinusoidal", "learned", None)


def _check_input(x: jax.Array, mask, who: str) -> None:
    check_array(x, f"{who} x", dims=("batch", "time", "features"))
    if mask is not None and jnp.ndim(mask) == 2:
        check_array(mask, f"{who} padding mask", dims=("batch", "time"), shape=x.shape[:2], dtype_kind="b")


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))`` with a GELU MLP.

    Dropout (rate ``dropout``, rng ``"dropout"``, only when ``train=True``) acts where PyTorch's
    ``TransformerEncoderLayer`` puts it: on the attention weights, after the MLP's activation, and on each branch
    before its residual sum. Submodules: ``norm_attention``, ``attention`` (`MultiHeadAttention` with
    ``features = width``), ``norm_mlp``, ``mlp_in``, ``mlp_out``.

    Attributes:
      num_heads: attention heads; must divide the input width.
      mlp_dim: hidden width of the MLP.
      dropout: dropout rate.
      epsilon: LayerNorm epsilon.
    """

    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """One block.

        Args:
          x: f32[batch, time, width].
          mask: bool[batch, time] padding mask (True on valid steps) or bool[batch|1, heads|1, time, time].
          train: enables dropout.

        Returns:
          f32[batch, time, width].
        """
        x = jnp.asarray(x)
        _check_input(x, mask, "EncoderBlock")
        width = x.shape[-1]
        y = nn.LayerNorm(epsilon=self.epsilon, name="norm_attention")(x)
        y = MultiHeadAttention(self.num_heads, width, dropout=self.dropout, name="attention")(y, mask, train=train)
        x = x + nn.Dropout(self.dropout)(y, deterministic=not train)
        y = nn.LayerNorm(epsilon=self.epsilon, name="norm_mlp")(x)
        # Exact (erf) GELU, as PyTorch's default, so weights port both ways.
        y = nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(y), approximate=False)
        y = nn.Dropout(self.dropout)(y, deterministic=not train)
        y = nn.Dense(width, name="mlp_out")(y)
        return x + nn.Dropout(self.dropout)(y, deterministic=not train)


class TransformerEncoder(nn.Module):
    """Positions, ``num_layers`` pre-LayerNorm `EncoderBlock` s, and a final LayerNorm (which pre-LN blocks need).

    Attributes:
      num_layers: number of blocks (``block_0`` ...).
      num_heads: attention heads per block; must divide the width.
      mlp_dim: hidden width of each block's MLP.
      dropout: dropout rate, also applied to the input after positions are added.
      positions: ``"sinusoidal"`` (`sinusoidal_positions`), ``"learned"`` (`LearnedPositions`) or None (the input
        already carries positions).
      max_length: longest input for learned positions.

    Example:
      >>> enc = TransformerEncoder(num_layers=2, num_heads=4, mlp_dim=64, dropout=0.1)
      >>> x, pad = jnp.ones((2, 10, 32)), jnp.arange(10)[None] < jnp.array([[10], [6]])
      >>> variables = enc.init(jax.random.key(0), x, pad)
      >>> enc.apply(variables, x, pad, train=True, rngs={"dropout": jax.random.key(1)}).shape
      (2, 10, 32)
    """

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    positions: str | None = "sinusoidal"
    max_length: int = 512

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """Encodes ``x``.

        Args:
          x: f32[batch, time, width].
          mask: bool[batch, time] padding mask (True on valid steps) or bool[batch|1, heads|1, time, time].
          train: enables dropout.

        Returns:
          f32[batch, time, width]; outputs on padded steps are finite and meaningless (mask them downstream).
        """
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        x = jnp.asarray(x)
        _check_input(x, mask, "TransformerEncoder")
        if self.positions == "sinusoidal":
            x = x + sinusoidal_positions(x.shape[1], x.shape[2])[None]
        elif self.positions == "learned":
            x = x + LearnedPositions(self.max_length, name="positions")(x)[None]
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        for i in range(self.num_layers):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout, name=f"block_{i}")(x, mask, train=train)
        return nn.LayerNorm(epsilon=1e-6, name="norm")(x)


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean of ``x: f[batch, time, d]`` over the valid steps of ``mask: bool[batch, time]`` -> f[batch, d].

    A sequence with no valid step gets 0 (not NaN). With ``mask=None`` every step counts.
    """
    if mask is None:
        return x.mean(axis=1)
    weights = mask.astype(x.dtype)[..., None]
    return (x * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


class TutorialAttentionClassifier(nn.Module):
    """The tutorial's attention model, fixed: ``h = tanh(W x) + PE``; ``c = attention(W_q h, W_k h, W_v h)`` within
    each sequence; masked mean of ``c`` over valid steps; ``Linear(hidden→classes)``.

    Submodules: ``embed`` (F→hidden), ``query``, ``key``, ``value`` (hidden→hidden, the equations' W_q, W_k, W_v),
    ``classifier``. The attention weights ``f32[batch, time, time]`` are sown as
    ``("intermediates", "attention_weights")`` when that collection is mutable, for keyword extraction.

    Attributes:
      hidden: width of the hidden states (32 in the tutorial).
      num_classes: number of output logits.

    Example:
      >>> model = TutorialAttentionClassifier()
      >>> x, pad = jnp.ones((4, 50, 10)), jnp.ones((4, 50), bool)
      >>> variables = model.init(jax.random.key(0), x, pad)
      >>> model.apply(variables, x, pad).shape
      (4, 2)
    """

    hidden: int = 32
    num_classes: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """Classifies each sequence on its own.

        Args:
          x: f32[batch, time, features]. (The tutorial's 2-D ``(batch, features)`` input is refused: attention over
            it would mix the examples of the batch.)
          mask: bool[batch, time], True on valid steps; None means all steps are valid.
          train: unused (no dropout); accepted so the model fits the training loop's call.

        Returns:
          f32[batch, num_classes] logits.
        """
        del train
        x = jnp.asarray(x)
        _check_input(x, mask, "TutorialAttentionClassifier")
        if mask is not None:
            check_array(mask, "TutorialAttentionClassifier mask", dims=("batch", "time"), dtype_kind="b")
            mask = jnp.asarray(mask)
        h = jnp.tanh(nn.Dense(self.hidden, name="embed")(x))
        h = h + sinusoidal_positions(h.shape[1], self.hidden)[None]
        q, k, v = (nn.Dense(self.hidden, name=name)(h) for name in ("query", "key", "value"))
        # Padded steps are hidden as keys; their own (query) outputs are dropped by the pool below.
        key_mask = None if mask is None else mask[:, None, :]
        if self.is_mutable_collection("intermediates"):
            context, weights = scaled_dot_product_attention(q, k, v, key_mask, return_weights=True)
            self.sow("intermediates", "attention_weights", weights)
        else:
            context = dot_product_attention(q, k, v, key_mask)
        return nn.Dense(self.num_classes, name="classifier")(masked_mean(context, mask))
