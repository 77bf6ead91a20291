"""ResNet-18 in MedMNIST's 28 px form (`medjax.nn.resnet.ResNet18`): batch 128, 3×28×28, 9 classes (PathMNIST).

Batch norm runs in training mode: batch statistics normalise, and the running averages in ``batch_stats`` are updated
by the step, as PyTorch's ``BatchNorm2d`` does in ``train()`` mode.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medjax.nn.resnet import ResNet18
from medjax.train.losses import softmax_cross_entropy

TITLE = "ResNet-18 (28)"
SIZES = {"batch": 128, "size": 28, "channels": 3, "classes": 9, "width": 64}
TINY = {"batch": 4, "size": 8, "channels": 3, "classes": 3, "width": 4}
GROWTH: dict[str, tuple[int, ...]] = {}


def make_batch(sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """``x``: f32[batch, size, size, channels] pixels in [0, 1); ``labels``: i32[batch]."""
    rng = np.random.default_rng(seed)
    shape = (sizes["batch"], sizes["size"], sizes["size"], sizes["channels"])
    return {"x": rng.random(shape, dtype=np.float32),
            "labels": rng.integers(0, sizes["classes"], sizes["batch"]).astype(np.int32)}


def make_model(sizes: Mapping[str, int]):
    return ResNet18(num_classes=sizes["classes"], width=sizes["width"])


def init(model, key, batch: Mapping[str, np.ndarray]):
    return model.init(key, batch["x"])


def loss(model, variables, batch):
    """Mean softmax cross-entropy; returns the updated ``batch_stats`` too."""
    logits, updates = model.apply(variables, batch["x"], train=True, mutable=["batch_stats"])
    return softmax_cross_entropy(logits, batch["labels"]), updates
