"""One benchmark process: prepare a workload's start, or time one variant of it, and write one JSON record.

The runner starts one of these per (workload, variant, repeat) so that each framework has a process to itself: no shared
allocator, thread pools or caches, and a crash or a failed `torch.compile` cannot take the others down. Run by hand::

    python -m benchmarks.worker prepare --workload lstm --start /tmp/lstm.npz --out /tmp/prep.json
    python -m benchmarks.worker prepare --workload lstm --sizes '{"time": 25}' --start /tmp/t25.npz \
        --sizes '{"time": 100}' --start /tmp/t100.npz --out /tmp/prep.json
    python -m benchmarks.worker torch --workload lstm --start /tmp/lstm.npz --out /tmp/torch.json --steps 100
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from benchmarks import measure

# What a worker can be asked to do: "prepare" writes starts (.npz) and medjax's first losses; the rest time a step.
TASKS = ("prepare", "medjax", "torch", "torch-compile")
# Workloads whose PyTorch twin runs channels-last under bf16, where oneDNN's bfloat16 convolutions want NHWC.
CONVOLUTIONAL = ("cnn", "resnet18")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=TASKS, help="what this process does")
    parser.add_argument("--workload", required=True, help="a name from benchmarks.workloads.WORKLOADS")
    parser.add_argument("--sizes", action="append", help='JSON object of size overrides, e.g. \'{"batch": 32}\' '
                        "(default: none); prepare takes one per --start, to build several starts in one process")
    parser.add_argument("--start", action="append", required=True, help="the .npz of the batch and initial weights")
    parser.add_argument("--out", required=True, help="where to write this process's JSON record")
    parser.add_argument("--seed", type=int, default=0, help="seeds the batch and the initial weights (prepare)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps after the first (compiling) one")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch intra-op threads (0: every available CPU)")
    # Spelled out rather than read from medjax.train.precision: importing medjax would make its allocator settings in
    # the PyTorch processes too.
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: medjax's --precision bf16 policy; PyTorch under torch.autocast(bfloat16), the "
                             "convolutional twins channels-last")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ["{}"]
    if len(args.sizes) != len(args.start) or (args.task != "prepare" and len(args.start) > 1):
        parser.error(f"{args.task} takes {'one --sizes per --start' if args.task == 'prepare' else 'one --start'}; "
                     f"got {len(args.sizes)} --sizes and {len(args.start)} --start")
    return args


def run(args: argparse.Namespace) -> dict:
    """Does ``args.task`` and returns its record (workload sizes resolved against the workload's defaults)."""
    from benchmarks import workloads

    overrides = [json.loads(text) for text in args.sizes]
    if args.task in ("prepare", "medjax"):
        from benchmarks import medjax_step

        defaults = workloads.medjax_module(args.workload).SIZES
        if args.task == "prepare":
            cases = []
            for start, override in zip(args.start, overrides):
                sizes = workloads.parse_sizes(defaults, override)
                cases.append({"start": start, "sizes": sizes,
                              "first_loss": medjax_step.prepare(args.workload, sizes, args.seed, start)})
            return {"status": "ok", "cases": cases}
        sizes = workloads.parse_sizes(defaults, overrides[0])
        return {"status": "ok", "sizes": sizes,
                **medjax_step.run(args.workload, sizes, args.start[0], args.steps, args.warmup, args.precision)}
    import torch

    from benchmarks import torch_step

    mixed = args.precision == "bf16"
    # The twin takes the sizes the medjax side resolved (the runner passes all of them): it has no defaults of its own.
    return {"sizes": overrides[0], "precision": args.precision,
            **torch_step.run(args.workload, overrides[0], args.start[0], args.steps, args.warmup,
                             compile=args.task == "torch-compile", threads=args.threads or None,
                             amp_dtype=torch.bfloat16 if mixed else None,
                             channels_last=mixed and args.workload in CONVOLUTIONAL)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    facts_before = measure.process_facts()
    with measure.ContentionSampler() as sampler:
        record = run(args)
    record.update({
        "contention": sampler.summary(),
        "workload": args.workload,
        "variant": args.task,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "process": facts_before,
        "load_average_1m_after": measure.process_facts()["load_average_1m"],
        "wall_s": time.time() - started,
    })
    with open(args.out, "w") as file:
        json.dump(record, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
