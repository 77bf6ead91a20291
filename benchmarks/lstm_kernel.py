"""The LSTM layer alone, forward + backward: medjax's C++ kernel and XLA loop against PyTorch's ``nn.LSTM`` (oneDNN).

    python -m benchmarks.lstm_kernel            # times every shape, writes results/lstm_kernel.json and the table
    python -m benchmarks.lstm_kernel --report   # the table in RESULTS.md from the committed JSON

One process per (implementation, shape), run one after another: gradients of a weighted sum of the outputs with
respect to the inputs and every weight, median of 50 timed calls after 5 warm-ups. The shapes are the benchmark
workloads' layers: the tutorial LSTM's first layer (b64, T50, 10 → 32) and the NER-size BiLSTM (b32, T60, 100 → 200,
both directions).
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

from benchmarks import results_md
from benchmarks.measure import median_ms

RESULTS = pathlib.Path(__file__).parent / "results" / "lstm_kernel.json"
SHAPES = {"tutorial LSTM layer": dict(batch=64, time=50, features=10, hidden=32, bidirectional=False),
          "NER BiLSTM layer": dict(batch=32, time=60, features=100, hidden=200, bidirectional=True)}
IMPLEMENTATIONS = ("ffi", "custom_vjp", "torch")
CALLS, WARMUP = 50, 5


def _time(call) -> float:
    return median_ms(call, CALLS, WARMUP)


def _jax(shape: dict, implementation: str) -> float:
    import jax
    import jax.numpy as jnp

    from medjax.nn.recurrent import LSTM

    model = LSTM(shape["hidden"], bidirectional=shape["bidirectional"], implementation=implementation)
    x = jax.random.normal(jax.random.key(0), (shape["batch"], shape["time"], shape["features"]))
    variables = model.init(jax.random.key(1), x)
    grad = jax.jit(jax.grad(lambda v, x: jnp.sum(model.apply(v, x)[0] * 0.5), argnums=(0, 1)))
    return _time(lambda: jax.block_until_ready(grad(variables, x)))


def _torch(shape: dict) -> float:
    import torch

    lstm = torch.nn.LSTM(shape["features"], shape["hidden"], batch_first=True, bidirectional=shape["bidirectional"])
    x = torch.randn(shape["batch"], shape["time"], shape["features"], requires_grad=True)

    def call():
        lstm.zero_grad(set_to_none=True)
        x.grad = None
        (lstm(x)[0] * 0.5).sum().backward()

    return _time(call)


def measure() -> dict:
    from benchmarks.runner import machine_facts

    rows = {}
    for name, shape in SHAPES.items():
        rows[name] = {}
        for implementation in IMPLEMENTATIONS:
            command = [sys.executable, "-m", "benchmarks.lstm_kernel", "--child", name, implementation]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows[name][implementation] = float(done.stdout.strip().splitlines()[-1])
            print(f"  {name}, {implementation}: {rows[name][implementation]:.2f} ms", flush=True)
    import jax
    import torch

    return {"command": "python -m benchmarks.lstm_kernel", "date": time.strftime("%Y-%m-%d"),
            "machine": machine_facts(), "versions": {"jax": jax.__version__, "torch": torch.__version__},
            "shapes": SHAPES, "ms": rows}


def report(results: dict) -> str:
    machine = results["machine"]
    lines = [f"{machine['cpu']}, {machine['cpus_available']} CPUs; jax {results['versions']['jax']}, torch "
             f"{results['versions']['torch']}; `{results['command']}`, {results['date']}. One LSTM layer, forward + "
             f"backward (inputs and weights), median ms of {CALLS} calls, one process each:", "",
             "| layer | C++ kernel (`ffi`) | XLA loop (`custom_vjp`) | PyTorch `nn.LSTM` (oneDNN) | kernel / PyTorch |",
             "|---|---|---|---|---|"]
    for name, ms in results["ms"].items():
        lines.append(f"| {name} | {ms['ffi']:.2f} | {ms['custom_vjp']:.2f} | {ms['torch']:.2f} | "
                     f"{ms['ffi'] / ms['torch']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only write the table of the committed JSON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, implementation = args.child
        shape = SHAPES[name]
        print(_torch(shape) if implementation == "torch" else _jax(shape, implementation))
        return 0
    return results_md.record_and_report(RESULTS, None if args.report else measure, report, "lstm layer",
                                        "The LSTM layer alone: medjax's kernels against oneDNN",
                                        "python -m benchmarks.lstm_kernel --report")


if __name__ == "__main__":
    raise SystemExit(main())
