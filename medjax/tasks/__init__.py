"""Tasks: each module supplies a data side and a model side to the one loop (`medjax.train.loop`) and to `medjax.load`.

The data side, `build_task(config, meta=None) -> medjax.train.task.Task`, reads the data, splits it and derives from
train what the model needs (``Task.meta``: vocabularies, class names, target statistics), or takes a run's saved
``meta`` instead of deriving it again. The model side works from ``(config, meta)`` alone, without data:
`build_model`, `inference` (the predict the loop and a loaded run both use), `encode` (inputs in their natural form
to a split), `decode` (predictions to columns) and `read_inputs` (the command line's strings to inputs). A module
also provides `Config` (a frozen dataclass extending `medjax.train.config.TrainConfig`).
"""

from __future__ import annotations

import importlib
import json
import pathlib

from medjax.errors import ConfigError

# Task name on the command line -> module. Imported lazily so `medjax --help` stays fast.
TASKS = {"medmnist": "medjax.tasks.medmnist", "ner": "medjax.tasks.ner", "textclf": "medjax.tasks.textclf",
         "ecg": "medjax.tasks.ecg", "molecules": "medjax.tasks.molecules", "treatment": "medjax.tasks.treatment",
         "translation": "medjax.tasks.translation"}


def task_module(name: str):
    if name not in TASKS:
        raise ConfigError(None, f"expected a task among {', '.join(sorted(TASKS))}, got {name!r}")
    return importlib.import_module(TASKS[name])


def saved_config(workdir: str | pathlib.Path):
    """``(task name, task module, config)`` of a run from its ``config.json``, the config's ``workdir`` set to the folder as
    given now (the run may have moved). A field the saved config lacks (the run predates it) takes the value that
    reproduces how the run was made."""
    from medjax.train.config import from_mapping
    from medjax.train.workdir import read_run_config

    name, fields = read_run_config(workdir)
    module = task_module(name)
    fields["workdir"] = str(workdir)
    return name, module, from_mapping(module.Config, fields, str(pathlib.Path(workdir) / "config.json"), saved=True)


def load_workdir(workdir: str | pathlib.Path):
    """Rebuilds `(task, config)` of a run: its data side from the run's data with the run's saved ``meta.json`` (so
    the ids are the ones it was trained with), for what needs the data (`medjax evaluate`, `explain`, int8 scoring).
    Reads the data; writes nothing. To use a model without its data: `medjax.load`."""
    from medjax.train.workdir import read_meta

    _, module, config = saved_config(workdir)
    return module.build_task(config, read_meta(workdir)), config


def task_of_workdir(workdir: str | pathlib.Path) -> str | None:
    """The task name a run's ``config.json`` records, or None when it cannot be read."""
    try:
        return json.loads((pathlib.Path(workdir) / "config.json").read_text())["task"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def evaluate_workdir(workdir: str | pathlib.Path, splits: tuple[str, ...] = ("test",)) -> dict:
    """`medjax evaluate`: reloads the best checkpoint of a run and scores ``splits`` again."""
    from medjax.train import loop

    task, config = load_workdir(workdir)
    return loop.evaluate(task, config, splits)
