"""Orbax checkpoints of a run: the latest epoch (to resume) and the best epoch (to report), each kept once.

A checkpoint holds two items of arrays, kept apart so that using a model never reads its training state (as Flax's
gemma checkpoints do): ``model`` (params and the other collections: all that inference needs) and ``train`` (optimizer
state, step and the run's key); plus a JSON record of where the loop stands: epochs completed (the data order of the next epoch follows from it and the
seed), optimizer steps, the best epoch so far and its validation metrics, and the wall time spent. Orbax writes each
checkpoint into a temporary folder and renames it when complete, so a run killed mid-write leaves the previous one
intact. Two latest checkpoints are kept: if the newest cannot be read (a disk that lost part of it), the run resumes
from the one before and says so.

Layout: ``<workdir>/checkpoints/latest/<epoch>/{model,train,record}`` and ``<workdir>/checkpoints/best/<epoch>/...``.
Runs made before the split hold one ``arrays`` item instead; both layouts are read (`restore_model`, `RunCheckpoints`).

Example:
  >>> with RunCheckpoints(workdir / "checkpoints") as checkpoints:
  ...     checkpoints.save(state, rng, {"epoch": 1, "step": 100}, is_best=True)
  ...     state, rng, record = checkpoints.restore_latest(state, rng)
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from medjax.errors import DataError
from medjax.train.state import TrainState


def _model_arrays(state: TrainState) -> dict[str, Any]:
    return {"params": state.params, "collections": state.collections}


def _train_arrays(state: TrainState, rng: jax.Array) -> dict[str, Any]:
    return {"opt_state": state.opt_state, "step": state.step, "rng": rng}


def _manager(directory: pathlib.Path, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
    # Synchronous writes: the next training step donates the state's buffers, and an epoch-end save is short next
    # to an epoch.
    options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else keep, create=not read_only,
                                           read_only=read_only, enable_async_checkpointing=False,
                                           save_interval_steps=0 if read_only else 1)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def failure(err: BaseException) -> str:
    """Why reading a checkpoint failed, in one line: the error's type and the first line of its message."""
    lines = str(err).splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def _is_old_layout(manager: ocp.CheckpointManager, epoch: int) -> bool:
    """Whether the checkpoint of ``epoch`` predates the model/train split (one ``arrays`` item)."""
    return (pathlib.Path(manager.directory) / str(epoch) / "arrays").is_dir()


def restore_model(directory: str | pathlib.Path, which: str = "best", abstract: Any = None) -> tuple[Any, dict]:
    """The ``model`` item (``{"params", "collections"}``) of a run's best or latest checkpoint, and its record;
    opens the folder read-only and never reads the optimizer state (except from a run made before the split, whose
    single item is read whole and cut).

    Args:
      directory: ``<workdir>/checkpoints``.
      which: ``"best"`` or ``"latest"``.
      abstract: the structure to restore into (``jax.ShapeDtypeStruct`` leaves with shardings); None: as saved.

    Raises:
      FileNotFoundError: no checkpoint of that kind.
    """
    folder = pathlib.Path(directory) / which
    if not folder.is_dir():
        raise FileNotFoundError(f"no {which} checkpoint under {directory}")
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax warns that a read-only folder is read-only
    manager = _manager(folder, keep=2, read_only=True)
    try:
        epoch = manager.latest_step()
        if epoch is None:
            raise FileNotFoundError(f"no {which} checkpoint under {directory}")
        if _is_old_layout(manager, epoch):
            restored = manager.restore(epoch, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(),
                                                                      record=ocp.args.JsonRestore()))
            arrays = restored["arrays"]
            model = {"params": arrays["params"], "collections": arrays.get("collections") or {}}
        else:
            restored = manager.restore(epoch, args=ocp.args.Composite(model=ocp.args.StandardRestore(abstract),
                                                                      record=ocp.args.JsonRestore()))
            model = restored["model"]
        return model, dict(restored["record"])
    finally:
        manager.close()
        absl_logging.set_verbosity(verbosity)


class RunCheckpoints:
    """The latest and the best checkpoint of one run, under one folder. Use as a context manager (or call close)."""

    def __init__(self, directory: str | pathlib.Path, say: Callable[[str], None] = print):
        directory = pathlib.Path(directory)
        self._latest = _manager(directory / "latest", keep=2)
        self._best = _manager(directory / "best", keep=1)
        self._say = say

    def __enter__(self) -> "RunCheckpoints":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._latest.close()
        self._best.close()

    def save(self, state: TrainState, rng: jax.Array, record: dict[str, Any], is_best: bool) -> None:
        """Writes the state after ``record["epoch"]`` epochs as the latest checkpoint, and as the best if ``is_best``.

        Args:
          state: the train state.
          rng: the dropout key of the run.
          record: JSON-serialisable facts about the loop's position; must hold ``epoch`` (epochs completed, >= 1).
          is_best: whether this epoch is the best so far on the validation metric.
        """
        args = ocp.args.Composite(model=ocp.args.StandardSave(_model_arrays(state)),
                                  train=ocp.args.StandardSave(_train_arrays(state, rng)),
                                  record=ocp.args.JsonSave(record))
        # Best first: a run killed between the two writes resumes from the previous latest, redoes this epoch and
        # finds its best checkpoint already there (the same arrays: the run is deterministic), which it replaces.
        managers = (self._best, self._latest) if is_best else (self._latest,)
        for manager in managers:
            if record["epoch"] in manager.all_steps():
                manager.delete(record["epoch"])
            manager.save(record["epoch"], args=args, force=True)

    def latest_epoch(self) -> int | None:
        """Epochs completed by the latest checkpoint; None when the run has none."""
        return self._latest.latest_step()

    def restore_latest(self, state: TrainState, rng: jax.Array) -> tuple[TrainState, jax.Array, dict[str, Any]]:
        """The newest readable latest checkpoint, restored into the structure (and shardings) of ``state`` and ``rng``.

        A damaged newest checkpoint is skipped for the one before it, with a message naming both.
        """
        epochs = sorted(self._latest.all_steps(), reverse=True)
        for position, epoch in enumerate(epochs):
            try:
                return self._restore(self._latest, epoch, state, rng)
            except Exception as err:  # noqa: BLE001 - any failure to read means this copy is unusable
                if position + 1 == len(epochs):
                    raise DataError(self._latest.directory, f"expected a readable checkpoint to resume from, got "
                                                            f"none: epoch {epoch} failed with {failure(err)} "
                                                            f"(train in a new --workdir, or move checkpoints/ "
                                                            f"aside to start again)") from err
                self._say(f"the checkpoint of epoch {epoch} is damaged ({type(err).__name__}: {str(err)[:200]}); "
                          f"resuming from epoch {epochs[position + 1]} instead")
        raise FileNotFoundError(f"no latest checkpoint under {self._latest.directory}")

    def restore_best(self, state: TrainState, rng: jax.Array) -> tuple[TrainState, jax.Array, dict[str, Any]]:
        """The best checkpoint, restored into the structure (and shardings) of ``state`` and ``rng``."""
        epoch = self._best.latest_step()
        if epoch is None:
            raise FileNotFoundError(f"no best checkpoint under {self._best.directory}: has this run finished an epoch?")
        try:
            return self._restore(self._best, epoch, state, rng)
        except Exception as err:  # noqa: BLE001 - any failure to read means this copy is unusable
            raise DataError(self._best.directory, f"expected a readable best checkpoint, got a damaged one (epoch "
                                                  f"{epoch}: {failure(err)})") from err

    @staticmethod
    def _restore(manager: ocp.CheckpointManager, epoch: int, state: TrainState, rng: jax.Array):
        if _is_old_layout(manager, epoch):
            restored = manager.restore(epoch, args=ocp.args.Composite(
                arrays=ocp.args.StandardRestore({**_model_arrays(state), **_train_arrays(state, rng)}),
                record=ocp.args.JsonRestore()))
            arrays = restored["arrays"]
        else:
            restored = manager.restore(epoch, args=ocp.args.Composite(
                model=ocp.args.StandardRestore(_model_arrays(state)),
                train=ocp.args.StandardRestore(_train_arrays(state, rng)), record=ocp.args.JsonRestore()))
            arrays = {**restored["model"], **restored["train"]}
        state = state.replace(
            step=arrays["step"],
            params=arrays["params"],
            opt_state=arrays["opt_state"],
            collections=arrays["collections"],
        )
        return state, arrays["rng"], dict(restored["record"])
