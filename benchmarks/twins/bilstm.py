"""PyTorch twin of the NER-size BiLSTM tagger: ``nn.Embedding``, bidirectional ``nn.LSTM``, per-token ``nn.Linear``."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.twins import weights


class BiLSTMTagger(torch.nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, tags: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.lstm = torch.nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.emissions = torch.nn.Linear(2 * hidden, tags)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        """words: int64[batch, time] -> emissions f32[batch, time, tags]."""
        outputs, _ = self.lstm(self.embed(words))
        return self.emissions(outputs)


def build(sizes: Mapping[str, int], variables: Mapping) -> BiLSTMTagger:
    module = BiLSTMTagger(sizes["vocab"], sizes["embed"], sizes["hidden"], sizes["tags"])
    params = variables["params"]
    weights.embedding(module.embed, params["features"]["word_embed"], "features.word_embed")
    for suffix in ("", "_reverse"):
        weights.lstm_layer(module.lstm, params["bilstm"][f"layer_0{suffix}"], f"_l0{suffix}", f"bilstm.layer_0{suffix}")
    weights.linear(module.emissions, params["emissions"], "emissions")
    return module


def inputs(batch: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(words int64[batch, time], tags int64[batch, time]); the twin runs unpacked, so every token must be real."""
    if not batch["mask"].all():
        raise ValueError("the BiLSTM twin runs full-length sentences; got a mask with padding "
                         f"({int((~batch['mask']).sum())} padded tokens)")
    return torch.from_numpy(batch["words"].astype(np.int64)), torch.from_numpy(batch["tags"].astype(np.int64))


def loss(module: torch.nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    words, tags = inputs
    emissions = module(words)
    return F.cross_entropy(emissions.reshape(-1, emissions.shape[-1]), tags.reshape(-1))
