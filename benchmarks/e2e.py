"""What the end-to-end benchmarks share (`e2e_ner`, `e2e_medmnist`): each side of a comparison in its own process,
medjax and PyTorch alternating, every process printing one JSON line with its ``epoch_seconds``."""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable


def parser(doc: str, data_dir: str) -> argparse.ArgumentParser:
    """The options every end-to-end script has: the data, the processes per side, --report, and the child's --side."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=data_dir)
    parser.add_argument("--repeats", type=int, default=2, help="processes per side (default: 2)")
    parser.add_argument("--report", action="store_true", help="only write the table of the committed JSON")
    parser.add_argument("--side", choices=("medjax", "torch"), help=argparse.SUPPRESS)
    return parser


def alternate(module: str, repeats: int, child_args: Callable[[str, dict], list[str]]) -> tuple[dict, dict]:
    """Runs ``python -m <module> --side medjax|torch <child_args(side, facts)>`` ``repeats`` times each, alternating.

    ``facts`` gathers each result's ``"facts"`` (what the medjax process learned that the PyTorch one needs, e.g.
    the vocabulary size), so medjax runs first. Returns ``({side: [result, ...]}, facts)``.
    """
    runs: dict[str, list] = {"medjax": [], "torch": []}
    facts: dict = {}
    for repeat in range(repeats):
        for side in runs:
            command = [sys.executable, "-m", module, "--side", side, *child_args(side, facts)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{module}: the {side} process failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            facts.update(result.get("facts", {}))
            runs[side].append(result)
            print(f"  {side} r{repeat}: epochs {', '.join(f'{s:.1f} s' for s in result['epoch_seconds'])}",
                  flush=True)
    return runs, facts


def time_medjax_epochs(task_module: Any, epochs: int, before: Callable | None = None,
                       after_epoch: Callable | None = None, **options) -> tuple[list[float], Any, Any]:
    """Seconds of each of ``epochs`` epochs of a medjax task, as `medjax train` runs them: the task's data side, the
    loop's own `setup` and `train_epoch`, in a temporary run folder that nothing is written to.

    ``before(task, config)`` runs once before the first epoch, untimed; ``after_epoch(state, task, config, run)``
    inside each epoch's time (e.g. scoring the validation split). Returns ``(seconds, task, run)``.
    """
    import jax

    from medjax.train import loop
    from medjax.train.progress import ProgressReporter

    with tempfile.TemporaryDirectory() as workdir:
        config = task_module.Config(workdir=workdir, epochs=epochs, **options)
        task = task_module.build_task(config)
        run = loop.setup(task, config)
        if before is not None:
            before(task, config)
        reporter = ProgressReporter(epochs, run.steps_per_epoch, 0, show_bar=False, stream=io.StringIO())
        state, step, seconds = run.state, 0, []
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            state, step, _ = loop.train_epoch(state, run.rng, task, config, run, epoch, step, reporter)
            if after_epoch is not None:
                after_epoch(state, task, config, run)
            jax.block_until_ready(state)
            seconds.append(time.perf_counter() - start)
    return seconds, task, run


def median_epoch(runs: dict, side: str, epochs: list[int]) -> float:
    """The median over ``side``'s processes of each one's mean time over ``epochs`` (0-based)."""
    return statistics.median(statistics.mean(run["epoch_seconds"][e] for e in epochs) for run in runs[side])


def versions(runs: dict) -> str:
    torch_run = runs["torch"][0]
    return f"jax {runs['medjax'][0]['jax']}, torch {torch_run['torch']} ({torch_run['threads']} threads)"
