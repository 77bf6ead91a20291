"""PyTorch twin of the tutorial CNN: the tutorial's own layers (Conv2d, ReLU, MaxPool2d, Linear) on NCHW images."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from benchmarks.twins import classification, weights


class TutorialCNN(torch.nn.Module):
    """Conv2d(C→32, 3×3, pad 1) → ReLU → MaxPool 2 → Conv2d(32→64) → ReLU → MaxPool 2 → Linear → ReLU → Linear."""

    def __init__(self, channels: int, size: int, classes: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.dense1 = torch.nn.Linear(64 * (size // 4) ** 2, 128)
        self.dense2 = torch.nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: f32[batch, channels, height, width] -> logits f32[batch, classes]."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.dense2(F.relu(self.dense1(x.flatten(1))))


def build(sizes: Mapping[str, int], variables: Mapping) -> TutorialCNN:
    """The twin with medjax's weights; the first dense layer's rows are reordered from NHWC to NCHW flattening."""
    module = TutorialCNN(sizes["channels"], sizes["size"], sizes["classes"])
    params = variables["params"]
    weights.conv2d(module.conv1, params["conv1"], "conv1")
    weights.conv2d(module.conv2, params["conv2"], "conv2")
    side = sizes["size"] // 4
    kernel = params["dense1"]["kernel"]
    nchw_rows = kernel.reshape(side, side, 64, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
    weights.linear(module.dense1, {"kernel": nchw_rows, "bias": params["dense1"]["bias"]}, "dense1")
    weights.linear(module.dense2, params["dense2"], "dense2")
    return module


inputs = classification.image_inputs
loss = classification.cross_entropy
