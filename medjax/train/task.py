"""The task contract: what a task hands the one training loop.

A task (MedMNIST, NER, abstract classification, ...) supplies splits, a model, a loss and a score; the loop in
`medjax.train.loop` is written once and knows nothing about images or text. A new task is a config, a reader, a model
and its loss/score: the splits (`medjax.data.splits`), the batch adapter (`FromBatch`), name checks (the config's
``choices``) and the step, loop, checkpoints and reports are shared.

Batches are dicts of NumPy arrays with a leading batch axis. The loop pads the last, short batch of a split up to the
batch size and sets ``batch["example_mask"]`` (bool[batch]; False on padding rows) on *every* batch, so that shapes never
change (no recompilation) and padding never counts: ``loss`` and ``predict`` must honour ``example_mask``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import flax.linen as nn
import jax

from medjax.train.metrics import Mean

Batch = Mapping[str, Any]
# loss(outputs, batch) -> (f32[] the mean loss over the batch's valid items, {name: Mean} metrics to report).
LossFn = Callable[[Any, Batch], tuple[jax.Array, Mapping[str, Mean]]]
# predict(apply, variables, batch) -> pytree of arrays with a leading batch axis; ``apply`` is the model's
# ``apply``, so a predict may run the model more than once (step-by-step decoding, ``method=``).
PredictFn = Callable[[Callable, Any, Batch], Any]


class Split(Protocol):
    """One split of a data set, held in host memory (`medjax.data.splits` has the generic ones)."""

    def __len__(self) -> int:
        """Number of examples."""

    def batches(self, batch_size: int, order: Any = None) -> Iterator[Batch]:
        """Yields batches of ``batch_size`` examples, in ``order`` (a permutation of ``range(len(self))``) if given.

        The last batch may be short; the loop pads it.
        """


@dataclasses.dataclass(frozen=True)
class FromOutputs:
    """A predict that runs the model once in inference mode and maps its outputs: ``fn(outputs, batch)``.

    Hashable through ``fn``, so the jitted eval step compiles once per task.
    """

    fn: Callable[[Any, Batch], Any]

    def __call__(self, apply: Callable, variables: Any, batch: Batch) -> Any:
        return self.fn(apply(variables, batch, train=False), batch)


class FromBatch(nn.Module):
    """Calls ``module`` on entries of the batch dict: the one adapter between batches and models.

    Attributes:
      module: a Linen module called as ``module(*[batch[k] for k in inputs], train=train)``.
      inputs: the batch keys passed positionally; a key the batch lacks is passed as None (optional features).
    """

    module: nn.Module
    inputs: tuple[str, ...]

    def __call__(self, batch: Batch, train: bool = False, **kwargs):
        return self.module(*(batch.get(key) for key in self.inputs), train=train, **kwargs)


@dataclasses.dataclass(frozen=True)
class Task:
    """Everything the loop needs to train, select, evaluate and report a model.

    Attributes:
      name: the task's name, as on the command line (``medmnist``, ``ner``, ``textclf``).
      model: a Linen module called as ``model.apply(variables, batch, train=bool, rngs={stream: key},
        mutable=[...])``. Every collection its ``init`` makes besides ``params`` (``batch_stats``, ...) is kept in
        the train state and is mutable in training.
      splits: ``{"train": Split, "val": Split, "test": Split}``.
      loss: ``loss(outputs, batch) -> (f32[] loss, {name: Mean})``, traced inside the jitted step; the loss is the
        mean over the valid examples (or tokens) of the batch, the metrics say over what they average.
      predict: ``predict(apply, variables, batch) -> pytree``, traced inside the jitted eval step (`FromOutputs`
        wraps the common case); every leaf has a leading batch axis, and the host drops padding rows.
      score: ``score(predictions) -> {metric: float}`` on the host, given a split's predictions without padding.
      select_metric: the validation metric used for model selection (higher is better), e.g. ``"auc"``.
      rng_streams: the named random streams the model draws from in training (``"dropout"``, ...); each step
        folds the step number into the run's key, so a resumed run draws the same numbers.
      describe: facts written to ``config.json`` (class names, vocabulary size, ...).
      class_names: names of the classes, in label order (used by plots).
      batch_spec: ``{key: medjax.train.batching.ArraySpec}``: what the batch entries must be (dtype kind, rank,
        value range); the loop checks every batch on the host. Without it the loop only rejects NaN and inf.
      meta: what the model side needs at inference, JSON values (vocabularies, class and tag names, target mean and
        sd, buckets): derived from the training split when a run starts, written once to ``meta.json`` and handed
        back to the task's ``build_model``, ``encode`` and ``decode`` when the run is loaded (`medjax.load`).
      combine: ``combine(stacked) -> predictions`` for ensembles: the members' predictions (each leaf with a leading
        member axis) made into the ensemble's; None: mean class probabilities (`medjax.train.ensemble`).
    """

    name: str
    model: nn.Module
    splits: Mapping[str, Split]
    loss: LossFn
    predict: PredictFn
    score: Callable[[Any], Mapping[str, float]]
    select_metric: str
    rng_streams: tuple[str, ...] = ("dropout",)
    describe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    class_names: Sequence[str] = ()
    batch_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    combine: Callable[[Any], Any] | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
