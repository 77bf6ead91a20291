"""The one training loop: every task trains, selects, resumes and reports through `train` and `evaluate`.

Per epoch: the training split in an order that depends only on ``(seed, epoch)``, every batch padded to the batch size
(``example_mask`` marks the real rows; shapes never change, so each step compiles once), checked on the host, and fed
to the jitted `train_step`, sharded over ``config.num_devices`` devices; then the validation split is predicted and
scored, one line is appended to ``metrics.jsonl`` and the latest (and, if improved on ``task.select_metric``, best)
checkpoint is written. At the end the best checkpoint is reloaded from disk and scored on the test split.

Files in ``config.workdir``: ``config.json``, ``metrics.jsonl``, ``checkpoints/{latest,best}/``, ``results.json``,
``predictions_test.npz``.

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
import json
import math
import pathlib
import time
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from medjax.train import batching, optim, sharding, steps
from medjax.train.checkpoint import RunCheckpoints
from medjax.train.config import TrainConfig
from medjax.train.progress import ProgressReporter, format_metrics
from medjax.train.state import TrainState, init_train_state
from medjax.train.task import Task

# Config fields a resumed run may change: where the files go, what is printed, and the device count (a preempted job
# may resume on another machine; the numbers then agree to float rounding rather than bit for bit).
_RESUMABLE_CHANGES = frozenset({"workdir", "log_every", "progress", "num_devices"})
# Names of the per-batch sums of a task's loss that count what the other sums are averaged over.
_DENOMINATORS = ("count", "examples")


@dataclasses.dataclass(frozen=True)
class _Run:
    mesh: Mesh
    state: TrainState
    rng: jax.Array
    steps_per_epoch: int


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
      or None when stopped by ``stop_after_epoch`` before the last epoch.

    Raises:
      FloatingPointError: a non-finite loss or gradient norm, naming the step; the latest checkpoint stays intact.
      ValueError: a bad config, task or batch, naming what was expected and what came.
    """
    wall_start = time.perf_counter()
    _check_task(task)
    workdir = pathlib.Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    metrics_path = workdir / "metrics.jsonl"
    with RunCheckpoints(workdir / "checkpoints") as checkpoints:
        resuming = checkpoints.latest_epoch() is not None
        if resuming:
            _check_same_run(workdir, config, task_name)
        run = _setup(task, config)
        reporter = ProgressReporter(config.epochs, run.steps_per_epoch, config.log_every, config.progress)
        state, rng = run.state, run.rng
        record: dict[str, Any] = {"epoch": 0, "step": 0, "best_epoch": None, "best_value": None, "best_val": {}}
        record["wall_seconds"] = 0.0
        if resuming:
            state, rng, record = checkpoints.restore_latest(state, rng)
            reporter.line(f"resuming {workdir} after epoch {record['epoch']} (step {record['step']})")
        _write_config(workdir, task, config, task_name)
        _truncate_history(metrics_path, record["epoch"])
        earlier_wall = record["wall_seconds"]
        try:
            for epoch in range(record["epoch"] + 1, config.epochs + 1):
                epoch_start = time.perf_counter()
                reporter.start_epoch(epoch)
                state, step, train_metrics = _train_epoch(
                    state, rng, task, config, run.mesh, epoch, record["step"], reporter
                )
                val = _score(task, _predict(state, task, "val", config, run.mesh), "val")
                value = _selection_value(val[task.select_metric])
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
                with metrics_path.open("a") as f:
                    f.write(json.dumps(line) + "\n")
                checkpoints.save(state, rng, record, is_best)
                reporter.end_epoch(line)
                if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < config.epochs:
                    reporter.line(f"stopped after epoch {epoch} as asked; train again on {workdir} to resume")
                    return None
        finally:
            reporter.close()
        best_state, _, best_record = checkpoints.restore_best(state, rng)
        test_predictions = _predict(best_state, task, "test", config, run.mesh)
    results = {
        "task": task_name,
        "select_metric": task.select_metric,
        "best_epoch": best_record["epoch"],
        **_prefixed("val", best_record["best_val"]),
        **_prefixed("test", _score(task, test_predictions, "test")),
        "wall_seconds": earlier_wall + time.perf_counter() - wall_start,
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    np.savez(workdir / "predictions_test.npz", **_flat_arrays(test_predictions))
    reporter.line("results: " + format_metrics(results))
    return results


def evaluate(task: Task, config: TrainConfig, splits: tuple[str, ...] = ("test",)) -> dict[str, Any]:
    """Reloads the best checkpoint of ``config.workdir`` and scores ``splits`` again.

    Returns:
      ``{"best_epoch": ..., "<split>_<metric>": ...}``; for the test split equal to the same entries of the run's
      ``results.json``.
    """
    state, record, mesh = _restore_best(task, config)
    results = {"best_epoch": record["epoch"]}
    for split in splits:
        results.update(_prefixed(split, _score(task, _predict(state, task, split, config, mesh), split)))
    print(format_metrics(results), flush=True)
    return results


def restore_best(task: Task, config: TrainConfig) -> tuple[TrainState, dict[str, Any]]:
    """The train state of the best checkpoint of ``config.workdir`` and its record (``epoch``, ``best_val``, ...)."""
    state, record, _ = _restore_best(task, config)
    return state, record


def _restore_best(task: Task, config: TrainConfig) -> tuple[TrainState, dict[str, Any], Mesh]:
    _check_task(task)
    run = _setup(task, config)
    with RunCheckpoints(pathlib.Path(config.workdir) / "checkpoints") as checkpoints:
        state, _, record = checkpoints.restore_best(run.state, run.rng)
    return state, record, run.mesh


def _check_task(task: Task) -> None:
    missing = {"train", "val", "test"} - set(task.splits)
    if missing:
        raise ValueError(f"task {task.name!r} has splits {sorted(task.splits)}; expected train, val and test")
    for name in ("train", "val", "test"):
        if len(task.splits[name]) == 0:
            raise ValueError(f"task {task.name!r} has an empty {name} split")


def _setup(task: Task, config: TrainConfig) -> _Run:
    """The mesh, the initial (replicated) state and dropout key: the same for a fresh, resumed or evaluated run."""
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {config.epochs}")
    mesh = sharding.make_mesh(config.num_devices)
    sharding.check_divisible(config.batch_size, mesh, "batch_size")
    sharding.check_divisible(config.eval_batch_size, mesh, "eval_batch_size")
    train_split = task.splits["train"]
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    tx = optim.make_optimizer(config, steps_per_epoch * config.epochs)
    init_key, rng = jax.random.split(jax.random.PRNGKey(config.seed))
    first = next(batching.padded_batches(train_split, config.batch_size))
    batching.check_batch(first, task.batch_spec, "the first train batch")
    state = init_train_state(task.model, tx, first, init_key)
    return _Run(mesh, sharding.replicate(state, mesh), sharding.replicate(rng, mesh), steps_per_epoch)


def _train_epoch(state, rng, task, config, mesh, epoch, step, reporter):
    split = task.splits["train"]
    order = batching.epoch_order(config.seed, epoch - 1, len(split))
    totals = _TrainTotals(epoch, reporter)
    in_flight = None
    for index, batch in enumerate(batching.padded_batches(split, config.batch_size, order)):
        batching.check_batch(batch, task.batch_spec, f"train batch {index} of epoch {epoch}")
        state, metrics = steps.train_step(state, sharding.shard_batch(batch, mesh), rng, task.loss)
        step += 1
        # Read the previous step's metrics only now, so the device always has the next step queued.
        if in_flight is not None:
            totals.add(*in_flight)
        in_flight = (step, metrics)
    totals.add(*in_flight)
    return state, step, totals.summary()


class _TrainTotals:
    """Host-side sums of one epoch's step metrics; stops the run at the first non-finite loss or gradient norm."""

    def __init__(self, epoch: int, reporter: ProgressReporter):
        self.epoch, self.reporter = epoch, reporter
        self.steps = self.examples = 0
        self.loss_sum = self.grad_norm_sum = 0.0
        self.sums: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def add(self, step: int, metrics: Mapping[str, Any]) -> None:
        metrics = jax.device_get(metrics)
        for name in ("loss", "grad_norm"):
            if not np.isfinite(metrics[name]):
                kept = f"the checkpoint of epoch {self.epoch - 1} is intact" if self.epoch > 1 else "no checkpoint yet"
                raise FloatingPointError(
                    f"non-finite {name} ({float(metrics[name])}) at step {step} (epoch {self.epoch}): training "
                    f"stopped ({kept}); lower lr or set clip_norm"
                )
        examples = int(metrics["examples"])
        self.steps += 1
        self.examples += examples
        self.loss_sum += float(metrics["loss"]) * examples
        self.grad_norm_sum += float(metrics["grad_norm"])
        for name, value in metrics["sums"].items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.last = {"lr": float(metrics["lr"]), "param_norm": float(metrics["param_norm"])}
        self.reporter.step(step, float(metrics["loss"]), self.last["lr"])

    def summary(self) -> dict[str, float]:
        """Epoch means: the loss weighted by valid examples; and each per-batch sum the task's loss returns, divided by
        the epoch total of its ``count`` (tokens, say) or ``examples`` sum if it has one, else by the valid examples
        (so a task returning ``{"loss": mean * tokens, "count": tokens}`` gets the exact per-token train loss)."""
        denominator = next((self.sums[name] for name in _DENOMINATORS if name in self.sums), self.examples)
        sums = {
            f"train_{name}": total / max(denominator, 1)
            for name, total in self.sums.items()
            if name not in _DENOMINATORS
        }
        return {
            "train_loss": self.loss_sum / max(self.examples, 1),
            **sums,
            "grad_norm": self.grad_norm_sum / self.steps,
            **self.last,
        }


def _predict(state: TrainState, task: Task, split_name: str, config: TrainConfig, mesh: Mesh) -> Any:
    """``task.predict`` over a whole split, padding rows removed, batches concatenated."""
    outputs, masks = [], []
    for index, batch in enumerate(batching.padded_batches(task.splits[split_name], config.eval_batch_size)):
        batching.check_batch(batch, task.batch_spec, f"{split_name} batch {index}")
        outputs.append(steps.eval_step(state, sharding.shard_batch(batch, mesh), task.predict))
        masks.append(batch["example_mask"])
    outputs = sharding.to_host(outputs)

    def join(*leaves):
        kept = []
        for leaf, mask in zip(leaves, masks):
            if leaf.ndim == 0 or leaf.shape[0] != len(mask):
                raise ValueError(
                    f"task.predict must return arrays with a leading batch axis of {len(mask)}; got shape {leaf.shape}"
                )
            kept.append(leaf[mask])
        # Splits bucketed by length give [batch, time] outputs whose time differs per batch: right-pad with zeros.
        widest = np.max([k.shape[1:] for k in kept], axis=0) if kept[0].ndim > 1 else ()
        kept = [np.pad(k, [(0, 0)] + [(0, w - s) for s, w in zip(k.shape[1:], widest)]) for k in kept]
        return np.concatenate(kept)

    return jax.tree_util.tree_map(join, *outputs)


def _score(task: Task, predictions: Any, split_name: str) -> dict[str, Any]:
    scores = {name: _json_value(value) for name, value in task.score(predictions).items()}
    if task.select_metric not in scores:
        raise ValueError(
            f"task.score gave {sorted(scores)} on {split_name}; the task selects on {task.select_metric!r}, which is "
            f"not among them"
        )
    return scores


def _selection_value(value: Any) -> float:
    # An undefined metric (NaN, e.g. an AUC with one class present) never counts as an improvement.
    value = float(value)
    return value if math.isfinite(value) else -math.inf


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{name}": value for name, value in values.items()}


def _json_value(value: Any) -> Any:
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def _flat_arrays(tree: Any) -> dict[str, np.ndarray]:
    """A pytree of arrays as ``{"a/b": array}``, the form `np.savez` takes; a dict's keys are kept as they are."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    named = {}
    for path, leaf in leaves:
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
        named[name or "predictions"] = np.asarray(leaf)
    return named


def _config_json(config: TrainConfig) -> dict[str, Any]:
    # Through JSON and back, so tuples compare equal to the lists a saved config holds.
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _check_same_run(workdir: pathlib.Path, config: TrainConfig, task_name: str) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    current = _config_json(config)
    changed = sorted(
        name for name in set(current) | set(saved["config"])
        if name not in _RESUMABLE_CHANGES and current.get(name) != saved["config"].get(name)
    )
    if saved.get("task") != task_name or changed:
        details = [f"task {saved.get('task')!r} -> {task_name!r}"] if saved.get("task") != task_name else []
        details += [f"{name} {saved['config'].get(name)!r} -> {current.get(name)!r}" for name in changed]
        raise ValueError(
            f"{workdir} holds a run with a different config ({'; '.join(details)}): resume it with its own config "
            f"or train in a new workdir"
        )


def _write_config(workdir: pathlib.Path, task: Task, config: TrainConfig, task_name: str) -> None:
    contents = {
        "task": task_name,
        "config": _config_json(config),
        "describe": dict(task.describe),
        "class_names": list(task.class_names),
    }
    (workdir / "config.json").write_text(json.dumps(contents, indent=2, default=str) + "\n")


def _truncate_history(path: pathlib.Path, epochs_done: int) -> None:
    """Drops the lines of epochs after the checkpoint resumed from (a killed run may have written one more)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs_done]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))
