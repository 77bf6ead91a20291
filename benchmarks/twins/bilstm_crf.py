"""A plain PyTorch BiLSTM-CRF with medjax's NER features (the twin of `medjax train ner`'s default model).

Word embedding 100, a character CNN (embedding 25, ``Conv1d`` 50 filters of width 3, max over the word's characters),
a case-pattern embedding 8, dropout 0.5 on the features and on the BiLSTM outputs, word dropout 0.05, a packed
bidirectional ``nn.LSTM`` of 100 per direction, a linear layer to the tags and a CRF (Lample et al. 2016) whose
forward algorithm loops over time, as the usual PyTorch implementations do. Reads medjax's batches as they are:
``words``, ``chars``, ``case``, ``tags``, ``mask`` and ``example_mask`` (False on padding rows).
"""

from __future__ import annotations

import torch
from torch import nn

UNK_ID = 1


class BiLSTMCRF(nn.Module):
    def __init__(self, vocab: int, tags: int, cases: int, embed: int = 100, char_embed: int = 25,
                 char_features: int = 50, case_dim: int = 8, hidden: int = 100, dropout: float = 0.5,
                 word_dropout: float = 0.05):
        super().__init__()
        self.word_dropout = word_dropout
        self.words = nn.Embedding(vocab, embed)
        self.chars = nn.Embedding(257, char_embed)
        self.conv = nn.Conv1d(char_embed, char_features, 3, padding=1)
        self.case = nn.Embedding(cases, case_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed + char_features + case_dim, hidden, batch_first=True, bidirectional=True)
        self.emissions = nn.Linear(2 * hidden, tags)
        self.transitions = nn.Parameter(torch.zeros(tags, tags))
        self.start = nn.Parameter(torch.zeros(tags))
        self.end = nn.Parameter(torch.zeros(tags))

    def features(self, words, chars, case, mask):
        batch, time, length = chars.shape
        if self.training and self.word_dropout:
            words = torch.where((torch.rand(words.shape) < self.word_dropout) & mask, UNK_ID, words)
        present = (chars != 0).reshape(batch * time, length)
        x = self.chars(chars.reshape(batch * time, length)) * present[..., None]
        x = self.conv(x.transpose(1, 2)).masked_fill(~present[:, None], float("-inf")).amax(-1)
        x = torch.where(present.any(-1, keepdim=True), x, 0.0).reshape(batch, time, -1)
        return self.dropout(torch.cat([self.words(words), x, self.case(case)], -1))

    def forward(self, words, chars, case, mask):
        """Emissions f32[batch, time, tags]; rows with no token (padding rows of the last batch) get length 1."""
        x = self.features(words, chars, case, mask)
        lengths = mask.sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=words.shape[1])
        return self.emissions(self.dropout(out))

    def log_likelihood(self, emissions, tags, mask):
        """The CRF's log p(tags | emissions) per sentence; every sentence has a first real token."""
        rows = torch.arange(tags.shape[0])
        score = self.start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        alpha = self.start + emissions[:, 0]
        for t in range(1, tags.shape[1]):
            valid = mask[:, t]
            step = self.transitions[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]]
            score = score + step * valid
            after = torch.logsumexp(alpha[:, :, None] + self.transitions + emissions[:, t, None], dim=1)
            alpha = torch.where(valid[:, None], after, alpha)
        last = tags[rows, mask.sum(1) - 1]
        return score + self.end[last] - torch.logsumexp(alpha + self.end, dim=1)

    def loss(self, batch) -> torch.Tensor:
        """The mean negative log-likelihood over the batch's real sentences (medjax's NER loss)."""
        real = batch["example_mask"]
        mask = batch["mask"] & real[:, None]
        mask[:, 0] |= ~real  # padding rows: one dummy token, dropped from the mean below
        words, chars, case = (batch[name].long() for name in ("words", "chars", "case"))
        tags = batch["tags"].long().clamp(min=0)  # padding positions may hold -1
        emissions = self(words, chars, case, mask)
        return -(self.log_likelihood(emissions, tags, mask) * real).sum() / real.sum()
