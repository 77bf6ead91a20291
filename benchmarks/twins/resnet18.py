"""PyTorch twin of ResNet-18 (28): MedMNIST's ``ResNet18`` (kuangliu/pytorch-cifar's), NCHW, BatchNorm2d."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from benchmarks.twins import classification, weights


class BasicBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.shortcut = torch.nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                                torch.nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(torch.nn.Module):
    """3×3 stride-1 stem, four stages of two basic blocks, global average pooling, one linear layer."""

    def __init__(self, channels: int, classes: int, width: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        blocks, cin = [], width
        for stage in range(4):
            for index in range(2):
                cout = width * 2**stage
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and index == 0 else 1))
                cin = cout
        self.blocks = torch.nn.Sequential(*blocks)
        self.linear = torch.nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: f32[batch, channels, height, width] -> logits f32[batch, classes]."""
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.linear(x.mean(dim=(2, 3)))


def build(sizes: Mapping[str, int], variables: Mapping) -> ResNet18:
    """The twin with medjax's weights and batch statistics (medjax's ``layer{s}_{b}`` is block 2(s−1)+b here)."""
    module = ResNet18(sizes["channels"], sizes["classes"], sizes["width"])
    params, stats = variables["params"], variables["batch_stats"]
    weights.conv2d(module.conv1, params["conv1"], "conv1")
    weights.batch_norm(module.bn1, params["bn1"], stats["bn1"], "bn1")
    for i, block in enumerate(module.blocks):
        name = f"layer{i // 2 + 1}_{i % 2}"
        p, s = params[name], stats[name]
        weights.conv2d(block.conv1, p["conv1"], f"{name}.conv1")
        weights.batch_norm(block.bn1, p["bn1"], s["bn1"], f"{name}.bn1")
        weights.conv2d(block.conv2, p["conv2"], f"{name}.conv2")
        weights.batch_norm(block.bn2, p["bn2"], s["bn2"], f"{name}.bn2")
        if len(block.shortcut):
            weights.conv2d(block.shortcut[0], p["shortcut_conv"], f"{name}.shortcut_conv")
            weights.batch_norm(block.shortcut[1], p["shortcut_bn"], s["shortcut_bn"], f"{name}.shortcut_bn")
    weights.linear(module.linear, params["linear"], "linear")
    return module


inputs = classification.image_inputs
loss = classification.cross_entropy
