"""Tasks: each module supplies data, a model, a loss and metrics to the one loop (`medjax.train.loop`).

A task module provides `Config` (a frozen dataclass extending `medjax.train.config.TrainConfig`) and
`build_task(config) -> medjax.train.task.Task`. A task that labels new inputs (`medjax predict <task>`) also provides
`add_predict_arguments(parser)` (its flags beside ``--workdir``) and `predict_main(args)`.
"""

from __future__ import annotations

import importlib
import json
import pathlib

from medjax.errors import ConfigError, DataError, UserError

# Task name on the command line -> module. Imported lazily so `medjax --help` stays fast.
TASKS = {"medmnist": "medjax.tasks.medmnist", "ner": "medjax.tasks.ner", "textclf": "medjax.tasks.textclf",
         "ecg": "medjax.tasks.ecg", "molecules": "medjax.tasks.molecules", "treatment": "medjax.tasks.treatment",
         "translation": "medjax.tasks.translation"}
# The tasks whose module has `add_predict_arguments` and `predict_main` (`medjax predict <task>`).
PREDICTORS = ("ecg", "molecules")


def task_module(name: str):
    if name not in TASKS:
        raise ConfigError(None, f"expected a task among {', '.join(sorted(TASKS))}, got {name!r}")
    return importlib.import_module(TASKS[name])


def load_workdir(workdir: str | pathlib.Path):
    """Rebuilds `(task, config)` of a finished or interrupted run from its `config.json`.

    A field the saved config lacks (the run predates it) takes the value that reproduces how the run was made.
    """
    from medjax.train.config import from_mapping

    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise UserError(workdir, "expected the work folder of a `medjax train` run, found no config.json")
    try:
        saved = json.loads(path.read_text())
        name, fields = saved["task"], dict(saved["config"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DataError(path, f"expected the config.json of a run, got unreadable contents ({err})") from None
    module = task_module(name)
    # The folder as given now: the run may have been moved, or started from another working directory.
    fields["workdir"] = str(workdir)
    config = from_mapping(module.Config, fields, str(path), saved=True)
    return module.build_task(config), config


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
