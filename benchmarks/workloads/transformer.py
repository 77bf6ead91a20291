"""A 4-layer pre-LayerNorm transformer encoder (`medjax.nn.encoder.TransformerEncoder`): batch 32, 256 tokens, width
256, 4 heads, MLP 1024, sinusoidal positions, dropout 0; trained to regress a random target (mean squared error), so
the step is the encoder's own cost with no task head.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medjax.nn.encoder import TransformerEncoder
from medjax.train.losses import mse

TITLE = "transformer encoder (4 layers)"
SIZES = {"batch": 32, "time": 256, "width": 256, "heads": 4, "layers": 4, "mlp": 1024}
TINY = {"batch": 2, "time": 8, "width": 16, "heads": 2, "layers": 2, "mlp": 32}
GROWTH: dict[str, tuple[int, ...]] = {}


def make_batch(sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """``x`` and ``target``: f32[batch, time, width], standard normal."""
    rng = np.random.default_rng(seed)
    shape = (sizes["batch"], sizes["time"], sizes["width"])
    return {"x": rng.standard_normal(shape, dtype=np.float32), "target": rng.standard_normal(shape, dtype=np.float32)}


def make_model(sizes: Mapping[str, int]) -> TransformerEncoder:
    return TransformerEncoder(num_layers=sizes["layers"], num_heads=sizes["heads"], mlp_dim=sizes["mlp"], dropout=0.0,
                              positions="sinusoidal")


def init(model: TransformerEncoder, key, batch: Mapping[str, np.ndarray]):
    return model.init(key, batch["x"])


def loss(model: TransformerEncoder, variables, batch):
    """Mean squared error of the encoded sequence against the target; no collection changes."""
    return mse(model.apply(variables, batch["x"], train=True), batch["target"]), {}
