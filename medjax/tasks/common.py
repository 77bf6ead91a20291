"""What several tasks share on the model side: classification heads, the columns a loaded run returns, the
split-conformal sets it adds, and turning the command line's strings into inputs.

A task's model side is four functions of ``(config, meta)``, the same at training and at inference:
``build_model(config, meta)``, ``inference(config, meta) -> predict``, ``encode(config, meta, inputs) -> split`` and
``decode(config, meta, predictions, inputs, **options) -> columns`` (`medjax.run`).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from medjax.errors import ConfigError, DataError
from medjax.metrics import conformal

# Batch entries copied into predictions when the batch has them: the truth for scoring, and each row's place.
_CARRIED = (("label", "labels"), ("index", "index"), ("record", "record"), ("sample", "sample"))


def carried(batch) -> dict[str, jax.Array]:
    return {out: batch[key] for key, out in _CARRIED if key in batch}


def softmax_head(logits: jax.Array, batch) -> dict[str, jax.Array]:
    """``scores`` (class probabilities), ``pred`` (arg-max), and the batch's label and index where it has them."""
    return {"scores": jax.nn.softmax(logits, axis=-1), "pred": jnp.argmax(logits, axis=-1).astype(jnp.int32),
            **carried(batch)}


def class_columns(probabilities: np.ndarray, class_names: Sequence[str], multi_label: bool = False) -> dict[str, Any]:
    """``probabilities``, ``label`` (arg-max, or 0/1 per label at 0.5 for multi-label) and ``class`` (its name, or
    the list of names present)."""
    probabilities = np.asarray(probabilities)
    if multi_label:
        present = (probabilities >= 0.5).astype(np.int32)
        return {"probabilities": probabilities, "label": present,
                "class": [[class_names[j] for j in np.flatnonzero(row)] for row in present]}
    label = probabilities.argmax(axis=-1).astype(np.int32)
    return {"probabilities": probabilities, "label": label, "class": [class_names[i] for i in label]}


def conformal_columns(workdir: str | pathlib.Path, coverage: float | None, values: np.ndarray,
                      class_names: Sequence[str] = ()) -> dict[str, Any]:
    """With ``coverage``: ``set`` (the class names in each prediction set) or ``lower``/``upper`` (the interval),
    from the run's ``conformal.json`` (validation scores saved when the run ended); nothing without."""
    if coverage is None:
        return {}
    if not 0.0 < coverage < 1.0:
        raise ConfigError("--coverage", f"expected a number between 0 and 1, got {coverage}")
    path = pathlib.Path(workdir) / "conformal.json"
    if not path.is_file():
        raise DataError(workdir, "expected a run calibrated for prediction sets (conformal.json, written when a "
                                 "classification or regression run ends), found none")
    from medjax.train.workdir import read_conformal

    method, scores = read_conformal(path)
    q = conformal.threshold(scores, coverage)
    if method == "lac":
        sets = conformal.prediction_sets(values, q)
        return {"set": [[class_names[j] for j in np.flatnonzero(row)] for row in sets]}
    return {"lower": np.asarray(values) - q, "upper": np.asarray(values) + q}


def texts(inputs: Any, what: str = "texts") -> list[str]:
    """A string or a sequence of strings as a list; anything else is refused in one line."""
    if isinstance(inputs, str):
        return [inputs]
    items = list(inputs)
    if not all(isinstance(item, str) for item in items):
        raise DataError(None, f"expected {what} (strings), got {', '.join(sorted({type(i).__name__ for i in items}))}")
    return items


def vocabulary(meta: dict, key: str = "vocab"):
    from medjax.data.vocab import Vocabulary

    return Vocabulary.from_json(meta[key] if isinstance(meta[key], str) else json.dumps(meta[key]))


def split_fractions(config) -> tuple[float, float, float]:
    """``(train, val, test)`` shares from ``--val-fraction`` and ``--test-fraction``, which must leave some to train."""
    train = 1.0 - config.val_fraction - config.test_fraction
    if train <= 0:
        raise ConfigError("--val-fraction", f"expected --val-fraction + --test-fraction below 1, got "
                                            f"{config.val_fraction:g} + {config.test_fraction:g}")
    return train, config.val_fraction, config.test_fraction
