"""How the classification twins (CNN, ResNet-18, tutorial LSTM, tutorial attention) read the shared batch and score it."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F


def image_inputs(batch: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images f32[batch, channels, height, width] (NCHW, PyTorch's layout), labels int64[batch])."""
    return (torch.from_numpy(np.ascontiguousarray(batch["x"].transpose(0, 3, 1, 2))),
            torch.from_numpy(batch["labels"].astype(np.int64)))


def sequence_inputs(batch: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequences f32[batch, time, features], labels int64[batch])."""
    return torch.from_numpy(batch["x"]), torch.from_numpy(batch["labels"].astype(np.int64))


def cross_entropy(module: torch.nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean softmax cross-entropy of the module's logits, as medjax's side computes it."""
    x, labels = inputs
    return F.cross_entropy(module(x), labels)
