"""The command line: `medjax train <task> ...`, `medjax evaluate`, `medjax plot`, `medjax keywords`, `medjax bench`.

Each task module in `medjax.tasks` provides a `Config` dataclass (extending `medjax.train.config.TrainConfig`, with
defaults that reproduce the published recipe) and `build_task(config) -> Task`. The flags of `medjax train <task>` are
made from the fields of its `Config`: a field `batch_size` is the flag `--batch-size`, and its comment is its help.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
import typing

from medjax.tasks import TASKS, task_module

def _field_help(cls) -> dict[str, str]:
    """The trailing `# comment` of each field in the dataclass source (and its bases), used as the flag's help."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for match in re.finditer(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, re.M):
            helps[match.group(1)] = match.group(2).strip()
    return helps


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    helps = _field_help(config_cls)
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        hint = hints[field.name]
        help_text = f"{helps.get(field.name, '')} (default: {default})"
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif typing.get_origin(hint) is tuple:
            (inner, *_) = typing.get_args(hint)
            parser.add_argument(flag, type=inner, nargs="*", default=default, help=help_text)
        else:
            kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint) if typing.get_args(hint) else hint
            parser.add_argument(flag, type=kind, default=default, help=help_text)


def config_from_args(config_cls, args: argparse.Namespace):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)}
    for f in dataclasses.fields(config_cls):
        if isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return config_cls(**values)


def _train(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: medjax train {{{','.join(sorted(TASKS))}}} [options]   (medjax train <task> --help for options)")
        return 0
    name, rest = argv[0], argv[1:]
    module = task_module(name)
    parser = argparse.ArgumentParser(prog=f"medjax train {name}", description=module.__doc__)
    add_config_arguments(parser, module.Config)
    config = config_from_args(module.Config, parser.parse_args(rest))
    from medjax.train import distributed, loop

    from medjax.data.download import DownloadError

    distributed.initialize()  # multi-host: joins the other processes when launched as one; a no-op on one machine
    try:
        task = module.build_task(config)
    except DownloadError as err:  # no network: say what to do, without a traceback
        raise SystemExit(f"medjax: {err}") from None
    loop.train(task, config, task_name=name)
    return 0


def _workdir_command(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"medjax {command}")
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train` run")
    if command == "keywords":
        parser.add_argument("text", help="the document whose keywords to rank")
        parser.add_argument("--top-k", type=int, default=10, help="how many tokens to print (default: 10)")
        parser.add_argument("--method", choices=("attention", "gradient"), default="attention",
                            help="rank by attention weight or by gradient x input (default: attention)")
    args = parser.parse_args(argv)
    if command == "evaluate":
        from medjax.tasks import evaluate_workdir

        evaluate_workdir(args.workdir)
    elif command == "plot":
        from medjax.train import plots

        plots.plot_workdir(args.workdir)
    else:
        from medjax.tasks import keywords

        keywords.main(args.workdir, args.text, top_k=args.top_k, method=args.method)
    return 0


def _bench(argv: list[str]) -> int:
    # benchmarks/ is part of the repository, not of the installed package: look for it in the working directory.
    sys.path.insert(0, os.getcwd())
    try:
        from benchmarks import runner
    except ModuleNotFoundError:
        raise SystemExit("medjax bench: no benchmarks/ folder here; run it from the root of a medjax checkout "
                         "(or there: python -m benchmarks)") from None
    return runner.main(argv)


COMMANDS = {
    "train": "train a model: medjax train {medmnist,ner,textclf} --workdir W [options]",
    "evaluate": "reload a run's best checkpoint and score its test split: medjax evaluate --workdir W",
    "plot": "draw learning curves, ROC curves and confusion matrix as PNG: medjax plot --workdir W",
    "keywords": "rank a document's tokens with a trained attention classifier: medjax keywords --workdir W TEXT",
    "bench": "time medjax against PyTorch: medjax bench [--help]",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: medjax <command> ...\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<9} {text}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(f"unknown command {command!r}; valid commands: {', '.join(COMMANDS)}")
    if command == "train":
        return _train(rest)
    if command == "bench":
        return _bench(rest)
    return _workdir_command(command, rest)


if __name__ == "__main__":
    sys.exit(main())
