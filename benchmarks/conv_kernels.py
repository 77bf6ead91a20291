"""Winograd F(2×2, 3×3) against XLA's convolution on CPU: per layer, and in ResNet-18's training step.

    python -m benchmarks.conv_kernels            # times, writes results/conv_kernels.json and the table
    python -m benchmarks.conv_kernels --report   # the table in RESULTS.md from the committed JSON

Per layer: forward + backward (input and kernel gradients) of one 3×3, stride-1 convolution at the shapes of
ResNet-18 (28 px, batch 128) and the tutorial CNN (batch 64), median of 10 calls, both kernels in this process.
Step: medjax's ResNet-18 benchmark step (`benchmarks/workloads/resnet18.py`: forward, backward, Adam, batch norm in
training mode), compiled once with every convolution on XLA and once with `Conv2D`'s automatic choice, then timed in
alternation, so drift falls on both.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import time

from benchmarks import results_md
from benchmarks.measure import median_ms

RESULTS = pathlib.Path(__file__).parent / "results" / "conv_kernels.json"
LAYERS = [(128, 28, 64, 64), (128, 14, 128, 128), (128, 7, 256, 256), (128, 4, 512, 512),
          (64, 28, 1, 32), (64, 14, 32, 64)]  # (batch, size, C_in, C_out): ResNet-18's stages, the tutorial CNN


def time_layers(repeats: int = 10) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from medjax.nn.conv import conv2d
    from medjax.nn.winograd import winograd_conv3x3

    kernels = {"xla": lambda x, k: conv2d({"kernel": k}, x, padding=1), "winograd": winograd_conv3x3}
    rows = []
    for batch, size, c_in, c_out in LAYERS:
        x = jax.random.normal(jax.random.key(0), (batch, size, size, c_in))
        k = jax.random.normal(jax.random.key(1), (3, 3, c_in, c_out)) / (3 * c_in**0.5)
        row = {"batch": batch, "size": size, "c_in": c_in, "c_out": c_out}
        for name, conv in kernels.items():
            step = jax.jit(jax.grad(lambda x, k, conv=conv: jnp.sum(conv(x, k) ** 2), argnums=(0, 1)))
            row[name] = median_ms(lambda: jax.block_until_ready(step(x, k)), repeats)
        rows.append(row)
        print(f"  layer {row}", flush=True)
    return rows


def time_resnet_step(repeats: int = 10) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    import medjax.nn.conv as conv
    from benchmarks import medjax_step
    from benchmarks.workloads import resnet18

    batch = jax.device_put(resnet18.make_batch(resnet18.SIZES, 0))
    model = resnet18.make_model(resnet18.SIZES)
    variables = resnet18.init(model, jax.random.key(0), batch)
    tx = optax.adam(medjax_step.LEARNING_RATE)
    automatic = conv.choose_implementation
    compiled, states = {}, {}
    for name in ("xla", "auto"):
        # Traced with the choice forced to XLA for the baseline; the compiled steps are then fixed.
        conv.choose_implementation = automatic if name == "auto" else (lambda *args, **kwargs: "xla")
        step = jax.jit(functools.partial(medjax_step.train_step, resnet18.loss, model, tx, None), donate_argnums=0)
        # A copy each: the steps donate their state, and device_put would share the initial buffers.
        states[name] = jax.tree.map(jnp.copy, medjax_step.initial_state(variables, tx))
        compiled[name] = step.lower(states[name], batch).compile()
    conv.choose_implementation = automatic
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for _ in range(repeats + 1):  # the first round warms up
        for name, step in compiled.items():
            start = time.perf_counter()
            states[name], loss = step(states[name], batch)
            jax.block_until_ready(loss)
            times[name].append((time.perf_counter() - start) * 1e3)
    result = {name: statistics.median(values[1:]) for name, values in times.items()}
    print(f"  ResNet-18 step {result}", flush=True)
    return result


def report(results: dict) -> str:
    machine = results["machine"]
    lines = [f"{machine['cpu']}, {machine['cpus_available']} CPUs; jax {results['jax']}; `{results['command']}`, "
             f"{results['date']}. Forward + backward of one 3×3 stride-1 convolution, median ms:", "",
             "| layer (batch, map, C_in → C_out) | XLA | Winograd | Winograd / XLA | `auto` runs |",
             "|---|---|---|---|---|"]
    from medjax.nn.conv import choose_implementation

    for row in results["layers"]:
        shape = (row["batch"], row["size"], row["size"], row["c_in"])
        chosen = choose_implementation(shape, (3, 3, row["c_in"], row["c_out"]), 1, 1, "cpu")
        lines.append(f"| {row['batch']}, {row['size']}×{row['size']}, {row['c_in']} → {row['c_out']} | "
                     f"{row['xla']:.1f} | {row['winograd']:.1f} | {row['winograd'] / row['xla']:.2f} | {chosen} |")
    step = results["resnet18_step_ms"]
    lines += ["", f"ResNet-18 (28 px, batch 128) training step, {results['step_repeats']} alternating steps each: "
                  f"all convolutions on XLA {step['xla']:,.0f} ms, with `auto` {step['auto']:,.0f} ms "
                  f"({step['auto'] / step['xla']:.2f}×)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only write the table of the committed JSON")
    parser.add_argument("--step-repeats", type=int, default=12)
    args = parser.parse_args(argv)
    def measure() -> dict:
        import jax

        from benchmarks.runner import machine_facts

        return {"command": "python -m benchmarks.conv_kernels", "date": time.strftime("%Y-%m-%d"),
                "machine": machine_facts(), "jax": jax.__version__, "layers": time_layers(),
                "step_repeats": args.step_repeats, "resnet18_step_ms": time_resnet_step(args.step_repeats)}

    return results_md.record_and_report(RESULTS, None if args.report else measure, report, "conv kernels",
                                        "Winograd convolutions on CPU (issue 28)",
                                        "python -m benchmarks.conv_kernels --report")

if __name__ == "__main__":
    raise SystemExit(main())
