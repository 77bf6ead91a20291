"""The command line: `medjax train <task> ...`, `medjax predict --workdir W INPUT...`, `medjax evaluate`, `medjax export`,
`medjax plot`, `medjax report`, `medjax explain`, `medjax keywords`, `medjax bench` (`COMMANDS`).

Each task module in `medjax.tasks` provides a frozen `Config` dataclass whose fields (declared with
`medjax.train.config.option`) are the flags of `medjax train <task>`: a field ``batch_size`` is ``--batch-size``, its
help is its help. ``--config run.toml`` reads fields from a TOML file first; flags given beside it win.

A user's mistake (a path, a damaged file, a bad value) ends in one line on stderr, ``medjax: error: ...``, and exit
status 2; ``--debug`` shows the traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tomllib

from medjax.errors import ConfigError, DataError, UserError
from medjax.tasks import TASKS, task_module


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are `ConfigError`s: one line, exit status 2, like every other user error."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise ConfigError(None, f"{self.prog}: {message}")


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """One flag per field of ``config_cls``, its help and default from the field."""
    from medjax.train.config import choices_of, field_kind, flag

    for field in dataclasses.fields(config_cls):
        kind, is_tuple, _ = field_kind(config_cls, field)
        choices = choices_of(field)
        help_text = field.metadata.get("help", "")
        if choices:
            help_text += f"; one of {', '.join(map(str, choices))}"
        help_text += f" (default: {field.default})"
        if kind is bool:
            parser.add_argument(flag(field.name), action=argparse.BooleanOptionalAction, default=field.default,
                                help=help_text)
        else:
            parser.add_argument(flag(field.name), type=kind, nargs="*" if is_tuple else None, default=field.default,
                                help=help_text, metavar=field.name.upper())


def _read_toml(path: str) -> dict:
    from medjax.data.files import read_text

    try:
        values = tomllib.loads(read_text(path, "a TOML config file"))
    except tomllib.TOMLDecodeError as err:
        raise DataError(path, f"expected TOML, got {err}") from None
    return {key.replace("-", "_"): value for key, value in values.items()}


def parse_config(config_cls, argv: list[str], prog: str):
    """The config of ``medjax train <task>`` from its arguments: defaults, then ``--config`` TOML, then flags."""
    from medjax.train.config import from_mapping

    pre = _Parser(prog=prog, add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)
    parser = _Parser(prog=prog, description=sys.modules[config_cls.__module__].__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a TOML file of option = value lines (field names); flags given beside it "
                                         "win")
    add_config_arguments(parser, config_cls)
    if known.config:
        from_file = _read_toml(known.config)
        from_mapping(config_cls, from_file, known.config)  # names the file if a value there is wrong
        parser.set_defaults(**from_file)
    values = vars(parser.parse_args(rest))
    values.pop("config")
    return from_mapping(config_cls, values, prog)


def _train(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: medjax train {{{','.join(sorted(TASKS))}}} [--config run.toml] [options]   "
              f"(medjax train <task> --help for options)")
        return 0
    name, rest = argv[0], argv[1:]
    module = task_module(name)
    config = parse_config(module.Config, rest, f"medjax train {name}")
    import pathlib

    from medjax.train import distributed, loop, ownership
    from medjax.train.workdir import has_checkpoint, read_meta

    workdir = pathlib.Path(config.workdir)
    # Resuming this run: its data side (vocabularies, subwords) comes from its meta.json, never rebuilt.
    resuming = ownership.check(workdir, config, name) is None and has_checkpoint(workdir)
    distributed.initialize()  # joins the other processes when launched as one of several; a no-op alone
    results = loop.train(module.build_task(config, read_meta(workdir) if resuming else None), config, task_name=name)
    if results is not None and distributed.is_writer():
        from medjax.train import model_card
        from medjax.train.config import as_json

        published = module.published_rows(as_json(config)) if hasattr(module, "published_rows") else []
        model_card.write(workdir, published, (module.__doc__ or "").strip().splitlines()[0])
    distributed.finish()
    return 0


def _predict(argv: list[str]) -> int:
    """`medjax predict --workdir W INPUT...`: the run's predictions as JSON lines (or CSV) on stdout or --output."""
    from medjax import rows, run as runs

    parser = _Parser(prog="medjax predict", description=runs.__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train` run")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files, texts, sentences, SMILES, record paths or person ids, as the run's task "
                             "takes; '-' reads one input a line from stdin")
    parser.add_argument("--file", help="a text file of inputs, one a line")
    parser.add_argument("--output", help="write here instead of stdout")
    parser.add_argument("--format", choices=("jsonl", "csv"), default=None,
                        help="jsonl (default) or csv (default for an --output ending in .csv)")
    parser.add_argument("--which", choices=("best", "latest"), default="best", help="the checkpoint (default: best)")
    parser.add_argument("--coverage", type=float, help="classification: split-conformal prediction sets; "
                                                       "regression: intervals, holding the truth this often")
    parser.add_argument("--top-k", type=int, help="treatment: how many drugs to list (default: 5)")
    parser.add_argument("--person-id", type=int, action="append", help="treatment: a person_id (as INPUT)")
    args = parser.parse_args(argv)
    inputs = _gather_inputs(args)
    run = runs.load(args.workdir, args.which)
    columns = run.predict(run.module.read_inputs(inputs), coverage=args.coverage, top_k=args.top_k)
    rows.write(columns, args.output, args.format)
    return 0


def _gather_inputs(args) -> list[str]:
    from medjax.data.files import read_stdin_lines, read_text

    inputs = []
    for item in args.inputs:
        inputs += [line.strip() for line in read_stdin_lines("inputs") if line.strip()] if item == "-" else [item]
    if args.file:
        inputs += [line.strip() for line in read_text(args.file, "a file of inputs").splitlines() if line.strip()]
    inputs += [str(person) for person in args.person_id or ()]
    if not inputs:
        raise ConfigError("INPUT", "expected inputs to predict (arguments, '-' for stdin, or --file), got none")
    return inputs


def _translate(argv: list[str]) -> int:
    """`medjax translate --workdir W [TEXT ...]`: one translation a line, of each TEXT or each line of stdin (blank
    lines stay blank); `medjax predict` on a translation run, printed as text."""
    from medjax import run as runs
    from medjax.data.files import read_stdin_lines

    parser = _Parser(prog="medjax translate", description=_translate.__doc__)
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train translation` run")
    parser.add_argument("text", nargs="*", help="sentences to translate (none: read stdin, one sentence a line)")
    args = parser.parse_args(argv)
    run = runs.load(args.workdir)
    if run.task != "translation":
        raise ConfigError(args.workdir, f"expected the work folder of a `medjax train translation` run, got a "
                                        f"{run.task} run")
    lines = list(args.text) if args.text else read_stdin_lines("sentences to translate")
    given = [i for i, line in enumerate(lines) if line.strip()]
    if not given:
        raise ConfigError("stdin" if not args.text else "TEXT", "expected sentences to translate, got none")
    done = dict(zip(given, run.predict([lines[i].strip() for i in given])["translation"]))
    for i in range(len(lines)):
        print(done.get(i, ""))
    return 0


def _recommend(argv: list[str]) -> int:
    """`medjax recommend --workdir W --person-id P [--top-k K]`: ``rank  probability  concept_id  name`` lines."""
    from medjax import run as runs

    parser = _Parser(prog="medjax recommend", description=_recommend.__doc__)
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train treatment` run")
    parser.add_argument("--person-id", type=int, required=True, help="a person_id of the run's database")
    parser.add_argument("--top-k", type=int, default=5, help="how many drugs to list (default: 5)")
    args = parser.parse_args(argv)
    run = runs.load(args.workdir)
    if run.task != "treatment":
        raise ConfigError(args.workdir, f"expected the work folder of a `medjax train treatment` run, got a "
                                        f"{run.task} run")
    out = run.predict([args.person_id], top_k=args.top_k)
    for rank, (score, concept, name) in enumerate(zip(out["scores"][0], out["concept_ids"][0], out["drugs"][0]), 1):
        print(f"{rank}\t{score:.4f}\t{concept}\t{name}")
    return 0


def _plot_all(workdir: str) -> list:
    """The generic figures of a run and those its task draws (an ECG strip, a parity plot)."""
    from medjax.tasks import task_of_workdir
    from medjax.train import plots

    name = task_of_workdir(workdir)
    module = task_module(name) if name in TASKS else None
    # The task's figure first: it reads files outside the run (an ECG record) and may fail before anything is drawn.
    own = module.plot_workdir(workdir) if hasattr(module, "plot_workdir") else []
    return plots.plot_workdir(workdir) + own


def _report(argv: list[str]) -> int:
    """`medjax report --workdir W [--html]`: the run's results and the model's cost (parameters, size on disk, FLOPs,
    latency, memory) as text, or one self-contained HTML page."""
    import pathlib

    from medjax.tasks import task_of_workdir
    from medjax.train.html_report import write_report
    from medjax.train.progress import format_metrics
    from medjax.train.workdir import read_json, read_json_object

    parser = _Parser(prog="medjax report")
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train` run")
    parser.add_argument("--html", action="store_true", help="write <workdir>/report.html: config, results beside "
                                                            "the published row, figures; self-contained")
    args = parser.parse_args(argv)
    workdir = pathlib.Path(args.workdir)
    name = task_of_workdir(workdir)
    if name is None:
        raise UserError(workdir, "expected the work folder of a `medjax train` run, found no readable config.json")
    if args.html:
        module = task_module(name) if name in TASKS else None
        config = read_json(workdir / "config.json", "the config.json of a run").get("config", {})
        if not isinstance(config, dict):
            raise DataError(workdir / "config.json", "expected a JSON object of options under \"config\"")
        published = module.published_rows(config) if hasattr(module, "published_rows") else []
        print(write_report(workdir, published, draw=lambda folder: _plot_all(str(folder))))
        return 0
    if (workdir / "results.json").is_file():
        print(format_metrics(read_json_object(workdir / "results.json", "the results.json of a finished run")))
    else:
        print(f"{workdir}: unfinished (no results.json yet)")
    from medjax.train.cost import cost_report

    # The dtype of every layer goes to cost.json; the line gives their count per dtype.
    print(format_metrics({key: value for key, value in cost_report(workdir).items() if key != "layers"}))
    return 0


def _explain(argv: list[str]) -> int:
    """`medjax explain --workdir W --index i [--method m]` or ``--limit n`` for the first n examples of a split."""
    import numpy as np

    from medjax.explain import runs

    parser = _Parser(prog="medjax explain", description=runs.__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train` run")
    parser.add_argument("--index", type=int, help="the example of the split to explain")
    parser.add_argument("--limit", type=int, help="explain the split's first this many examples instead")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test", help="default: test")
    parser.add_argument("--method", choices=runs.METHODS, default="integrated_gradients",
                        help="the attribution method (default: integrated_gradients)")
    args = parser.parse_args(argv)
    if (args.index is None) == (args.limit is None):
        raise ConfigError("--index", "expected --index i or --limit n (one of them)")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit", f"expected an integer >= 1, got {args.limit}")
    indices = np.array([args.index]) if args.index is not None else np.arange(args.limit)
    for path in runs.explain_workdir(args.workdir, indices, args.method, args.split):
        print(path)
    return 0


def _export(argv: list[str]) -> int:
    """`medjax export --workdir W [--format npz|stablehlo ...] [--int8]`: `medjax.train.export`."""
    from medjax.train import export
    from medjax.train.progress import format_metrics

    parser = _Parser(prog="medjax export", description=export.__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train` run")
    parser.add_argument("--format", nargs="+", choices=export.FORMATS, default=["npz"],
                        help="npz (the variables; always written), stablehlo (the inference function with its "
                             "weights, batch dimension symbolic, for any JAX runtime), onnx (the same through "
                             "jax2onnx, for onnxruntime; the CNN and the transformers)")
    parser.add_argument("--int8", action="store_true", help="also write the int8 model and score and time it")
    args = parser.parse_args(argv)
    print(format_metrics(export.export_workdir(args.workdir, args.int8, tuple(args.format))))
    return 0


def _workdir_command(command: str, argv: list[str]) -> int:
    parser = _Parser(prog=f"medjax {command}")
    parser.add_argument("--workdir", required=True, help="the work folder of a `medjax train` run")
    if command == "evaluate":
        parser.add_argument("--splits", nargs="+", default=["test"], choices=("train", "val", "test"),
                            help="the splits to score (default: test)")
    if command == "keywords":
        parser.add_argument("text", help="the document whose keywords to rank")
        parser.add_argument("--top-k", type=int, default=10, help="how many tokens to print (default: 10)")
        parser.add_argument("--method", choices=("attention", "gradient"), default="attention",
                            help="rank by attention weight or by gradient x input (default: attention)")
    args = parser.parse_args(argv)
    if command == "evaluate":
        from medjax.tasks import evaluate_workdir

        evaluate_workdir(args.workdir, tuple(args.splits))
    elif command == "plot":
        for path in _plot_all(args.workdir):
            print(path)
    else:
        from medjax.explain import keywords

        keywords.main(args.workdir, args.text, top_k=args.top_k, method=args.method)
    return 0


def _bench(argv: list[str]) -> int:
    # benchmarks/ is part of the repository, not of the installed package: look for it in the working directory.
    sys.path.insert(0, os.getcwd())
    try:
        from benchmarks import runner
    except ModuleNotFoundError:
        raise UserError(os.getcwd(), "expected the root of a medjax checkout (a benchmarks/ folder); run "
                                     "`medjax bench` there, or `python -m benchmarks`") from None
    return runner.main(argv)


# name -> (handler, one line of help).
COMMANDS = {
    "train": (_train, "train a model: medjax train {ecg,medmnist,molecules,ner,textclf,translation,treatment} "
                      "--workdir W [--config run.toml] [options]"),
    "predict": (_predict, "predict new inputs with a trained run, any task: medjax predict --workdir W INPUT... "
                          "[--coverage 0.9] [--output out.csv]"),
    "recommend": (_recommend, "rank drugs for one patient of an OMOP database: medjax recommend --workdir W "
                              "--person-id P"),
    "translate": (_translate, "translate sentences (or stdin) with a trained run: medjax translate --workdir W "
                              "[TEXT ...]"),
    "report": (_report, "a run's results; --html: one self-contained page with figures: medjax report --workdir W "
                        "--html"),
    "explain": (_explain, "attribution maps of a run's examples as PNG/HTML: medjax explain --workdir W --index i "
                          "--method m"),
    "export": (_export, "the model for deployment: StableHLO (--format stablehlo), npz, --int8: medjax export "
                        "--workdir W"),
    "evaluate": (lambda argv: _workdir_command("evaluate", argv), "reload a run's best checkpoint and score its test "
                                                                  "split: medjax evaluate --workdir W"),
    "plot": (lambda argv: _workdir_command("plot", argv), "draw learning curves, ROC curves and confusion matrix as "
                                                          "PNG: medjax plot --workdir W"),
    "keywords": (lambda argv: _workdir_command("keywords", argv), "rank a document's tokens with a trained attention "
                                                                  "classifier: medjax keywords --workdir W TEXT"),
    "bench": (_bench, "time medjax against PyTorch: medjax bench [--help]"),
}


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: medjax [--debug] <command> ...\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<9} {text}")
        print("\n--debug shows the traceback of an error instead of its one-line message")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise ConfigError(None, f"expected a command among {', '.join(COMMANDS)}, got {command!r}")
    return COMMANDS[command][0](rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        status, message = _main(argv, debug)
    except BaseException as err:
        # One process of several that fails tells the others and ends now (they end within seconds): JAX's exit
        # barrier would wait for processes that are themselves waiting for this one.
        if not isinstance(err, SystemExit) and _several_processes():
            import traceback

            from medjax.train import distributed

            distributed.await_the_cause(err)  # a collective broken by another process's end: that process is named
            traceback.print_exc()
            distributed.fail_fast(f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}", 1)
        raise
    if status and _several_processes():
        from medjax.train import distributed

        distributed.fail_fast(message, status)
    return status


def _several_processes() -> bool:
    """Whether this is one process of several (without starting JAX's backend when no command did)."""
    if "jax" not in sys.modules:
        return False
    from medjax.train import distributed

    return distributed.active()


def _main(argv: list[str], debug: bool) -> tuple[int, str]:
    """``(exit status, the error line or "")`` of a command."""
    try:
        return _run(argv), ""
    except UserError as err:
        if debug:
            raise
        message = str(err)
    except OSError as err:
        # A path the user named that cannot be read or written (missing, a folder, no permission); other OS
        # errors are not the user's and keep their traceback.
        if debug or err.filename is None or not isinstance(
                err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)):
            raise
        message = f"{err.filename}: {err.strerror}"
    except KeyboardInterrupt:
        print("medjax: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130, "interrupted"
    message = " ".join(message.split())
    print("medjax: error: " + message, file=sys.stderr)
    return 2, message


if __name__ == "__main__":
    sys.exit(main())
