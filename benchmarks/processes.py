"""Two processes of one CPU device each against one process of two devices, as `medjax train` runs them.

    python -m benchmarks.processes [--data-dir ../shared/data/breastmnist-copy]   # writes results/processes.json
    python -m benchmarks.processes --report                                        # the table in RESULTS.md

Both layouts run the same partitioned program (batch split in two, gradients all-reduced); they differ in how the
halves talk: XLA's in-process all-reduce, or Gloo over TCP between processes on localhost. Each repeat trains BreastMNIST
for a few epochs both ways (alternating which goes first) and takes the median of the ``seconds`` of every epoch after
the first (which compiles) from ``metrics.jsonl``: one epoch's training steps and validation pass. Ratio = two
processes / one process, median over repeats. Both share this machine's cores, so this measures the cost of the
cross-process collectives, not a speed-up: that needs a second machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import jax

from benchmarks import results_md
from benchmarks.ensemble import cpu_model

RESULTS = pathlib.Path(__file__).parent / "results" / "processes.json"
WORKLOADS = {"cnn": 8, "resnet18": 3}  # model -> epochs


def _epoch_seconds(workdir: pathlib.Path) -> float:
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(line["seconds"] for line in lines[1:])


def _command(model: str, epochs: int, data: str, workdir: pathlib.Path) -> list[str]:
    return [str(pathlib.Path(sys.executable).parent / "medjax"), "train", "medmnist", "--model", model, "--epochs",
            str(epochs), "--data-dir", data, "--workdir", str(workdir), "--no-progress", "--no-tensorboard",
            "--log-every", "0"]


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS")}
    return {**env, **extra}


def one_process(model: str, epochs: int, data: str, workdir: pathlib.Path) -> float:
    subprocess.run(_command(model, epochs, data, workdir), check=True, stdout=subprocess.DEVNULL,
                   env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    return _epoch_seconds(workdir)


def two_processes(model: str, epochs: int, data: str, workdir: pathlib.Path) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pair = [subprocess.Popen(_command(model, epochs, data, workdir), stdout=subprocess.DEVNULL,
                             env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                      JAX_PROCESS_ID=str(i))) for i in (0, 1)]
    if any(process.wait() for process in pair):
        raise SystemExit(f"a process failed: {[p.returncode for p in pair]}")
    return _epoch_seconds(workdir)


def measure(data: str, repeats: int) -> dict:
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for model, epochs in WORKLOADS.items():
            seconds = {"one_process": [], "two_processes": []}
            for repeat in range(repeats):
                order = [one_process, two_processes][:: 1 if repeat % 2 == 0 else -1]
                for run in order:
                    workdir = pathlib.Path(folder) / f"{model}-{run.__name__}-{repeat}"
                    seconds[run.__name__].append(run(model, epochs, data, workdir))
                    print(f"{model} {run.__name__}: {seconds[run.__name__][-1]:.3f} s an epoch", flush=True)
            figures[model] = {"epochs": epochs, "epoch_seconds": seconds,
                              "ratio": statistics.median(t / o for t, o in zip(seconds["two_processes"],
                                                                                 seconds["one_process"]))}
    return {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "jax": jax.__version__,
            "date": time.strftime("%Y-%m-%d"), "command": "python -m benchmarks.processes", "repeats": repeats,
            "workloads": figures}


def report(results: dict) -> str:
    lines = [f"Two processes x 1 CPU device against one process x 2 CPU devices, `medjax train medmnist` on "
             f"BreastMNIST ({results['machine']}; jax {results['jax']}; `{results['command']}`; {results['date']}). "
             f"Median seconds an epoch (training steps and the validation pass, the compiling first epoch left "
             f"out), median of {results['repeats']} repeats; ratio = two processes / one process.", "",
             "| model | epochs | one process, s/epoch | two processes, s/epoch | ratio |", "|---|---|---|---|---|"]
    for model, figures in results["workloads"].items():
        one = statistics.median(figures["epoch_seconds"]["one_process"])
        two = statistics.median(figures["epoch_seconds"]["two_processes"])
        lines.append(f"| {model} | {figures['epochs']} | {one:.3f} | {two:.3f} | {figures['ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/breastmnist-copy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", action="store_true", help="only write the table of the committed JSON")
    args = parser.parse_args(argv)
    return results_md.record_and_report(RESULTS, None if args.report else lambda: measure(args.data_dir, args.repeats),
                                        report, "processes", "Two processes on one machine",
                                        "python -m benchmarks.processes --report")


if __name__ == "__main__":
    raise SystemExit(main())
