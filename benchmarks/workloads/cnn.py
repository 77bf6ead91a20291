"""The tutorial's CNN (`medjax.nn.conv.TutorialCNN`) on MNIST-sized images: batch 64, 1×28×28, 10 classes."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medjax.nn.conv import TutorialCNN
from medjax.train.losses import softmax_cross_entropy

TITLE = "tutorial CNN"
SIZES = {"batch": 64, "size": 28, "channels": 1, "classes": 10}
TINY = {"batch": 4, "size": 8, "channels": 1, "classes": 3}
GROWTH = {"batch": (16, 64, 256)}


def make_batch(sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """``x``: f32[batch, size, size, channels] pixels in [0, 1); ``labels``: i32[batch]."""
    rng = np.random.default_rng(seed)
    shape = (sizes["batch"], sizes["size"], sizes["size"], sizes["channels"])
    return {"x": rng.random(shape, dtype=np.float32),
            "labels": rng.integers(0, sizes["classes"], sizes["batch"]).astype(np.int32)}


def make_model(sizes: Mapping[str, int]) -> TutorialCNN:
    return TutorialCNN(num_classes=sizes["classes"])


def init(model: TutorialCNN, key, batch: Mapping[str, np.ndarray]):
    return model.init(key, batch["x"])


def loss(model: TutorialCNN, variables, batch):
    """Mean softmax cross-entropy of the logits; no collection changes."""
    return softmax_cross_entropy(model.apply(variables, batch["x"], train=True), batch["labels"]), {}
