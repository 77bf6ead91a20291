"""PyTorch twin of the tutorial attention classifier, with ``F.scaled_dot_product_attention`` (the fused kernel)."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from benchmarks.twins import classification, weights


class TutorialAttention(torch.nn.Module):
    """``h = tanh(W x) + PE``; ``c = softmax(q kᵀ / √d) v`` within each sequence; mean over steps; Linear."""

    def __init__(self, features: int, hidden: int, classes: int, time: int):
        super().__init__()
        self.embed = torch.nn.Linear(features, hidden)
        self.query = torch.nn.Linear(hidden, hidden)
        self.key = torch.nn.Linear(hidden, hidden)
        self.value = torch.nn.Linear(hidden, hidden)
        self.classifier = torch.nn.Linear(hidden, classes)
        self.register_buffer("positions", weights.sinusoidal_positions(time, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: f32[batch, time, features] -> logits f32[batch, classes]."""
        h = torch.tanh(self.embed(x)) + self.positions
        context = F.scaled_dot_product_attention(self.query(h), self.key(h), self.value(h))
        return self.classifier(context.mean(dim=1))


def build(sizes: Mapping[str, int], variables: Mapping) -> TutorialAttention:
    module = TutorialAttention(sizes["features"], sizes["hidden"], sizes["classes"], sizes["time"])
    for name in ("embed", "query", "key", "value", "classifier"):
        weights.linear(getattr(module, name), variables["params"][name], name)
    return module


inputs = classification.sequence_inputs
loss = classification.cross_entropy
