"""Hyperparameter sweeps in one compiled step: ``--sweep lr=1e-3,3e-3,1e-2`` trains one setting per value together.

A sweep is a stack of train states, as an ensemble is (`medjax.train.ensemble`: vmapped on GPU and TPU; on CPU one
copy of the step per setting for models with convolutions, `lax.map` for the others), with one difference: every
setting starts from the same initialisation and dropout key (``--seed``) and sees the same batches, and they differ
only in the swept optimizer hyperparameter, which the optimizer state carries as data (`medjax.train.optim`, built
``swept``). So setting i computes what ``medjax train ... --lr <value i>`` computes (tested, to float rounding: the
schedule is injected for a peak of 1 and scaled).

Every epoch each setting is scored on validation (``val_setting<i>_<metric>`` in ``metrics.jsonl``); the best
(setting, epoch) on the task's selection metric is kept as the best checkpoint, and only that setting is scored on
test. ``results.json`` names the values, the chosen one and each setting's best validation figure; ``medjax plot``
draws the choice (``sweep.png``), and `medjax.load` gives the chosen setting's model.

Sweepable: ``lr`` and ``weight_decay``. Dropout is a model attribute in Flax (static, one value per compiled
program), so it cannot vary inside one step.

Example:
  >>> name, values = parse("lr=1e-3,3e-3")
  >>> name, values
  ('lr', (0.001, 0.003))
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.train import ensemble, evaluation

# option name -> (the optimizer-state hyperparameter it sets, the smallest value allowed, whether that is excluded)
SWEEPABLE = {"lr": ("peak_lr", 0.0, True), "weight_decay": ("weight_decay", 0.0, False)}


def parse(text: str) -> tuple[str, tuple[float, ...]]:
    """``(option, values)`` of a ``--sweep`` value ``name=v1,v2,...``.

    Raises:
      ConfigError: not ``name=values``, an option that cannot be swept, a value that is not a number or out of range,
        fewer than two values, or a value twice.
    """
    name, sep, listed = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep:
        raise ConfigError("--sweep", f"expected name=v1,v2,... (e.g. lr=1e-3,3e-3), got {text!r:.60}")
    if name not in SWEEPABLE:
        raise ConfigError("--sweep", f"expected an option among {', '.join(SWEEPABLE)} (dropout and the model's "
                                     f"shape are fixed inside one compiled step), got {name!r:.40}")
    values = []
    for item in listed.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ConfigError("--sweep", f"expected numbers after {name}=, got {item.strip()!r:.40}") from None
        _, low, strict = SWEEPABLE[name]
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise ConfigError("--sweep", f"expected {name} values {'>' if strict else '>='} {low:g}, got {item.strip()}")
        values.append(value)
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError("--sweep", f"expected two or more different values of {name}, got {listed!r:.60}")
    return name, tuple(values)


def settings(config: Any) -> tuple[str, tuple[float, ...]] | None:
    """``(option, values)`` of a config's ``sweep``, or None when it sweeps nothing."""
    text = getattr(config, "sweep", None)
    return parse(text) if text else None


def with_setting(state: Any, name: str, value: float) -> Any:
    """``state`` whose optimizer trains with ``name = value`` (a state of an optimizer built ``swept``)."""
    opt_state = state.opt_state
    key = SWEEPABLE[name][0]
    current = opt_state.hyperparams[key]
    hyperparams = {**opt_state.hyperparams, key: jnp.asarray(value, current.dtype)}
    return state.replace(opt_state=opt_state._replace(hyperparams=hyperparams))


def label(name: str, value: float) -> str:
    return f"{name}={value:g}"


def scores(task: Any, stacked: Any) -> dict[str, Any]:
    """Each setting's validation scores (``setting<i>_<metric>``) and, unprefixed, those of the setting best on the
    task's selection metric, with ``setting`` its index."""
    count = len(jax.tree_util.tree_leaves(stacked)[0])
    each = [evaluation.score_split(task, ensemble.member(stacked, i), "val") for i in range(count)]
    best = max(range(count), key=lambda i: evaluation.selection_value(each[i][task.select_metric]))
    figures = {f"setting{i}_{name}": value for i, one in enumerate(each) for name, value in one.items()
               if not isinstance(value, list)}
    return {**each[best], "setting": best, **figures}
