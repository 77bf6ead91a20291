"""Tiny synthetic tasks for the training-machinery tests: an MLP (optionally with batch norm and dropout) on blobs."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.data.splits import ArraySplit
from medjax.train import losses
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.metrics import Mean
from medjax.train.task import FromOutputs, Task

FEATURES, CLASSES = 4, 3


class TinyMLP(nn.Module):
    hidden: int = 16
    batch_norm: bool = False
    dropout: float = 0.0

    @nn.compact
    def __call__(self, batch, train: bool = False):
        x = nn.Dense(self.hidden, name="hidden")(batch["x"])
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="norm")(x)
        x = nn.relu(x)
        if self.dropout:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(CLASSES, name="out")(x)


def blobs(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` points around three well-separated centres in 4-D: x f32[n, 4], label int32[n]."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, CLASSES, n).astype(np.int32)
    centres = np.eye(CLASSES, FEATURES, dtype=np.float32) * 3.0
    x = centres[label] + rng.normal(0, 1.0, (n, FEATURES)).astype(np.float32)
    return {"x": x, "label": label}


def classification_loss(logits, batch):
    loss = losses.softmax_cross_entropy(logits, batch["label"], where=batch["example_mask"])
    return loss, {"correct": Mean.of(jnp.argmax(logits, -1) == batch["label"], where=batch["example_mask"])}


def predict_outputs(logits, batch):
    return {"scores": jax.nn.softmax(logits), "labels": batch["label"]}


def score(predictions):
    pred = np.argmax(predictions["scores"], axis=-1)
    return {
        "accuracy": float(np.mean(pred == predictions["labels"])),
        "mean_score": float(predictions["scores"].max(-1).mean()),  # moves every epoch: selection is exercised
    }


def make_task(
    n_train: int = 44, n_eval: int = 21, batch_norm: bool = False, dropout: float = 0.0, loss=classification_loss
) -> Task:
    """A 3-class blob task; sizes chosen so the last batch of every split is short (padding is exercised)."""
    return Task(
        name="blobs",
        model=TinyMLP(batch_norm=batch_norm, dropout=dropout),
        splits={
            "train": ArraySplit(blobs(n_train, 0)),
            "val": ArraySplit(blobs(n_eval, 1)),
            "test": ArraySplit(blobs(n_eval, 2)),
        },
        loss=loss,
        predict=FromOutputs(predict_outputs),
        score=score,
        select_metric="mean_score",
        class_names=("a", "b", "c"),
        batch_spec={"x": ArraySpec("f", rank=2), "label": ArraySpec("i", rank=1, low=0, high=CLASSES)},
    )


@dataclasses.dataclass(frozen=True)
class TinyConfig(TrainConfig):
    hidden: int = option(16, "not read by the loop: a task field, as a task's Config would have")


def make_config(workdir, **overrides) -> TinyConfig:
    defaults = dict(
        workdir=str(workdir), epochs=3, batch_size=8, eval_batch_size=8, lr=0.05, progress=False, log_every=0
    )
    return TinyConfig(**{**defaults, **overrides})


@pytest.fixture(scope="session")
def tiny_task():
    return make_task


@pytest.fixture(scope="session")
def tiny_config():
    return make_config
