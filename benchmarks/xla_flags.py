"""medjax's XLA default against XLA's own, with medjax's train step: each setting in its own process.

    python -m benchmarks.xla_flags            # writes benchmarks/results/xla_flags.json
    python -m benchmarks.xla_flags --sweep    # issue 28's flag sweep on top of medjax's default: xla_flag_sweep.json
    python -m benchmarks.xla_flags --report   # the sweep's table in RESULTS.md from the committed JSON

Per (workload, setting): a fresh process with ``MEDJAX_XLA_DEFAULTS=0`` and ``XLA_FLAGS`` as given, the first step
(compile) timed apart, then the median of the timed steps. Workloads: ResNet-18 (28) at batch 128 and the tutorial
CNN at batch 64 on 28x28x1 MedMNIST-shaped uint8 images, through the medmnist task's model and loss.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).parent / "results" / "xla_flags.json"
SETTINGS = {"xla default": "", "medjax default": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"}
STEPS = {"resnet18": 4, "cnn": 40}
SWEEP_RESULTS = RESULTS.with_name("xla_flag_sweep.json")
SWEEP_REPEATS = 3
MEDJAX_DEFAULT = SETTINGS["medjax default"]
# Kept only where a setting helps on both CPU families seen (AMD AVX2, Intel AVX-512/AMX); measured here per machine.
SWEEP = {"medjax default": MEDJAX_DEFAULT,
         "+ prefer vector width 512": MEDJAX_DEFAULT + " --xla_cpu_prefer_vector_width=512",
         "+ XNN graph fusion (greedy)": MEDJAX_DEFAULT + " --xla_cpu_experimental_xnn_graph_fusion_mode="
                                                         "XNN_GRAPH_FUSION_MODE_GREEDY",
         "+ FAST_RUNTIME preset": MEDJAX_DEFAULT + " --xla_cpu_opt_preset=FAST_RUNTIME",
         "+ YNN eltwise and reduce fusions": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,+eltwise,"
                                            "+reduce"}

CHILD = r'''
import functools, json, sys, time
import jax, numpy as np
from medjax.nn.conv import TutorialCNN
from medjax.nn.resnet import ResNet18
from medjax.tasks import medmnist
from medjax.train import optim, steps
from medjax.train.config import TrainConfig
from medjax.train.state import init_train_state
from medjax.train.task import FromBatch
name, count = sys.argv[1], int(sys.argv[2])
size = 128 if name == "resnet18" else 64
backbone = ResNet18(num_classes=2) if name == "resnet18" else TutorialCNN(num_classes=2)
model = FromBatch(medmnist.NormalizedImages(backbone), ("image",))
rng = np.random.default_rng(0)
batch = {"image": rng.integers(0, 256, (size, 28, 28, 1), dtype=np.uint8),
         "label": rng.integers(0, 2, size).astype(np.int32), "example_mask": np.ones(size, bool)}
state = init_train_state(model, optim.make_optimizer(TrainConfig(), 1000), batch, jax.random.key(0))
loss = functools.partial(medmnist.loss, task_type="binary-class")
key = jax.random.key(1)
start = time.perf_counter(); state, m = steps.train_step(state, batch, key, loss); jax.block_until_ready(m)
first = time.perf_counter() - start
times = []
for _ in range(count):
    start = time.perf_counter(); state, m = steps.train_step(state, batch, key, loss); jax.block_until_ready(m)
    times.append(time.perf_counter() - start)
print(json.dumps({"first_step_s": first, "median_step_ms": 1000 * float(np.median(times)), "steps": count}))
'''


def sweep_report(results: dict) -> str:
    def median(name, label, key):
        return statistics.median(run[key] for run in results["runs"][f"{name} / {label}"])

    rounds = len(next(iter(results["runs"].values())))
    lines = [f"{results['machine']}; jax {results.get('jax', '?')}; `{results['command']}`, {results['date']}. "
             f"{rounds} rounds of one process per setting, medjax's own train step; median over the rounds of each "
             "process's median step ms (first step, with compilation, in s):",
             "", "| setting | " + " | ".join(STEPS) + " | vs medjax default |", "|---|" + "---|" * (len(STEPS) + 1)]
    for label in results["settings"]:
        steps = {name: median(name, label, "median_step_ms") for name in STEPS}
        cells = " | ".join(f"{steps[name]:,.1f} ({median(name, label, 'first_step_s'):.1f})" for name in STEPS)
        ratios = ", ".join(f"{steps[name] / median(name, 'medjax default', 'median_step_ms'):.2f}" for name in STEPS)
        lines.append(f"| {label} | {cells} | {ratios} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    from benchmarks.ensemble import cpu_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="time issue 28's flag sweep instead")
    parser.add_argument("--report", action="store_true", help="only write the sweep's table into RESULTS.md")
    args = parser.parse_args(argv)
    if args.report:
        from benchmarks import results_md

        table = sweep_report(json.loads(SWEEP_RESULTS.read_text()))
        results_md.put_section("xla flag sweep", "XLA flag sweep on CPU (issue 28)",
                               "python -m benchmarks.xla_flags --report", table)
        print(table)
        return 0
    settings = SWEEP if args.sweep else SETTINGS
    command = "python -m benchmarks.xla_flags" + (" --sweep" if args.sweep else "")
    import jax

    results = {"machine": cpu_model(), "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
               "command": command, "settings": settings, "runs": {}}
    # The sweep runs every setting in rounds, so that drift between processes falls on all settings alike.
    for repeat in range(SWEEP_REPEATS if args.sweep else 1):
        for name, count in STEPS.items():
            for label, flags in settings.items():
                env = {**os.environ, "MEDJAX_XLA_DEFAULTS": "0", "XLA_FLAGS": flags}
                out = subprocess.run([sys.executable, "-c", CHILD, name, str(count)], env=env, capture_output=True,
                                     text=True, check=True).stdout
                run = json.loads(out.strip().splitlines()[-1])
                if args.sweep:
                    results["runs"].setdefault(f"{name} / {label}", []).append(run)
                else:
                    results["runs"][f"{name} / {label}"] = run
                print(repeat, name, label, run, flush=True)
    (SWEEP_RESULTS if args.sweep else RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    return main(["--report"]) if args.sweep else 0


if __name__ == "__main__":
    raise SystemExit(main())
