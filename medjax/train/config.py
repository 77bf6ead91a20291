"""Typed, frozen run configs: every field documented, checked and reproducible.

A task's config is a frozen dataclass extending `TrainConfig`; each field is declared with `option`, which records its
help text (the CLI's ``--help``), the values it accepts (``choices``, ``minimum``) and, for fields added after runs
were made, the value an older ``config.json`` that lacks the field implies (``missing``). Configs are hashable, are
checked when built (a bad value is a `ConfigError` naming the option), and load back from ``config.json`` or from a
TOML file through `from_mapping`.

Example:
  >>> @dataclasses.dataclass(frozen=True)
  ... class Config(TrainConfig):
  ...     model: str = option("cnn", "network", choices=("cnn", "resnet18"))
  >>> Config(model="vgg")
  ConfigError: --model: expected one of cnn, resnet18, got 'vgg'
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, Mapping, Sequence

from medjax.errors import ConfigError

_UNSET = object()


def option(default: Any, help: str, *, choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
           minimum: float | None = None, above: float | None = None, missing: Any = _UNSET) -> Any:
    """A config field: its default, one line of help, and what it accepts.

    Args:
      default: the value that reproduces the task's published recipe.
      help: what the field does, shown by ``medjax train <task> --help``.
      choices: the names accepted (or a function returning them, to avoid import cycles).
      minimum: the smallest value accepted (inclusive); for tuples, of each element.
      above: values must be greater than this (exclusive).
      missing: what an older ``config.json`` without this field meant (the behaviour before the field existed).
    """
    metadata = {"help": help, "choices": choices, "minimum": minimum, "above": above}
    if missing is not _UNSET:
        metadata["missing"] = missing
    return dataclasses.field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size``, the way the CLI names a field."""
    return "--" + name.replace("_", "-")


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
    choices = field.metadata.get("choices")
    return tuple(choices() if callable(choices) else choices) if choices is not None else None


_PLURAL = {int: "integers", float: "numbers", bool: "true/false values", str: "strings"}


def _describe(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, kind.__name__)


def field_kind(cls, field: dataclasses.Field) -> tuple[type, bool, bool]:
    """``(element type, is a tuple, may be None)`` of a field, read from its annotation."""
    hint = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if optional:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


def _coerce(value: Any, kind: type, name: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool):
        raise ConfigError(flag(name), f"expected {_describe(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(flag(name), f"expected {_describe(kind)}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(flag(name), f"expected a finite number, got {value!r}")
    return value


def _check(config: Any) -> None:
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        kind, is_tuple, optional = field_kind(type(config), field)
        if value is None and optional:
            continue
        if is_tuple:
            if isinstance(value, (list, tuple)):
                value = tuple(_coerce(v, kind, field.name) for v in value)
            else:
                raise ConfigError(flag(field.name), f"expected a list of {_PLURAL.get(kind, kind.__name__)}, got {value!r}")
            items = value
        else:
            value = _coerce(value, kind, field.name)
            items = (value,)
        object.__setattr__(config, field.name, value)
        choices = choices_of(field)
        minimum, above = field.metadata.get("minimum"), field.metadata.get("above")
        for item in items:
            if choices is not None and item not in choices:
                raise ConfigError(flag(field.name), f"expected one of {', '.join(map(str, choices))}, got {item!r}")
            if minimum is not None and item < minimum:
                raise ConfigError(flag(field.name), f"expected {_describe(kind)} >= {minimum:g}, got {item!r}")
            if above is not None and item <= above:
                raise ConfigError(flag(field.name), f"expected {_describe(kind)} > {above:g}, got {item!r}")


def _optimizers() -> tuple[str, ...]:
    from medjax.train import optim

    return tuple(optim.OPTIMIZERS)


def _precisions() -> tuple[str, ...]:
    from medjax.train import precision

    return tuple(precision.POLICIES)


def _schedules() -> tuple[str, ...]:
    from medjax.train import optim

    return tuple(optim.SCHEDULES)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The fields every task shares: where the run goes, the seed, and the optimisation recipe."""

    workdir: str = option("runs/default", "where config.json, metrics.jsonl, results.json and checkpoints/ go")
    seed: int = option(0, "seeds initialisation, shuffling and dropout; the same seed gives the same run", minimum=0)
    epochs: int = option(10, "passes over the training split", minimum=1)
    batch_size: int = option(128, "examples per training step, split over all local devices", minimum=1)
    eval_batch_size: int = option(256, "examples per evaluation step", minimum=1)
    optimizer: str = option("adam", "the optimizer", choices=_optimizers)
    lr: float = option(1e-3, "peak learning rate", above=0.0)
    weight_decay: float = option(0.0, "decoupled weight decay (adamw) or L2 (adam, sgd)", minimum=0.0)
    momentum: float = option(0.9, "sgd momentum", minimum=0.0)
    schedule: str = option("constant", "the learning-rate schedule", choices=_schedules)
    milestones: tuple[float, ...] = option((0.5, 0.75), "multistep: fractions of training at which the lr is "
                                           "multiplied by decay_factor", above=0.0)
    decay_factor: float = option(0.1, "multistep: the multiplier at each milestone", minimum=0.0)
    clip_norm: float = option(0.0, "clip gradients to this global norm; 0 turns clipping off", minimum=0.0)
    num_devices: int = option(0, "data-parallel over this many local devices (0: all of them)", minimum=0)
    log_every: int = option(50, "print a progress line every this many steps (0: never)", minimum=0)
    progress: bool = option(True, "show a progress bar")
    tensorboard: bool = option(True, "write TensorBoard event files in <workdir>/tensorboard/ (tensorboardX)",
                               missing=False)
    ensemble: int = option(1, "train this many members (seeds seed, seed+1, ...) in one compiled step on the same "
                              "batches; the ensemble's mean probabilities are scored and selected on", minimum=1)
    data_seed: int | None = option(None, "seeds the data order (unset: --seed); an ensemble's member i is the run "
                                         "with --seed seed+i --data-seed seed", minimum=0)
    sweep: str | None = option(None, "train one setting per value in one compiled step, from the same start on the "
                                     "same batches: lr=v1,v2,... or weight_decay=v1,v2,...; the best (setting, "
                                     "epoch) on validation is kept and scored on test (medjax.train.sweep)")
    dp_epsilon: float | None = option(None, "DP-SGD: the epsilon the whole run may spend (unset: no DP); the noise "
                                            "is calibrated to it", above=0.0)
    dp_delta: float = option(1e-5, "DP-SGD: delta, below 1/(training examples)", above=0.0)
    dp_clip: float = option(1.0, "DP-SGD: each example's gradient is clipped to this L2 norm", above=0.0)
    precision: str = option("fp32", "fp32, or bf16: matmuls and convolutions in bfloat16, parameters, optimizer "
                                    "state, losses and metrics in float32 (medjax.train.precision)",
                            choices=_precisions, missing="fp32")
    overwrite: bool = option(False, "train in a work folder that holds files of something else (another task, "
                                    "another config, not a medjax run): move them aside into <workdir>/previous-<n>/ "
                                    "first; nothing is deleted")

    def __post_init__(self):
        _check(self)
        if self.sweep is not None:
            from medjax.train import sweep

            sweep.parse(self.sweep)


# Fields a resumed run may change: where the files go, what is printed, and the device count (a preempted job may
# resume on another machine; the numbers then agree to float rounding rather than bit for bit).
RESUMABLE_CHANGES = frozenset({"workdir", "log_every", "progress", "num_devices", "tensorboard", "overwrite"})


def from_mapping(cls, values: Mapping[str, Any], source: str, *, saved: bool = False):
    """A config of class ``cls`` from a mapping (a TOML table, or the ``config`` of a saved ``config.json``).

    Args:
      cls: the config class.
      values: field name -> value; lists become tuples.
      source: names the mapping in errors (a file's path).
      saved: the mapping is a run's ``config.json``: a field it lacks takes the value the field's ``missing``
        metadata gives (what runs made before the field existed did), else its default.

    Raises:
      ConfigError: an unknown field (the message lists the valid ones) or a bad value.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(source, f"expected options among {', '.join(sorted(fields))}, got {', '.join(unknown)}")
    kwargs = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
    if saved:
        for name, field in fields.items():
            if name not in kwargs and "missing" in field.metadata:
                kwargs[name] = field.metadata["missing"]
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(source, str(err)) from None


def as_json(config: Any) -> dict[str, Any]:
    """The config as JSON values (tuples as lists), every field included."""
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(config).items()}
