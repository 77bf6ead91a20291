"""What a task hands the one training loop.

A task (MedMNIST, NER, abstract classification, ...) supplies data, a model, a loss and its metrics; the loop in
`medjax.train.loop` is written once and knows nothing about images or text.

Batches are dicts of NumPy arrays with a leading batch axis. The loop pads the last, short batch of a split up to the
batch size and sets ``batch["example_mask"]`` (bool[batch]; False on padding rows) on *every* batch, so that shapes never
change (no recompilation) and padding never counts: ``loss`` and ``predict`` must honour ``example_mask``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import flax.linen as nn
import jax
import numpy as np

Batch = Mapping[str, np.ndarray]


class Split(Protocol):
    """One split of a data set, held in host memory."""

    def __len__(self) -> int:
        """Number of examples."""

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[Batch]:
        """Yields batches of ``batch_size`` examples, in ``order`` (a permutation of ``range(len(self))``) if given.

        The last batch may be short; the loop pads it. Splits with variable-length sequences pad each batch to a
        length bucket and carry their own masks (``batch["mask"]``).
        """


@dataclasses.dataclass(frozen=True)
class Task:
    """Everything the loop needs to train, select, evaluate and report a model.

    Attributes:
      name: the task's name, as on the command line (``medmnist``, ``ner``, ``textclf``).
      model: a Linen module called as ``model.apply(variables, batch, train=bool, rngs={"dropout": key},
        mutable=[...])``; it reads what it needs from the batch dict. Batch norm statistics, if any, live in the
        ``batch_stats`` collection.
      splits: ``{"train": Split, "val": Split, "test": Split}``.
      loss: ``loss(outputs, batch) -> (scalar loss, {name: per-batch sum})``, traced inside the jitted step; the
        loss is the mean over the valid examples (or tokens) of the batch.
      predict: ``predict(outputs, batch) -> pytree of arrays``, traced inside the jitted eval step; what the host
        needs to score a split (class scores and labels, decoded tags, ...). Padding rows are dropped on the host
        using ``batch["example_mask"]``, so every leaf has a leading batch axis.
      score: ``score(predictions) -> {metric: float}`` on the host, given the concatenation of ``predict`` over a
        split (padding rows already removed).
      select_metric: the validation metric used for model selection (higher is better), e.g. ``"auc"``.
      describe: free-form facts written to ``config.json`` (class names, vocabulary size, ...).
      class_names: names of the classes, in label order (used by plots).
      batch_spec: ``{key: medjax.train.batching.ArraySpec}``, what the batch entries must be (dtype kind, rank,
        label range); the loop checks every batch on the host and names the key, the expectation and what came.
        Optional: without it the loop only rejects NaN and inf in float entries.
    """

    name: str
    model: nn.Module
    splits: Mapping[str, Split]
    loss: Callable[[Any, Batch], tuple[jax.Array, Mapping[str, jax.Array]]]
    predict: Callable[[Any, Batch], Any]
    score: Callable[[Any], Mapping[str, float]]
    select_metric: str
    describe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    class_names: Sequence[str] = ()
    batch_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)
