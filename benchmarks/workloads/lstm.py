"""The tutorial's LSTM classifier (`medjax.nn.recurrent.TutorialLSTMClassifier`): 2 layers of 32, batch 64, 50 steps,
10 features, a linear head on the last step, 2 classes. Every sequence is full length (no mask), as in the tutorial.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medjax.nn.recurrent import TutorialLSTMClassifier
from medjax.train.losses import softmax_cross_entropy

TITLE = "tutorial LSTM"
SIZES = {"batch": 64, "time": 50, "features": 10, "hidden": 32, "layers": 2, "classes": 2}
TINY = {"batch": 4, "time": 5, "features": 3, "hidden": 6, "layers": 2, "classes": 2}
GROWTH = {"batch": (16, 64, 256), "time": (25, 100, 400)}


def make_batch(sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """``x``: f32[batch, time, features] standard normal; ``labels``: i32[batch]."""
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((sizes["batch"], sizes["time"], sizes["features"]), dtype=np.float32),
            "labels": rng.integers(0, sizes["classes"], sizes["batch"]).astype(np.int32)}


def make_model(sizes: Mapping[str, int]) -> TutorialLSTMClassifier:
    return TutorialLSTMClassifier(hidden=sizes["hidden"], num_layers=sizes["layers"], num_classes=sizes["classes"])


def init(model: TutorialLSTMClassifier, key, batch: Mapping[str, np.ndarray]):
    return model.init(key, batch["x"])


def loss(model: TutorialLSTMClassifier, variables, batch):
    """Mean softmax cross-entropy of the logits; no collection changes."""
    return softmax_cross_entropy(model.apply(variables, batch["x"], train=True), batch["labels"]), {}
