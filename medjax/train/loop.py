"""The one training loop: every task trains, selects, resumes and reports through `train` and `evaluate`.

Per epoch: the training split in an order that depends only on ``(seed, epoch)``, every batch padded to the batch size
(``example_mask`` marks the real rows; shapes never change, so each step compiles once), checked on the host, and fed
to the jitted `train_step`, sharded over ``config.num_devices`` devices; then the validation split is predicted and
scored, one line is appended to ``metrics.jsonl`` and the latest (and, if improved on ``task.select_metric``, best)
checkpoint is written. At the end the best checkpoint is reloaded from disk and scored on the test split.

Files in ``config.workdir``: ``config.json``, ``metrics.jsonl``, ``checkpoints/{latest,best}/``, ``results.json``,
``predictions_test.npz``.

Several processes (`medjax.train.distributed`): every process runs this loop on the same global batches, hands its
devices only its own rows, and writes and restores checkpoints together with the others through Orbax; process 0
alone writes the other files, so a two-process run's folder is the same as a one-process run's.

Resuming: calling `train` again on the same workdir (with the same config) continues after the latest checkpoint and
ends with the same numbers as an uninterrupted run: the data order, the dropout keys (folded with the step) and the
optimizer state all come from the checkpoint and the seed.

Example:
  >>> results = train(task, config, task_name="medmnist")  # also writes config.workdir/results.json
  >>> evaluate(task, config)["test_auc"] == results["test_auc"]
  True
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import medjax
from medjax.errors import ConfigError, UserError
from medjax.train import (batching, distributed, ensemble, evaluation, metrics, optim, ownership, privacy, sharding,
                          steps, sweep)
from medjax.train.checkpoint import RunCheckpoints
from medjax.train.config import TrainConfig, as_json
from medjax.train.progress import ProgressReporter, format_metrics
from medjax.train.state import TrainState, init_train_state
from medjax.train.tensorboard import EventLog
from medjax.train.task import Task
from medjax.train.workdir import batch_spec, flat_arrays, npz_bytes, write_atomically, write_meta


class TrainingDiverged(UserError, FloatingPointError):
    """A non-finite loss or gradient norm: the recipe (learning rate, clipping) needs changing, not the code."""


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """What a run starts from, the same fresh, resumed or evaluated: the mesh, the initial (replicated) state and key,
    the DP plan, the ensemble's (or sweep's) size and strategy, the swept option and values, and the shapes of the
    batch the model was initialised on."""

    mesh: Mesh
    state: TrainState
    rng: jax.Array
    steps_per_epoch: int
    dp: privacy.DPPlan | None = None
    members: int = 1
    how: str = "map"
    init_batch: dict = dataclasses.field(default_factory=dict)
    swept: tuple[str, tuple[float, ...]] | None = None


def train(task: Task, config: TrainConfig, task_name: str, *, stop_after_epoch: int | None = None) -> dict | None:
    """Trains ``task`` as ``config`` says, resuming from ``config.workdir``'s latest checkpoint if there is one.

    Args:
      task: data, model, loss and metrics (see `medjax.train.task.Task`).
      config: the training config (a task's `Config`).
      task_name: the task's name on the command line, written to ``config.json`` so the run can be reloaded.
      stop_after_epoch: end this call after this many epochs (counted from the start of the run), leaving the run
        resumable, as a preempted job would; None trains to the end.

    Returns:
      The contents of ``results.json`` (``best_epoch``, ``val_*`` at the best epoch, ``test_*``, ``wall_seconds``),
      or None when stopped by ``stop_after_epoch`` before the last epoch. Every process of a multi-process run
      returns the same results; only process 0 writes files.

    Raises:
      FloatingPointError: a non-finite loss or gradient norm, naming the step; the latest checkpoint stays intact.
      ValueError: a bad config, task or batch, naming what was expected and what came.
    """
    wall_start = time.perf_counter()
    _check_task(task)
    workdir = pathlib.Path(config.workdir)
    run = setup(task, config)  # every option and the data checked before anything is written
    # With several processes, process 0 writes the run's files; all of them write and read checkpoints together.
    writer = distributed.is_writer()
    if writer:
        ownership.claim(workdir, config, task_name)
    distributed.barrier("medjax-workdir-claimed")
    metrics_path = workdir / "metrics.jsonl"
    reporter = (ProgressReporter(config.epochs, run.steps_per_epoch, config.log_every, config.progress) if writer
                else ProgressReporter(config.epochs, run.steps_per_epoch, 0, False, stream=io.StringIO()))
    with RunCheckpoints(workdir / "checkpoints", say=reporter.line) as checkpoints:
        resuming = checkpoints.latest_epoch() is not None
        if writer and (not resuming or not (workdir / "meta.json").exists()):
            write_meta(workdir, {**task.meta, "init_batch": run.init_batch})
        state, rng = run.state, run.rng
        record: dict[str, Any] = {"epoch": 0, "step": 0, "best_epoch": None, "best_value": None, "best_val": {}}
        record["wall_seconds"] = 0.0
        if resuming:
            state, rng, record = checkpoints.restore_latest(state, rng)
            reporter.line(f"resuming {workdir} after epoch {record['epoch']} (step {record['step']})")
        if writer:
            _write_config(workdir, task, config, task_name)
            _truncate_history(metrics_path, record["epoch"])
        events = EventLog(workdir / "tensorboard", record["step"]) if config.tensorboard and writer else None
        earlier_wall = record["wall_seconds"]
        try:
            for epoch in range(record["epoch"] + 1, config.epochs + 1):
                epoch_start = time.perf_counter()
                reporter.start_epoch(epoch)
                state, step, train_metrics = train_epoch(state, rng, task, config, run, epoch, record["step"],
                                                          reporter, events)
                if run.dp:
                    train_metrics["dp_epsilon"] = run.dp.epsilon_after(step)
                val = score_val(task, run, predict_split(state, task, "val", config.eval_batch_size, run.mesh,
                                                         run.members, run.how, combine=not run.swept))
                value = evaluation.selection_value(val[task.select_metric])
                is_best = record["best_epoch"] is None or value > record["best_value"]
                line = {"epoch": epoch, "step": step, **train_metrics, **_prefixed("val", val)}
                line["seconds"] = time.perf_counter() - epoch_start
                record = {
                    "epoch": epoch,
                    "step": step,
                    "best_epoch": epoch if is_best else record["best_epoch"],
                    "best_value": value if is_best else record["best_value"],
                    "best_val": val if is_best else record["best_val"],
                    "wall_seconds": earlier_wall + time.perf_counter() - wall_start,
                }
                # The line first: a run killed before the checkpoint lands redoes the epoch and rewrites the line.
                if writer:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(line) + "\n")
                        f.flush()
                        os.fsync(f.fileno())
                checkpoints.save(state, rng, record, is_best)
                if events:
                    events.scalars(step, {key: value for key, value in train_metrics.items()
                                          if key.startswith("train_")}, "epoch")
                    events.scalars(step, val, "val")
                    events.flush()
                reporter.end_epoch(line)
                if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < config.epochs:
                    reporter.line(f"stopped after epoch {epoch} as asked; train again on {workdir} to resume")
                    if events:
                        events.close()
                    return None
        except BaseException:
            if events:
                events.close()
            raise
        finally:
            reporter.close()
        best_state, _, best_record = checkpoints.restore_best(state, rng)
        test_predictions, val_predictions = (
            _chosen(run, best_record, predict_split(best_state, task, split, config.eval_batch_size, run.mesh,
                                                    run.members, run.how, combine=not run.swept))
            for split in ("test", "val"))
    conformal_figures = evaluation.calibrate(workdir, _combined(val_predictions), _combined(test_predictions), writer)
    results = {
        "task": task_name,
        "select_metric": task.select_metric,
        "best_epoch": best_record["epoch"],
        **({"dp_epsilon": run.dp.epsilon_after(run.steps_per_epoch * config.epochs), "dp_delta": run.dp.delta,
            "dp_noise_multiplier": run.dp.noise_multiplier} if run.dp else {}),
        **_prefixed("val", best_record["best_val"]),
        **(_sweep_results(run, metrics_path, task, best_record) if run.swept else {}),
        **_prefixed("test", evaluation.score_split(task, test_predictions, "test")),
        **_prefixed("test", conformal_figures),
        "wall_seconds": earlier_wall + time.perf_counter() - wall_start,
    }
    if not writer:
        return results
    write_atomically(workdir / "predictions_test.npz", npz_bytes(flat_arrays(_combined(test_predictions))))
    # Last: a results.json is the mark of a finished run.
    if events:
        events.scalars(record["step"], {k.removeprefix("test_"): v for k, v in results.items()
                                        if k.startswith("test_")}, "test")
        events.text(record["step"], "config", "```json\n" + json.dumps(as_json(config), indent=2) + "\n```")
        events.close()
    write_atomically(workdir / "results.json", json.dumps(results, indent=2) + "\n")
    reporter.line("results: " + format_metrics(results))
    return results


def evaluate(task: Task, config: TrainConfig, splits: tuple[str, ...] = ("test",)) -> dict[str, Any]:
    """Reloads the best checkpoint of ``config.workdir`` and scores ``splits`` again.

    Returns:
      ``{"best_epoch": ..., "<split>_<metric>": ...}``; for the test split equal to the same entries of the run's
      ``results.json``.
    """
    state, record, run = _restore_best(task, config)
    results = {"best_epoch": record["epoch"]}
    for split in splits:
        predictions = _chosen(run, record, predict_split(state, task, split, config.eval_batch_size, run.mesh,
                                                         run.members, run.how, combine=not run.swept))
        results.update(_prefixed(split, evaluation.score_split(task, predictions, split)))
        if split == "test":
            results.update(_prefixed(split, evaluation.coverage(pathlib.Path(config.workdir), _combined(predictions))))
    print(format_metrics(results), flush=True)
    return results


def restore_best(task: Task, config: TrainConfig) -> tuple[TrainState, dict[str, Any]]:
    """The train state of the best checkpoint of ``config.workdir`` and its record (``epoch``, ``best_val``, ...)."""
    state, record, _ = _restore_best(task, config)
    return state, record


def _restore_best(task: Task, config: TrainConfig) -> tuple[TrainState, dict[str, Any], RunSetup]:
    _check_task(task)
    run = setup(task, config)
    directory = pathlib.Path(config.workdir) / "checkpoints"
    if not (directory / "best").is_dir():
        raise UserError(config.workdir, "expected the work folder of a `medjax train` run with a finished epoch, "
                                        "found no checkpoints/best/")
    with RunCheckpoints(directory) as checkpoints:
        state, _, record = checkpoints.restore_best(run.state, run.rng)
    return state, record, run


def _check_task(task: Task) -> None:
    missing = {"train", "val", "test"} - set(task.splits)
    if missing:
        raise ValueError(f"task {task.name!r} has splits {sorted(task.splits)}; expected train, val and test")
    for name in ("train", "val", "test"):
        if len(task.splits[name]) == 0:
            raise UserError(None, f"the {name} split of task {task.name!r} is empty; expected at least one example")


def setup(task: Task, config: TrainConfig) -> RunSetup:
    """The mesh, the initial (replicated) state and dropout key: the same for a fresh, resumed or evaluated run."""
    mesh = sharding.make_mesh(config.num_devices)
    sharding.check_divisible(config.batch_size, mesh, "batch_size")
    sharding.check_divisible(config.eval_batch_size, mesh, "eval_batch_size")
    train_split = task.splits["train"]
    dp = None
    if config.dp_epsilon is not None:
        dp = privacy.DPPlan.for_run(len(train_split), config.batch_size, config.epochs, config.dp_epsilon,
                                    config.dp_delta, config.dp_clip, multiple=mesh.size)
    steps_per_epoch = dp.steps_per_epoch if dp else math.ceil(len(train_split) / config.batch_size)
    if dp and config.ensemble > 1:
        raise ConfigError("--ensemble", "expected 1 with --dp-epsilon (each member would spend the budget), got "
                                        f"{config.ensemble}")
    swept = sweep.settings(config)
    if swept and (dp or config.ensemble > 1):
        raise ConfigError("--sweep", f"expected no --dp-epsilon and --ensemble 1 beside it (one stack of states per "
                                     f"run), got --sweep {config.sweep}")
    tx = optim.make_optimizer(config, steps_per_epoch * config.epochs, swept=swept is not None)
    first = next(batching.padded_batches(train_split, dp.max_batch if dp else config.batch_size))
    batching.check_batch(first, task.batch_spec, "the first train batch")
    states, rngs = [], []
    for seed in range(config.seed, config.seed + config.ensemble):
        init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
        states.append(init_train_state(task.model, tx, first, init_key, task.rng_streams))
        rngs.append(rng)
    if swept:  # one start, one key, one setting each
        states = [sweep.with_setting(states[0], swept[0], value) for value in swept[1]]
        rngs = rngs * len(states)
    members = len(states)
    state, rng = (states[0], rngs[0]) if members == 1 else (ensemble.stack(states), jnp.stack(rngs))
    if dp:
        privacy.check_model(state)
    how = ensemble.choose_strategy(state, first, rng, task.loss, task.rng_streams) if members > 1 else ""
    return RunSetup(mesh, sharding.replicate(state, mesh), sharding.replicate(rng, mesh), steps_per_epoch, dp,
                    members, how, batch_spec(first), swept)


def train_epoch(state, rng, task, config, run, epoch, step, reporter, events=None):
    """One pass over the training split (Poisson-sampled under DP), as `train` runs it: ``(state, step, metrics)``."""
    split, mesh = task.splits["train"], run.mesh
    data_seed = config.seed if config.data_seed is None else config.data_seed
    if run.dp:
        batches = privacy.poisson_batches(split, run.dp, data_seed, epoch - 1)
    else:
        batches = batching.padded_batches(split, config.batch_size, batching.epoch_order(data_seed, epoch - 1,
                                                                                          len(split)))
    totals = _TrainTotals(epoch, reporter, events, config.log_every)
    in_flight = None
    for index, batch in enumerate(batches):
        batching.check_batch(batch, task.batch_spec, f"train batch {index} of epoch {epoch}")
        if run.dp:
            state, step_metrics = privacy.dp_train_step(state, sharding.shard_batch(batch, mesh), rng, task.loss,
                                                        task.rng_streams, run.dp)
        elif run.members > 1:
            state, step_metrics = ensemble.ensemble_train_step(state, sharding.shard_batch(batch, mesh), rng,
                                                               task.loss, task.rng_streams, run.how)
        else:
            state, step_metrics = steps.train_step(state, sharding.shard_batch(batch, mesh), rng, task.loss,
                                                   task.rng_streams)
        step += 1
        # Read the previous step's metrics only now, so the device always has the next step queued.
        if in_flight is not None:
            totals.add(*in_flight)
        in_flight = (step, step_metrics)
    totals.add(*in_flight)
    return state, step, totals.summary()


class _TrainTotals:
    """Host-side sums of one epoch's step metrics; stops the run at the first non-finite loss or gradient norm."""

    def __init__(self, epoch: int, reporter: ProgressReporter, events: EventLog | None = None, log_every: int = 0):
        self.epoch, self.reporter = epoch, reporter
        self.events, self.log_every = events, log_every
        self.steps = 0
        self.grad_norm_sum = 0.0
        self.sums: dict[str, metrics.Mean] | None = None
        self.last: dict[str, float] = {}

    def add(self, step: int, step_metrics: Mapping[str, Any]) -> None:
        step_metrics = jax.device_get(step_metrics)
        loss = step_metrics["loss"].value()
        for name, value in (("loss", loss), ("grad_norm", float(step_metrics["grad_norm"]))):
            if not np.isfinite(value):
                kept = f"the checkpoint of epoch {self.epoch - 1} is intact" if self.epoch > 1 else "no checkpoint yet"
                raise TrainingDiverged(None, f"non-finite {name} ({value}) at step {step} (epoch {self.epoch}): "
                                             f"training stopped ({kept}); lower --lr or set --clip-norm")
        self.steps += 1
        self.grad_norm_sum += float(step_metrics["grad_norm"])
        self.sums = metrics.merge(self.sums, {"loss": step_metrics["loss"], **step_metrics["task"]})
        self.last = {"lr": float(step_metrics["lr"]), "param_norm": float(step_metrics["param_norm"])}
        self.reporter.step(step, loss, self.last["lr"])
        if self.events and self.log_every and step % self.log_every == 0:
            self.events.scalars(step, {"loss": loss, "grad_norm": float(step_metrics["grad_norm"]), **self.last},
                                "train")

    def summary(self) -> dict[str, float]:
        """The epoch's ``train_<metric>`` (each its exact total over its count), mean gradient norm, last lr."""
        return {**_prefixed("train", metrics.compute(self.sums)), "grad_norm": self.grad_norm_sum / self.steps,
                **self.last}


def predict_split(state: TrainState, task: Task, split_name: str, batch_size: int, mesh: Mesh,
                  members: int = 1, how: str = "map", combine: bool = True) -> Any:
    """``task.predict`` over a whole split, padding rows removed, batches concatenated in the split's order; for an
    ensemble (``members`` > 1, a stacked state) ``{"ensemble": combined, "members": stacked}``, every leaf of
    ``members`` with a leading member axis; the stacked predictions alone without ``combine`` (a sweep)."""
    outputs, masks = [], []
    for index, batch in enumerate(batching.padded_batches(task.splits[split_name], batch_size)):
        batching.check_batch(batch, task.batch_spec, f"{split_name} batch {index}")
        sharded = sharding.shard_batch(batch, mesh)
        if members > 1:
            outputs.append(ensemble.ensemble_eval_step(state, sharded, task.predict, how))
        else:
            outputs.append(steps.eval_step(state, sharded, task.predict))
        masks.append(batch["example_mask"])
    predictions = evaluation.concatenate(sharding.to_host(outputs), masks, axis=1 if members > 1 else 0)
    if members > 1 and combine:
        combine = task.combine or ensemble.mean_probabilities
        return {"ensemble": combine(predictions), "members": predictions}
    return predictions


def score_val(task: Task, run: RunSetup, predictions: Any) -> dict[str, Any]:
    """The validation scores the loop selects on: a sweep's best setting's, with every setting's beside them."""
    if run.swept:
        return sweep.scores(task, predictions)
    return evaluation.score_split(task, predictions, "val")


def _chosen(run: RunSetup, record: Mapping[str, Any], predictions: Any) -> Any:
    """A sweep's predictions of the setting its best checkpoint was chosen for; other runs' as they are."""
    if not run.swept:
        return predictions
    return ensemble.member(predictions, int(record["best_val"]["setting"]))


def _sweep_results(run: RunSetup, metrics_path: pathlib.Path, task: Task, best: Mapping[str, Any]) -> dict[str, Any]:
    """``sweep_option``, ``sweep_values``, ``sweep_chosen`` (the setting of the best checkpoint) and each setting's
    best validation figure over the epochs (``sweep_val_<metric>``, from ``metrics.jsonl``)."""
    name, values = run.swept
    lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    metric = task.select_metric
    each = [max((evaluation.selection_value(line[f"val_setting{i}_{metric}"]) for line in lines), default=-math.inf)
            for i in range(len(values))]
    return {"sweep_option": name, "sweep_values": list(values), "sweep_chosen": values[int(best["best_val"]["setting"])],
            f"sweep_val_{metric}": each}


def _combined(predictions: Any) -> Any:
    """A split's predictions as one model's: an ensemble's (`predict_split` with members) combined ones."""
    is_ensemble = isinstance(predictions, dict) and set(predictions) == {"ensemble", "members"}
    return predictions["ensemble"] if is_ensemble else predictions


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{name}": value for name, value in values.items()}


def _write_config(workdir: pathlib.Path, task: Task, config: TrainConfig, task_name: str) -> None:
    contents = {
        "task": task_name,
        "medjax_version": medjax.__version__,
        "config": as_json(config),
        "describe": dict(task.describe),
        "class_names": list(task.class_names),
    }
    write_atomically(workdir / "config.json", json.dumps(contents, indent=2, default=str) + "\n")


def _truncate_history(path: pathlib.Path, epochs_done: int) -> None:
    """Keeps the lines of the epochs the resumed checkpoint holds: a killed run may have written one more, or half."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if line.strip() and json.loads(line)["epoch"] <= epochs_done:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # the half-written line of a killed write
    write_atomically(path, "".join(line + "\n" for line in kept))
