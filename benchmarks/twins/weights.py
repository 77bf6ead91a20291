"""Copying medjax (Flax) parameters into PyTorch modules, layer by layer.

The layouts differ in fixed ways: Dense kernels are ``[in, out]`` where ``nn.Linear`` holds ``[out, in]``; convolution
kernels are HWIO where ``nn.Conv2d`` holds OIHW; an LSTM layer has one bias ``b`` where ``nn.LSTM`` has two (``b_ih``
gets ``b``, ``b_hh`` gets zeros, so their sum is medjax's bias); gate columns are in PyTorch's order (i, f, g, o) on
both sides. Every copy checks the shape, so a twin built for other sizes fails loudly instead of broadcasting.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch


def assign(target: torch.Tensor, value: np.ndarray, name: str) -> None:
    """Copies ``value`` into ``target`` in place, after checking that the shapes agree."""
    value = np.asarray(value, dtype=np.float32)
    if tuple(target.shape) != value.shape:
        raise ValueError(f"{name}: the PyTorch twin expects shape {tuple(target.shape)}, medjax's weights have "
                         f"{value.shape}; were both built with the same sizes?")
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def linear(module: torch.nn.Linear, params: Mapping[str, np.ndarray], name: str) -> None:
    """A Flax Dense ``{"kernel": [in, out], "bias": [out]}`` into ``nn.Linear`` (weight ``[out, in]``)."""
    assign(module.weight, params["kernel"].T, f"{name}.kernel")
    if "bias" in params:
        assign(module.bias, params["bias"], f"{name}.bias")


def conv2d(module: torch.nn.Conv2d, params: Mapping[str, np.ndarray], name: str) -> None:
    """A medjax ``Conv2D`` (HWIO kernel) into ``nn.Conv2d`` (OIHW weight)."""
    assign(module.weight, params["kernel"].transpose(3, 2, 0, 1), f"{name}.kernel")
    if "bias" in params:
        assign(module.bias, params["bias"], f"{name}.bias")


def batch_norm(module: torch.nn.BatchNorm2d, params: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray],
               name: str) -> None:
    """A Flax BatchNorm (``scale``, ``bias``; ``mean``, ``var`` in ``batch_stats``) into ``nn.BatchNorm2d``."""
    assign(module.weight, params["scale"], f"{name}.scale")
    assign(module.bias, params["bias"], f"{name}.bias")
    assign(module.running_mean, stats["mean"], f"{name}.mean")
    assign(module.running_var, stats["var"], f"{name}.var")


def layer_norm(module: torch.nn.LayerNorm, params: Mapping[str, np.ndarray], name: str) -> None:
    """A Flax LayerNorm (``scale``, ``bias``) into ``nn.LayerNorm``."""
    assign(module.weight, params["scale"], f"{name}.scale")
    assign(module.bias, params["bias"], f"{name}.bias")


def embedding(module: torch.nn.Embedding, params: Mapping[str, np.ndarray], name: str) -> None:
    """A Flax Embed (``embedding: [vocab, dim]``) into ``nn.Embedding`` (same layout)."""
    assign(module.weight, params["embedding"], f"{name}.embedding")


def lstm_layer(module: torch.nn.LSTM, params: Mapping[str, np.ndarray], suffix: str, name: str) -> None:
    """One medjax LSTM layer ``{"w_x": [in, 4H], "w_h": [H, 4H], "b": [4H]}`` into ``nn.LSTM``'s tensors ``*{suffix}``.

    Args:
      module: the ``nn.LSTM``.
      params: the layer's medjax parameters.
      suffix: PyTorch's name of the layer, e.g. ``"_l0"`` or ``"_l0_reverse"``.
      name: for error messages.
    """
    assign(getattr(module, f"weight_ih{suffix}"), params["w_x"].T, f"{name}.w_x")
    assign(getattr(module, f"weight_hh{suffix}"), params["w_h"].T, f"{name}.w_h")
    assign(getattr(module, f"bias_ih{suffix}"), params["b"], f"{name}.b")
    assign(getattr(module, f"bias_hh{suffix}"), np.zeros_like(params["b"]), f"{name}.b (b_hh = 0)")


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s position table f32[length, dim], computed as `medjax.nn.positions.sinusoidal_positions` does."""
    position = np.arange(length, dtype=np.float64)[:, None]
    angle = position / 10_000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.empty((length, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : dim // 2])
    return torch.from_numpy(table.astype(np.float32))
