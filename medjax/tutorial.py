"""The tutorial's own training loop, on medjax's parts: what `experiments/tutorial/*.py` run.

The loop is the tutorial's (Adam, lr 1e-3, batch 64, 10 epochs, one ``Epoch [k/10], Loss: x`` line per epoch); the
data split (`ArraySplit`), the batch adapter (`FromBatch`), the batching and the jitted, donated `train_step` are the
library's, the same a `medjax train` run uses. The data are random tensors with a learnable label, so the falling loss
shows learning, not memorised noise.
"""

from __future__ import annotations

import argparse
from typing import Callable

import flax.linen as nn
import jax
import numpy as np

from medjax.data.splits import ArraySplit
from medjax.train import batching
from medjax.train.config import TrainConfig
from medjax.train.losses import softmax_cross_entropy
from medjax.train.optim import make_optimizer
from medjax.train.state import init_train_state
from medjax.train.steps import train_step
from medjax.train.task import FromBatch


def classification_loss(logits, batch):
    """Mean softmax cross-entropy over the real rows of the batch (the tutorial's ``nn.CrossEntropyLoss``)."""
    return softmax_cross_entropy(logits, batch["label"], where=batch["example_mask"]), {}


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
    """Trains ``model`` on ``data`` (``x``, optionally ``mask``, and ``label``) as the tutorial does.

    Returns:
      The mean training loss of each epoch.
    """
    split = ArraySplit(data)
    adapter = FromBatch(model, ("x", "mask") if "mask" in data else ("x",))
    steps_per_epoch = -(-len(split) // batch_size)
    tx = make_optimizer(TrainConfig(optimizer="adam", lr=lr, schedule="constant"), epochs * steps_per_epoch)
    key = jax.random.key(seed)
    state = init_train_state(adapter, tx, next(batching.padded_batches(split, batch_size)), key)
    history = []
    for epoch in range(epochs):
        losses = []
        for batch in batching.padded_batches(split, batch_size, batching.epoch_order(seed, epoch, len(split))):
            state, metrics = train_step(state, batch, key, loss_fn)
            losses.append(metrics["loss"])
        history.append(float(np.mean([m.value() for m in jax.device_get(losses)])))
        print(f"Epoch [{epoch + 1}/{epochs}], Loss: {history[-1]:.4f}", flush=True)
    return history
