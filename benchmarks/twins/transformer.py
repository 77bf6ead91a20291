"""PyTorch twin of the transformer encoder: ``nn.TransformerEncoder`` of pre-LN ``nn.TransformerEncoderLayer`` s.

Configured as medjax's `EncoderBlock` is defined: ``norm_first=True``, exact GELU, LayerNorm ε = 1e-6, a final
LayerNorm, sinusoidal positions added to the input; ``need_weights=False`` inside, so attention runs through
``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.twins import weights


class Encoder(torch.nn.Module):
    def __init__(self, time: int, width: int, heads: int, layers: int, mlp: int):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu",
                                                 layer_norm_eps=1e-6, batch_first=True, norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, norm=torch.nn.LayerNorm(width, eps=1e-6),
                                                   enable_nested_tensor=False)
        self.register_buffer("positions", weights.sinusoidal_positions(time, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: f32[batch, time, width] -> f32[batch, time, width]."""
        return self.encoder(x + self.positions)


def build(sizes: Mapping[str, int], variables: Mapping) -> Encoder:
    module = Encoder(sizes["time"], sizes["width"], sizes["heads"], sizes["layers"], sizes["mlp"])
    params = variables["params"]
    for i, layer in enumerate(module.encoder.layers):
        block = params[f"block_{i}"]
        attention = block["attention"]
        # PyTorch packs the q, k, v projections into one [3 * width, width] matrix, in that order.
        weights.assign(layer.self_attn.in_proj_weight,
                       np.concatenate([attention[n]["kernel"].T for n in ("query", "key", "value")]),
                       f"block_{i}.attention.query/key/value.kernel")
        weights.assign(layer.self_attn.in_proj_bias,
                       np.concatenate([attention[n]["bias"] for n in ("query", "key", "value")]),
                       f"block_{i}.attention.query/key/value.bias")
        weights.linear(layer.self_attn.out_proj, attention["out"], f"block_{i}.attention.out")
        weights.layer_norm(layer.norm1, block["norm_attention"], f"block_{i}.norm_attention")
        weights.layer_norm(layer.norm2, block["norm_mlp"], f"block_{i}.norm_mlp")
        weights.linear(layer.linear1, block["mlp_in"], f"block_{i}.mlp_in")
        weights.linear(layer.linear2, block["mlp_out"], f"block_{i}.mlp_out")
    weights.layer_norm(module.encoder.norm, params["norm"], "norm")
    return module


def inputs(batch: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(batch["x"]), torch.from_numpy(batch["target"])


def loss(module: torch.nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, target = inputs
    return F.mse_loss(module(x), target)
