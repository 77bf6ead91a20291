"""PyTorch twin of the tutorial LSTM: ``nn.LSTM(batch_first=True)`` (oneDNN's kernel on CPU) and a linear head."""

from __future__ import annotations

from typing import Mapping

import torch

from benchmarks.twins import classification, weights


class TutorialLSTM(torch.nn.Module):
    def __init__(self, features: int, hidden: int, layers: int, classes: int):
        super().__init__()
        self.lstm = torch.nn.LSTM(features, hidden, layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: f32[batch, time, features] -> logits f32[batch, classes], from the last step."""
        outputs, _ = self.lstm(x)
        return self.head(outputs[:, -1])


def build(sizes: Mapping[str, int], variables: Mapping) -> TutorialLSTM:
    module = TutorialLSTM(sizes["features"], sizes["hidden"], sizes["layers"], sizes["classes"])
    params = variables["params"]
    for layer in range(sizes["layers"]):
        weights.lstm_layer(module.lstm, params["lstm"][f"layer_{layer}"], f"_l{layer}", f"lstm.layer_{layer}")
    weights.linear(module.head, params["head"], "head")
    return module


inputs = classification.sequence_inputs
loss = classification.cross_entropy
