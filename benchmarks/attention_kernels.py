"""The formula against blockwise (online-softmax) attention on CPU, forward + backward, by sequence length.

    python -m benchmarks.attention_kernels            # writes benchmarks/results/attention_kernels.json
    python -m benchmarks.attention_kernels --table    # prints the Markdown table of that JSON

Each length runs in a fresh process: ``jax.grad`` of ``sum(attention(q, k, v, mask)²)`` with respect to q, k and v,
``[batch 32, heads 4, T, d 64]`` float32 with a padding mask (the shapes of the transformer workload at T = 256),
jitted; after a warm-up the variants are timed in turn (ABAB…), and each gets the median of its rounds. Then the
benchmark workloads that attend (the tutorial attention and the 4 × 256 transformer at T = 256: `benchmarks/workloads`)
time medjax's whole train step with `dot_product_attention` choosing the formula, then the blockwise kernel, each in
its own process, alternating, 3 processes each. What it decides: `medjax.nn.attention_kernels.choose_implementation`
uses the blockwise kernel on CPU from ``BLOCKWISE_FROM`` keys on.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys

import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results" / "attention_kernels.json"
LENGTHS = (128, 256, 512, 1024)
WORKLOADS = {"attention": 60, "transformer": 6}  # workload -> timed steps a process

STEP = r'''
import json, statistics, sys, time
import jax, optax
import medjax
from medjax.nn import attention_kernels
from benchmarks import medjax_step, workloads
name, kernel, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
attention_kernels.BLOCKWISE_FROM = 0 if kernel == "blockwise" else 10**9
module = workloads.medjax_module(name)
sizes = dict(module.SIZES)
batch = jax.device_put(module.make_batch(sizes, 0))
model = module.make_model(sizes)
state = medjax_step.initial_state(module.init(model, jax.random.key(0), batch), optax.adam(1e-3))
step, _, _ = medjax_step.compile_step(name, sizes, state, batch)
for _ in range(3):
    state, loss = step(state, batch)
    jax.block_until_ready(state)
times = []
for _ in range(steps):
    start = time.perf_counter()
    state, loss = step(state, batch)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
print(json.dumps(1e3 * statistics.median(times)))
'''

CHILD = r'''
import json, statistics, sys, time
import jax, jax.numpy as jnp
import medjax
from medjax.nn.attention import scaled_dot_product_attention
from medjax.nn.blockwise_attention import blockwise_attention
t, rounds = int(sys.argv[1]), int(sys.argv[2])
q, k, v = (jax.random.normal(jax.random.key(i), (32, 4, t, 64)) for i in range(3))
mask = (jnp.arange(t)[None] < jnp.arange(t - 31, t + 1)[:, None])[:, None, None, :]
def grad_of(fn):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) ** 2), argnums=(0, 1, 2)))
variants = {"formula": grad_of(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask))}
for block in (128, 256, 512):
    if block <= t:
        variants[f"blockwise {block}"] = grad_of(lambda q, k, v, b=block: blockwise_attention(q, k, v, mask, b))
for f in variants.values():
    jax.block_until_ready(f(q, k, v))
times = {name: [] for name in variants}
for _ in range(rounds):
    for name, f in variants.items():
        start = time.perf_counter()
        jax.block_until_ready(f(q, k, v))
        times[name].append(time.perf_counter() - start)
print(json.dumps({name: 1e3 * statistics.median(ts) for name, ts in times.items()}))
'''


def cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def measure(rounds: int) -> dict:
    import jax

    rows = []
    for t in LENGTHS:
        out = subprocess.run([sys.executable, "-c", CHILD, str(t), str(rounds if t <= 512 else max(3, rounds // 3))],
                             capture_output=True, text=True, check=True).stdout
        rows.append({"T": t, "median_ms": json.loads(out.strip().splitlines()[-1])})
        print(rows[-1], flush=True)
    steps = {}
    for name, count in WORKLOADS.items():
        steps[name] = {"formula": [], "blockwise": []}
        for _ in range(3):
            for kernel in ("formula", "blockwise"):
                out = subprocess.run([sys.executable, "-c", STEP, name, kernel, str(count)], capture_output=True,
                                     text=True, check=True, cwd=pathlib.Path(__file__).parent.parent).stdout
                steps[name][kernel].append(json.loads(out.strip().splitlines()[-1]))
        print(name, steps[name], flush=True)
    return {"cpu": cpu_model(), "cores": len(__import__("os").sched_getaffinity(0)), "jax": jax.__version__,
            "shape": "[32, 4, T, 64] f32, padding mask, grad wrt q, k, v", "rows": rows, "train_steps": steps}


def table(record: dict) -> str:
    lines = [f"{record['cpu']}, {record['cores']} cores, jax {record['jax']}; {record['shape']}; median ms:", "",
             "| T | formula | blockwise 128 | blockwise 256 | blockwise 512 | best blockwise / formula |",
             "|---|---|---|---|---|---|"]
    for row in record["rows"]:
        ms = row["median_ms"]
        blockwise = [ms.get(f"blockwise {b}") for b in (128, 256, 512)]
        best = min(x for x in blockwise if x is not None)
        cells = [f"{x:,.1f}" if x is not None else "—" for x in [ms["formula"], *blockwise]]
        lines.append(f"| {row['T']} | " + " | ".join(cells) + f" | {best / ms['formula']:.2f} |")
    lines += ["", "medjax's train step (median over 3 processes of each process's median, ms):", "",
              "| workload | formula | blockwise | blockwise / formula |", "|---|---|---|---|"]
    for name, kernels in record.get("train_steps", {}).items():
        formula, blockwise = (float(np.median(kernels[k])) for k in ("formula", "blockwise"))
        lines.append(f"| {name} | {formula:,.1f} | {blockwise:,.1f} | {blockwise / formula:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attention_kernels", description=__doc__)
    parser.add_argument("--table", action="store_true", help="print the table of the committed JSON")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return 0
    record = measure(args.rounds)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
