"""What the three tutorial programs share: a batch-dict adapter for the tutorial models and the tutorial's 10-epoch loop.

The loop is the tutorial's own (Adam, lr 1e-3, batch 64, 10 epochs, one ``Epoch [k/10], Loss: x`` line per epoch), but each
step is medjax's jitted, donated `train_step`; the data are random tensors with a learnable label, so the falling loss
shows learning, not memorised noise.
"""

from __future__ import annotations

import argparse
from typing import Callable

import flax.linen as nn
import jax
import numpy as np

from medjax.train.config import TrainConfig
from medjax.train.losses import softmax_cross_entropy
from medjax.train.optim import make_optimizer
from medjax.train.state import init_train_state
from medjax.train.steps import train_step


class BatchModel(nn.Module):
    """Calls a tutorial model on ``batch["x"]`` (and ``batch["mask"]`` when the batch has one)."""

    model: nn.Module

    def __call__(self, batch, train: bool = False):
        if "mask" in batch:
            return self.model(batch["x"], batch["mask"], train=train)
        return self.model(batch["x"], train=train)


def classification_loss(logits, batch):
    """Mean softmax cross-entropy over the real rows of the batch (the tutorial's ``nn.CrossEntropyLoss``)."""
    loss = softmax_cross_entropy(logits, batch["label"], where=batch["example_mask"])
    return loss, {}


def padded_noise(n: int, time: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """``(x f32[n, time, 10], mask bool[n, time], rng)``: noise sequences of lengths uniform in [10, time], zero past
    each end, and the generator for anything else the caller draws."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, time, 10)).astype(np.float32)
    lengths = rng.integers(10, time + 1, size=n)
    mask = np.arange(time)[None, :] < lengths[:, None]
    return np.where(mask[..., None], x, 0.0).astype(np.float32), mask, rng


def sequence_program(description: str, model: nn.Module, label: Callable, argv=None) -> list[float]:
    """The LSTM and attention programs: 50-step sequences labelled by ``label(x, mask) -> int[n]``, trained as the
    tutorial does."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2048, help="random sequences to train on (default: 2048)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default: 10, as in the tutorial)")
    args = parser.parse_args(argv)
    x, mask, _ = padded_noise(args.examples, 50, seed=0)
    data = {"x": x, "mask": mask, "label": label(x, mask).astype(np.int32)}
    return run(model, data, epochs=args.epochs)


def run(model: nn.Module, data: dict[str, np.ndarray], loss_fn: Callable = classification_loss, *, epochs: int = 10,
        batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Trains ``model`` on ``data`` (a dict of arrays with a leading example axis) as the tutorial does.

    Returns:
      The mean training loss of each epoch.
    """
    n = len(data["label"])
    steps_per_epoch = n // batch_size
    config = TrainConfig(optimizer="adam", lr=lr, schedule="constant")
    tx = make_optimizer(config, total_steps=epochs * steps_per_epoch)
    first = {k: v[:batch_size] for k, v in data.items()} | {"example_mask": np.ones(batch_size, bool)}
    key = jax.random.key(seed)
    state = init_train_state(BatchModel(model), tx, first, key)
    order_rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        order = order_rng.permutation(n)
        losses = []
        for i in range(steps_per_epoch):
            rows = order[i * batch_size:(i + 1) * batch_size]
            batch = {k: v[rows] for k, v in data.items()} | {"example_mask": np.ones(batch_size, bool)}
            state, metrics = train_step(state, batch, key, loss_fn)
            losses.append(metrics["loss"])
        history.append(float(np.mean(jax.device_get(losses))))
        print(f"Epoch [{epoch + 1}/{epochs}], Loss: {history[-1]:.4f}", flush=True)
    return history
