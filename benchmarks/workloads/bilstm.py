"""The BiLSTM tagger at NER size (`medjax.nn.taggers.BiLSTMTagger`, softmax head): batch 32, 60 tokens, word
embedding 100 over a 10,000-word vocabulary, one bidirectional layer of 200 per direction, 3 tags (IOB2 of one entity
type, as NCBI-disease).

Dropout is 0 and the character CNN is off, so both sides compute the same function; every sentence is full length
(the mask is all True), so the twin's plain ``nn.LSTM`` sees the same sequences as medjax's masked one.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medjax.nn.taggers import BiLSTMTagger
from medjax.train.losses import softmax_cross_entropy

TITLE = "BiLSTM tagger (NER size)"
SIZES = {"batch": 32, "time": 60, "vocab": 10_000, "embed": 100, "hidden": 200, "tags": 3}
TINY = {"batch": 3, "time": 5, "vocab": 20, "embed": 6, "hidden": 4, "tags": 3}
GROWTH: dict[str, tuple[int, ...]] = {}


def make_batch(sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """``words``: i32[batch, time] ids from 2 (0 is padding, 1 unknown); ``mask``: all-True bool; ``tags``: i32."""
    rng = np.random.default_rng(seed)
    shape = (sizes["batch"], sizes["time"])
    return {"words": rng.integers(2, sizes["vocab"], shape).astype(np.int32),
            "mask": np.ones(shape, dtype=bool),
            "tags": rng.integers(0, sizes["tags"], shape).astype(np.int32)}


def make_model(sizes: Mapping[str, int]) -> BiLSTMTagger:
    return BiLSTMTagger(num_tags=sizes["tags"], vocab_size=sizes["vocab"], embed_dim=sizes["embed"], char_features=0,
                        hidden=sizes["hidden"], num_layers=1, dropout=0.0, crf=False)


def init(model: BiLSTMTagger, key, batch: Mapping[str, np.ndarray]):
    return model.init(key, batch["words"], batch["mask"])


def loss(model: BiLSTMTagger, variables, batch):
    """Mean per-token softmax cross-entropy over the real tokens; no collection changes."""
    emissions = model.apply(variables, batch["words"], batch["mask"], train=True)["emissions"]
    return softmax_cross_entropy(emissions, batch["tags"], where=batch["mask"]), {}
