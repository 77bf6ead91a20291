"""Heartbeat classifiers: the tutorial's three model families over one beat window and its RR intervals.

Each model reads ``window: f32[batch, time]`` (the normalised ECG around an R peak) and ``rr: f32[batch, 4]`` (RR
features, `medjax.data.ecg.rr_features`) and returns ``logits: f32[batch, classes]``. The morphology is encoded by a
1-D CNN (`conv1d`), a (Bi)LSTM or a transformer encoder over patches; the RR features join the pooled encoding before
the head, as in the ECG literature (morphology and timing together; de Chazal et al. 2004).

Example:
  >>> model = BeatCNN(num_classes=2)
  >>> window, rr = jnp.zeros((8, 252)), jnp.ones((8, 4))
  >>> variables = model.init(jax.random.key(0), window, rr)
  >>> model.apply(variables, window, rr).shape
  (8, 2)
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import check_array
from medjax.nn.conv1d import Conv1D, max_pool_1d, relu
from medjax.nn.encoder import TransformerEncoder
from medjax.nn.recurrent import LSTM


def _inputs(window: jax.Array, rr: jax.Array, who: str) -> tuple[jax.Array, jax.Array]:
    check_array(window, f"{who} window", dims=("batch", "time"))
    check_array(rr, f"{who} rr", dims=("batch", "rr features"), shape=(window.shape[0], None))
    # RR intervals in seconds are ~0.3-2 s; their logarithm centres them near 0, where the head's units start.
    return window[:, :, None], jnp.log(jnp.maximum(rr, 1e-3))


class _Head(nn.Module):
    """[pooled morphology, log RR] -> dense -> ReLU -> dropout -> dense logits."""

    hidden: int
    num_classes: int
    dropout: float

    @nn.compact
    def __call__(self, pooled: jax.Array, log_rr: jax.Array, train: bool) -> jax.Array:
        x = relu(nn.Dense(self.hidden, name="hidden")(jnp.concatenate([pooled, log_rr], axis=-1)))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.num_classes, name="logits")(x)


class BeatCNN(nn.Module):
    """Convolution blocks (``conv1d`` -> ReLU -> max pool by 2), mean over time, then the head.

    Attributes:
      num_classes: K logits.
      channels: output channels of each block.
      kernel_sizes: taps of each block's kernel (odd: centred with SAME padding).
      hidden: width of the head's hidden layer.
      dropout: dropout before the last layer.
    """

    num_classes: int
    channels: Sequence[int] = (16, 32, 64)
    kernel_sizes: Sequence[int] = (7, 5, 3)
    hidden: int = 64
    dropout: float = 0.3

    @nn.compact
    def __call__(self, window: jax.Array, rr: jax.Array, train: bool = False) -> jax.Array:
        x, log_rr = _inputs(window, rr, "BeatCNN")
        for index, (features, size) in enumerate(zip(self.channels, self.kernel_sizes)):
            x = max_pool_1d(relu(Conv1D(features, size, name=f"conv_{index}")(x)))
        return _Head(self.hidden, self.num_classes, self.dropout, name="head")(x.mean(axis=1), log_rr, train)


class BeatLSTM(nn.Module):
    """The window averaged over ``stride`` samples (fewer steps for the recurrence), a (Bi)LSTM, the mean of its
    outputs, then the head.

    Attributes:
      num_classes: K logits.
      hidden: LSTM state size per direction (and the head's width).
      num_layers: stacked LSTM layers.
      bidirectional: a BiLSTM.
      stride: samples averaged into one step (3: 252 samples at 360 Hz become 84 steps at 120 Hz).
      dropout: between LSTM layers and before the last layer.
    """

    num_classes: int
    hidden: int = 32
    num_layers: int = 1
    bidirectional: bool = True
    stride: int = 3
    dropout: float = 0.3

    @nn.compact
    def __call__(self, window: jax.Array, rr: jax.Array, train: bool = False) -> jax.Array:
        x, log_rr = _inputs(window, rr, "BeatLSTM")
        b, t, _ = x.shape
        x = x[:, : t // self.stride * self.stride].reshape(b, t // self.stride, self.stride).mean(-1, keepdims=True)
        outputs, _ = LSTM(self.hidden, self.num_layers, self.bidirectional, self.dropout, name="lstm")(x, train=train)
        return _Head(self.hidden, self.num_classes, self.dropout, name="head")(outputs.mean(axis=1), log_rr, train)


class BeatTransformer(nn.Module):
    """Non-overlapping patches embedded by a ``conv1d`` whose stride is its width (as ViT embeds image patches),
    a transformer encoder (sinusoidal positions), the mean over patches, then the head.

    Attributes:
      num_classes: K logits.
      width: model width (patch embedding size).
      patch: samples per patch (12: a 252-sample window is 21 tokens of 33 ms).
      num_layers: encoder blocks.
      num_heads: attention heads.
      mlp_dim: feed-forward width.
      dropout: in the encoder and before the last layer.
    """

    num_classes: int
    width: int = 32
    patch: int = 12
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 64
    dropout: float = 0.1

    @nn.compact
    def __call__(self, window: jax.Array, rr: jax.Array, train: bool = False) -> jax.Array:
        x, log_rr = _inputs(window, rr, "BeatTransformer")
        tokens = Conv1D(self.width, self.patch, stride=self.patch, padding="VALID", name="patches")(x)
        encoded = TransformerEncoder(self.num_layers, self.num_heads, self.mlp_dim, self.dropout,
                                     name="encoder")(tokens, train=train)
        return _Head(self.width, self.num_classes, self.dropout, name="head")(encoded.mean(axis=1), log_rr, train)
