"""Who owns a work folder: `medjax train` writes only into an empty folder, a new one, or its own run's.

A folder that holds files and no ``config.json`` of a medjax run, or the ``config.json`` of another task or another
config (beyond the options a resumed run may change), is someone else's: training there is refused in one line,
unless ``--overwrite``, which moves every entry into ``<workdir>/previous-<n>/`` first. Nothing is deleted.
"""

from __future__ import annotations

import json
import pathlib
import sys

from medjax.errors import ConfigError, UserError
from medjax.train.config import RESUMABLE_CHANGES, TrainConfig, as_json, from_mapping


def claim(workdir: pathlib.Path, config: TrainConfig, task_name: str) -> None:
    """Makes ``workdir`` if it is new; refuses it (or, with ``config.overwrite``, clears it aside) if it is not this
    run's.

    Raises:
      ConfigError: the folder holds another run or files medjax did not write, naming the folder and why.
    """
    why = check(workdir, config, task_name)
    workdir.mkdir(parents=True, exist_ok=True)
    if why is None:
        return
    aside = _free_name(workdir)
    aside.mkdir()
    for entry in sorted(workdir.iterdir()):
        if not _is_previous(entry.relative_to(workdir)):  # earlier previous-<n>/ folders (and aside) stay put
            entry.rename(aside / entry.name)
    print(f"--overwrite: moved what {workdir} held ({why}) into {aside}", file=sys.stderr)


def check(workdir: pathlib.Path, config: TrainConfig, task_name: str) -> str | None:
    """Raises unless ``workdir`` may hold this run; returns why it is not this run's when ``--overwrite`` allows
    clearing it, None when it is (or is new). Writes nothing: `medjax train` calls it before reading any data."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(workdir, "expected a folder for the run (or a path to make one), got a file")
    why = foreign(workdir, config, task_name)
    if why is not None and not config.overwrite:
        raise ConfigError(workdir, f"holds {why}: train in a new --workdir, resume that run with its own config, or "
                                   f"pass --overwrite to move its contents into {workdir}/previous-<n>/")
    return why


def foreign(workdir: pathlib.Path, config: TrainConfig, task_name: str) -> str | None:
    """Why the folder is not this run's, or None when it is (or is new, or empty but for empty folders)."""
    if not workdir.is_dir():
        return None
    path = workdir / "config.json"
    if not path.is_file():
        files = [p for p in workdir.rglob("*") if not p.is_dir() and not _is_previous(p.relative_to(workdir))]
        return f"{len(files)} files that no medjax run wrote (no config.json)" if files else None
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and saved.get("task") != task_name:
            return f"a run of another task ({saved.get('task')!r})"
        before = as_json(from_mapping(type(config), saved["config"], str(path), saved=True))
    except (ValueError, KeyError, TypeError, UserError):
        return "a config.json that no medjax run of this task wrote"
    current = as_json(config)
    changed = sorted(name for name in current if name not in RESUMABLE_CHANGES and current[name] != before[name])
    if changed:
        return "a run with a different config (" + "; ".join(f"{name} {before[name]!r} -> {current[name]!r}"
                                                            for name in changed) + ")"
    return None


def _is_previous(relative: pathlib.Path) -> bool:
    return relative.parts[0].startswith("previous-") if relative.parts else False


def _free_name(workdir: pathlib.Path) -> pathlib.Path:
    n = 1
    while (workdir / f"previous-{n}").exists():
        n += 1
    return workdir / f"previous-{n}"
