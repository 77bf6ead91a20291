"""Tasks: each module supplies data, a model, a loss and metrics to the one loop (`medjax.train.loop`).

A task module provides `Config` (a dataclass extending `medjax.train.config.TrainConfig`) and
`build_task(config) -> medjax.train.task.Task`.
"""

from __future__ import annotations

import importlib
import json
import pathlib

# Task name on the command line -> module. Imported lazily so `medjax --help` stays fast.
TASKS = {"medmnist": "medjax.tasks.medmnist", "ner": "medjax.tasks.ner", "textclf": "medjax.tasks.textclf"}


def task_module(name: str):
    if name not in TASKS:
        raise SystemExit(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name])


def load_workdir(workdir: str | pathlib.Path):
    """Rebuilds `(task, config)` of a finished or interrupted run from its `config.json`."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: is {workdir} the work folder of a `medjax train` run?")
    saved = json.loads(path.read_text())
    module = task_module(saved["task"])
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()}
    # The folder as given now: the run may have been moved, or started from another working directory.
    fields["workdir"] = str(workdir)
    config = module.Config(**fields)
    return module.build_task(config), config


def evaluate_workdir(workdir: str | pathlib.Path) -> dict:
    """`medjax evaluate`: reloads the best checkpoint of a run and scores its test split."""
    from medjax.train import loop

    task, config = load_workdir(workdir)
    return loop.evaluate(task, config)
