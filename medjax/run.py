"""A trained run as an object: `load` a work folder, `Run.predict` new inputs, without the training data.

`load` reads ``config.json``, ``meta.json`` (vocabularies, class names, target statistics: what the data side derived
from train, written once when the run started) and the ``model`` item of the best (or latest) checkpoint, restored into
the structure of ``jax.eval_shape(model.init, ...)``. It builds no optimizer, reads no data, sets up no DP or
ensemble training, and writes nothing.

`Run.predict` takes each task's inputs in their natural form and returns columns (NumPy arrays, or lists where rows
differ in length), one row per input (per beat for ECG records):

| task | inputs | columns |
|---|---|---|
| medmnist | ``u8[n, h, w(, c)]`` images, or image files (PNG/JPEG) | probabilities, label, class |
| textclf | texts | probabilities, label, class |
| ner | sentences (split on spaces) or token lists | tokens, tags |
| molecules | SMILES strings | prediction (or probability, label), valid |
| ecg | WFDB record paths (or the shared ``.npz`` copies) | record, sample, probabilities, label, class |
| treatment | person ids of the run's OMOP database | person_id, drugs (top-k names), concept_ids, scores |
| translation | source sentences | translation |

Example (runs as written, after the README's main job):
  >>> import medjax
  >>> run = medjax.load("runs/breastmnist-resnet18")          # the best checkpoint; which="latest" also works
  >>> run.task, run.meta["class_names"]
  ('medmnist', ['malignant', 'normal, benign'])
  >>> import numpy as np
  >>> images = np.zeros((2, 28, 28), np.uint8)                # or ["scan1.png", "scan2.png"]
  >>> out = run.predict(images)
  >>> out["probabilities"].shape, out["class"]
  ((2, 2), [...])
  >>> run.predict(images, coverage=0.9)["set"]              # split-conformal prediction sets, calibrated on val
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from medjax.errors import DataError, UserError
from medjax.train import batching, ensemble, evaluation, sweep
from medjax.train.checkpoint import failure, restore_model
from medjax.train.workdir import has_checkpoint, read_meta


@dataclasses.dataclass
class Run:
    """A trained model with everything needed to use it.

    Attributes:
      workdir: the run folder it was loaded from.
      task: the task's name (``medmnist``, ``ner``, ...).
      config: the task's ``Config`` as the run was trained.
      meta: ``meta.json``: vocabularies, class names, target statistics, buckets.
      model: the Linen module (``model.apply(variables, batch, train=False)``).
      variables: ``{"params": ..., other collections}``; every leaf has a leading member axis for an ensemble.
      record: the checkpoint's record (``epoch``, ``best_val``, ...).
    """

    workdir: pathlib.Path
    task: str
    config: Any
    meta: dict[str, Any]
    model: Any = dataclasses.field(repr=False)
    variables: Any = dataclasses.field(repr=False)
    record: dict[str, Any] = dataclasses.field(repr=False)
    module: Any = dataclasses.field(repr=False)
    _step: Callable | None = dataclasses.field(default=None, repr=False)

    @property
    def members(self) -> int:
        return getattr(self.config, "ensemble", 1)

    def predict(self, inputs: Any, **options: Any) -> dict[str, Any]:
        """Predictions for ``inputs`` in the task's natural form (see the module docstring); ``options`` are the
        task's (``coverage=0.9`` for prediction sets where the run was calibrated, ``top_k`` for treatment)."""
        options = _taken_options(self.module.decode, options, self.task)
        split = self.module.encode(self.config, self.meta, inputs)
        predictions = self.predict_split(split)
        return self.module.decode(self.config, self.meta, predictions, inputs, **options)

    def predict_split(self, split: Any, batch_size: int | None = None, reorder: bool = True) -> dict[str, np.ndarray]:
        """The task's inference over a `medjax.data.splits` split whose batches carry the model's inputs and an
        ``index`` (each example's position): predictions in index order (``reorder``; else in the split's batch
        order, as the loop scores them), padding removed."""
        batch_size = batch_size or self.config.eval_batch_size
        outputs, masks = [], []
        for batch in batching.padded_batches(split, batch_size):
            outputs.append(self.step(batch))
            masks.append(batch["example_mask"])
        if not outputs:
            raise UserError(None, "expected at least one input to predict, got none")
        predictions = evaluation.concatenate(jax.device_get(outputs), masks, axis=1 if self.members > 1 else 0)
        if self.members > 1:
            combine = getattr(self.module, "combine", None) or ensemble.mean_probabilities
            predictions = combine(predictions)
        return evaluation.in_input_order(predictions, len(split)) if reorder else predictions

    def step(self, batch: dict[str, np.ndarray]) -> Any:
        """One batch through the task's predict, jitted (compiled once per batch shape)."""
        if self._step is None:
            predict = self.module.inference(self.config, self.meta)

            def one(variables, batch):
                return predict(self.model.apply, variables, batch)

            self._step = jax.jit(jax.vmap(one, in_axes=(0, None)) if self.members > 1 else one)
        return self._step(self.variables, batch)


def _taken_options(decode: Callable, options: dict[str, Any], task: str) -> dict[str, Any]:
    """``options`` that the task's ``decode`` takes (None: not given); refuses any other before the model runs
    (``--top-k`` for images)."""
    import inspect

    from medjax.errors import ConfigError

    taken = list(inspect.signature(decode).parameters)[4:]  # after config, meta, predictions, inputs
    for name, value in options.items():
        if name not in taken and value is not None:
            flags = ", ".join("--" + other.replace("_", "-") for other in taken) or "none"
            raise ConfigError("--" + name.replace("_", "-"), f"expected an option that a {task} run takes ({flags}), "
                                                             f"got {value}")
    return {name: value for name, value in options.items() if name in taken and value is not None}


def load(workdir: str | os.PathLike, which: str = "best") -> Run:
    """The trained model of a `medjax train` run folder, ready to predict; reads no training data, writes nothing.

    Args:
      workdir: the run folder.
      which: ``"best"`` (the epoch chosen on validation, what ``results.json`` reports) or ``"latest"``.

    Raises:
      medjax.errors.UserError: not a run folder, no checkpoint of that kind, or a damaged file (named).
    """
    from medjax.tasks import saved_config

    if which not in ("best", "latest"):
        raise UserError(None, f"expected which='best' or 'latest', got {which!r}")
    workdir = pathlib.Path(workdir)
    name, module, config = saved_config(workdir)
    if not has_checkpoint(workdir, which):
        raise UserError(workdir, f"expected a run with a finished epoch, found no {which} checkpoint under "
                                 f"checkpoints/")
    meta = read_meta(workdir)
    if meta is None:
        # A run made before meta.json: its data side is rebuilt in memory (its data must be where it was).
        print(f"{workdir}: made before meta.json; rebuilding its vocabularies from {getattr(config, 'data_dir', '')}",
              file=sys.stderr)
        meta = dict(module.build_task(config).meta)
    model = module.build_model(config, meta)
    abstract = _abstract_variables(model, meta, config)
    directory = workdir / "checkpoints"
    try:
        arrays, record = restore_model(directory, which, abstract)
    except (ValueError, KeyError, OSError) as err:
        raise DataError(directory / which, f"expected a readable checkpoint, got a damaged one "
                                           f"({failure(err)})") from None
    variables = {"params": arrays["params"], **(arrays.get("collections") or {})}
    if sweep.settings(config):  # a sweep's checkpoint stacks every setting: the model is the one chosen on validation
        variables = ensemble.member(variables, int(record["best_val"]["setting"]))
    return Run(workdir, name, config, meta, model, variables, record, module)


def _abstract_variables(model: Any, meta: dict[str, Any], config: Any) -> Any:
    """``{"params", "collections"}`` as ShapeDtypeStructs (on the first local device), from ``meta["init_batch"]``;
    None when the run predates it (then restored as saved)."""
    spec = meta.get("init_batch")
    if not spec:
        return None
    batch = {key: jnp.zeros(s["shape"], s["dtype"]) for key, s in spec.items()}

    def init():
        keys = jax.random.split(jax.random.key(0), 4)
        rngs = {"params": keys[0], "dropout": keys[1], "word_dropout": keys[2], "noise": keys[3]}
        variables = dict(model.init(rngs, batch, train=False))
        variables.pop("intermediates", None)
        variables.pop("cache", None)
        return {"params": variables.pop("params"), "collections": variables}

    shapes = jax.eval_shape(init)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    swept = sweep.settings(config)
    members = len(swept[1]) if swept else getattr(config, "ensemble", 1)
    lead = (members,) if members > 1 else ()
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(lead + s.shape, s.dtype, sharding=device), shapes)
