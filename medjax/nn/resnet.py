"""ResNet-18 and ResNet-50 in the form MedMNIST v2 benchmarks for 28×28 images.

MedMNIST's reference code (``MedMNIST/experiments``, ``MedMNIST2D/models.py``, adapted from kuangliu/pytorch-cifar)
replaces ImageNet's 7×7 stride-2 stem and max-pool by one 3×3 stride-1 convolution, so that a 28×28 image still has a
4×4 map in the last stage: conv 3×3 → BN → ReLU, four stages of 64/128/256/512 (×4 for bottlenecks) channels, the
first block of stages 2–4 striding by 2, global average pooling, one dense layer. ResNet-18 stacks [2, 2, 2, 2] basic
blocks, ResNet-50 [3, 4, 6, 3] bottlenecks. The same network takes 64, 128 or 224 px (MedMNIST+); only the feature
maps grow.

Batch norm matches ``torch.nn.BatchNorm2d``: ε = 1e-5, running averages decayed by 0.9 (PyTorch's ``momentum=0.1``),
kept in the ``batch_stats`` collection and used when ``train=False``. One difference remains: PyTorch stores the
*unbiased* batch variance in its running average, Flax the *biased* one; they differ by a factor n/(n − 1), with n =
batch × height × width (2048 for a batch of 128 in the last stage at 28 px, so 0.05%).

Convolutions pad like PyTorch (``padding=1``, symmetric), not ``"SAME"``: with stride 2 on even sizes, ``"SAME"``
pads only the bottom/right edge and the networks would no longer agree.

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = ResNet18(num_classes=2)
  >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  >>> logits, updates = model.apply(variables, jnp.zeros((8, 28, 28, 1)), train=True, mutable=["batch_stats"])
  >>> logits.shape
  (8, 2)
"""

from __future__ import annotations

import functools
from typing import ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import check_images
from medjax.nn.conv import Conv2D, torch_default_bias_init, torch_default_kernel_init


def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        # Two-pass variance: E[x²] − E[x]² loses digits when |mean| ≫ std (raw intensities, early layers).
        use_fast_variance=False,
        name=name,
    )


def _shortcut(x: jax.Array, features: int, stride: int, train: bool) -> jax.Array:
    """Identity, or a 1×1 projection + BN when the block changes the resolution or the channel count."""
    if stride == 1 and x.shape[-1] == features:
        return x
    x = Conv2D(features, (1, 1), stride=stride, padding=0, use_bias=False, name="shortcut_conv")(x)
    return _batch_norm(train, "shortcut_bn")(x)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34).

    Attributes:
      features: output channels of both convolutions.
      stride: stride of the first convolution (2 halves height and width).
    """

    features: int
    stride: int = 1
    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """x: f32[batch, height, width, in_channels] -> f32[batch, height / stride, width / stride, features]."""
        y = Conv2D(self.features, (3, 3), stride=self.stride, padding=1, use_bias=False, name="conv1")(x)
        y = jax.nn.relu(_batch_norm(train, "bn1")(y))
        y = Conv2D(self.features, (3, 3), padding=1, use_bias=False, name="conv2")(y)
        y = _batch_norm(train, "bn2")(y)
        return jax.nn.relu(y + _shortcut(x, self.features, self.stride, train))


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand ×4, with a residual connection (ResNet-50/101/152).

    Attributes:
      features: channels of the 1×1 and 3×3 convolutions; the block outputs ``4 * features``.
      stride: stride of the 3×3 convolution, as in MedMNIST's and torchvision's v1.5 bottleneck.
    """

    features: int
    stride: int = 1
    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """x: f32[batch, height, width, in_channels] -> f32[batch, height / stride, width / stride, 4 * features]."""
        out_features = self.features * self.expansion
        y = Conv2D(self.features, (1, 1), padding=0, use_bias=False, name="conv1")(x)
        y = jax.nn.relu(_batch_norm(train, "bn1")(y))
        y = Conv2D(self.features, (3, 3), stride=self.stride, padding=1, use_bias=False, name="conv2")(y)
        y = jax.nn.relu(_batch_norm(train, "bn2")(y))
        y = Conv2D(out_features, (1, 1), padding=0, use_bias=False, name="conv3")(y)
        y = _batch_norm(train, "bn3")(y)
        return jax.nn.relu(y + _shortcut(x, out_features, self.stride, train))


class ResNet(nn.Module):
    """A ResNet with MedMNIST's 3×3 stride-1 stem and no initial max-pool.

    Attributes:
      stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
      block: ``BasicBlock`` or ``Bottleneck``.
      num_classes: number of output logits.
      width: channels of the stem and the first stage; stage k has ``width * 2**k`` (64 in the published model;
        smaller values give fast test-size networks).

    Submodules are named like MedMNIST's PyTorch model for porting weights: ``conv1``, ``bn1``, ``layer{s}_{b}`` (stage
    s from 1, block b from 0), ``linear``.
    """

    stage_sizes: Sequence[int]
    block: type[nn.Module]
    num_classes: int = 2
    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Class logits of a batch of images.

        Args:
          x: f32[batch, height, width, channels], grayscale or RGB, pixels scaled to float; any size (28, 64, 128,
            224 px).
          train: use and update batch statistics (call ``apply`` with ``mutable=["batch_stats"]``); otherwise use the
            running averages.

        Returns:
          f32[batch, num_classes] logits.
        """
        check_images(x)
        x = Conv2D(self.width, (3, 3), padding=1, use_bias=False, name="conv1")(x)
        x = jax.nn.relu(_batch_norm(train, "bn1")(x))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                block = self.block(self.width * 2**stage, stride=stride, name=f"layer{stage + 1}_{index}")
                x = block(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(
            self.num_classes,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(x.shape[-1]),
            name="linear",
        )(x)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
