"""medjax's XLA default against XLA's own, with medjax's train step: each setting in its own process.

    python -m benchmarks.xla_flags      # writes benchmarks/results/xla_flags.json

Per (workload, setting): a fresh process with ``MEDJAX_XLA_DEFAULTS=0`` and ``XLA_FLAGS`` as given, the first step
(compile) timed apart, then the median of the timed steps. Workloads: ResNet-18 (28) at batch 128 and the tutorial
CNN at batch 64 on 28x28x1 MedMNIST-shaped uint8 images, through the medmnist task's model and loss.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).parent / "results" / "xla_flags.json"
SETTINGS = {"xla default": "", "medjax default": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"}
STEPS = {"resnet18": 4, "cnn": 40}

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


def main() -> int:
    from benchmarks.ensemble import cpu_model

    results = {"machine": cpu_model(), "date": time.strftime("%Y-%m-%d"), "command": "python -m benchmarks.xla_flags",
               "settings": SETTINGS, "runs": {}}
    for name, count in STEPS.items():
        for label, flags in SETTINGS.items():
            env = {**os.environ, "MEDJAX_XLA_DEFAULTS": "0", "XLA_FLAGS": flags}
            out = subprocess.run([sys.executable, "-c", CHILD, name, str(count)], env=env, capture_output=True,
                                 text=True, check=True).stdout
            results["runs"][f"{name} / {label}"] = json.loads(out.strip().splitlines()[-1])
            print(name, label, results["runs"][f"{name} / {label}"], flush=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
