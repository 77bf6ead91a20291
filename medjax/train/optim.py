"""Optimizers and learning-rate schedules, chosen by name from small dicts; Optax does the work.

`make_optimizer(config, total_steps)` reads the `TrainConfig` fields ``optimizer``, ``lr``, ``weight_decay``,
``momentum``, ``schedule``, ``milestones``, ``decay_factor`` and ``clip_norm``. The learning rate is injected as a
hyperparameter (`optax.inject_hyperparams`), so the optimizer state carries the rate of the step just taken and the
training step can report it without knowing the schedule (`current_lr`).

Example:
  >>> config = TrainConfig(optimizer="sgd", lr=0.1, schedule="multistep", milestones=(0.5,), decay_factor=0.1)
  >>> lr_at_step_50 = make_schedule(config, total_steps=100)(50)  # 0.1 * 0.1: decayed once, at the halfway milestone
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Callable

import jax
import optax

if TYPE_CHECKING:  # the config names the optimizers offered here: no import back at run time
    from medjax.train.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """The `TrainConfig` fields that define the optimizer and its schedule (hashable, unlike the config)."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    schedule: str
    milestones: tuple[float, ...]
    decay_factor: float
    clip_norm: float

    @classmethod
    def of(cls, config: TrainConfig) -> "OptimizerSettings":
        values = {field.name: getattr(config, field.name) for field in dataclasses.fields(cls)}
        return cls(**{**values, "milestones": tuple(values["milestones"])})


def _decay(weight_decay) -> list[optax.GradientTransformation]:
    """The L2 term, absent when the config's weight decay is 0.0; a swept one (an array) is always there."""
    return [optax.add_decayed_weights(weight_decay)] if not isinstance(weight_decay, float) or weight_decay else []


def _adam(config: OptimizerSettings, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    # As torch.optim.Adam: weight_decay is an L2 term added to the gradient before the moments.
    return optax.chain(*_decay(config.weight_decay), optax.adam(learning_rate))


def _adamw(config: OptimizerSettings, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    return optax.adamw(learning_rate, weight_decay=config.weight_decay)


def _sgd(config: OptimizerSettings, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    # As torch.optim.SGD: L2 added to the gradient, then heavy-ball momentum (buf = momentum * buf + grad).
    return optax.chain(*_decay(config.weight_decay), optax.sgd(learning_rate, momentum=config.momentum or None))


def _constant(config: OptimizerSettings, total_steps: int) -> optax.Schedule:
    return optax.constant_schedule(config.lr)


def _cosine(config: OptimizerSettings, total_steps: int) -> optax.Schedule:
    return optax.cosine_decay_schedule(config.lr, decay_steps=total_steps)


def _multistep(config: OptimizerSettings, total_steps: int) -> optax.Schedule:
    for fraction in config.milestones:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"milestones are fractions of training in (0, 1]; got {tuple(config.milestones)}")
    if config.decay_factor < 0:
        raise ValueError(f"decay_factor must be >= 0; got {config.decay_factor}")
    boundaries: dict[int, float] = {}
    for fraction in config.milestones:
        step = round(fraction * total_steps)
        # Two milestones that land on the same step both apply.
        boundaries[step] = boundaries.get(step, 1.0) * config.decay_factor
    # The rate is lr * decay_factor ** (number of milestones with step >= milestone step).
    return optax.piecewise_constant_schedule(config.lr, boundaries)


# name -> (config, learning rate or schedule) -> the optimizer without clipping.
OPTIMIZERS: dict[str, Callable[[OptimizerSettings, optax.ScalarOrSchedule], optax.GradientTransformation]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}

# name -> (config, total training steps) -> step -> learning rate.
SCHEDULES: dict[str, Callable[[OptimizerSettings, int], optax.Schedule]] = {
    "constant": _constant,
    "cosine": _cosine,
    "multistep": _multistep,
}


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(sorted(table))}")
    return table[name]


def make_schedule(config: TrainConfig, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule named by ``config.schedule``, over ``total_steps`` optimizer steps."""
    config = OptimizerSettings.of(config)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got {total_steps}")
    if config.lr <= 0:
        raise ValueError(f"lr must be > 0; got {config.lr}")
    return _lookup(SCHEDULES, config.schedule, "schedule")(config, total_steps)


def make_optimizer(config: TrainConfig, total_steps: int, swept: bool = False) -> optax.GradientTransformation:
    """The optimizer named by ``config.optimizer`` with its schedule, and gradient clipping when ``clip_norm > 0``.

    Args:
      config: the training config (see module docstring for the fields read).
      total_steps: optimizer steps in the whole run (epochs * steps per epoch), the horizon of the schedule.

    Returns:
      An Optax transformation whose state exposes the current learning rate through `current_lr`. Equal settings
      give the very same object: the train state carries it as a static field, so a second run in one process (an
      `evaluate` after `train`, a resumed run, another seed) reuses the compiled steps instead of compiling again.

      With ``swept``, the peak learning rate and the weight decay are hyperparameters in the state too
      (``peak_lr``, ``weight_decay``), so that a stack of states can hold one setting each (`medjax.train.sweep`);
      the schedule is then injected for a peak of 1 and scaled by ``peak_lr``.

    Raises:
      ValueError: an unknown optimizer or schedule name (the message lists the valid ones), or a bad value.
    """
    return _make_optimizer(OptimizerSettings.of(config), total_steps, swept)


@functools.lru_cache(maxsize=64)
def _make_optimizer(config: OptimizerSettings, total_steps: int, swept: bool = False) -> optax.GradientTransformation:
    make_base = _lookup(OPTIMIZERS, config.optimizer, "optimizer")
    schedule = make_schedule(dataclasses.replace(config, lr=1.0) if swept else config, total_steps)
    if config.clip_norm < 0:
        raise ValueError(f"clip_norm must be >= 0 (0 turns clipping off); got {config.clip_norm}")
    if config.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {config.weight_decay}")

    def build(learning_rate, peak_lr=None, weight_decay=None):
        # A sweep's state also carries the peak rate and the weight decay; a single run's only the rate (hyperparameters
        # left at None are not in the state).
        settings = config if weight_decay is None else dataclasses.replace(config, weight_decay=weight_decay)
        rate = learning_rate if peak_lr is None else learning_rate * peak_lr
        # Clip the raw gradient, before weight decay or moments see it (as torch's clip_grad_norm_ before step()).
        clip = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm > 0 else []
        return optax.chain(*clip, make_base(settings, rate))

    swept_values = {"peak_lr": config.lr, "weight_decay": config.weight_decay} if swept else {}
    return optax.inject_hyperparams(build)(learning_rate=schedule, **swept_values)


def current_lr(opt_state) -> jax.Array:
    """The learning rate used by the last update of a `make_optimizer` state (the first step's before any update)."""
    hyperparams = opt_state.hyperparams
    if "peak_lr" in hyperparams:
        return hyperparams["learning_rate"] * hyperparams["peak_lr"]
    return hyperparams["learning_rate"]
