"""What the TensorBoard writer costs the training step: `medjax train`'s epoch loop with and without it.

    python -m benchmarks.tensorboard_cost            # writes benchmarks/results/tensorboard_cost.json and the table
    python -m benchmarks.tensorboard_cost --report   # the table in benchmarks/RESULTS.md from the committed JSON

One process, the ECG task's 1-D CNN (batch 128, the task's defaults) on the shared MIT-BIH copy
(``$MEDJAX_DATA_DIR/mitdb-pvc-12``, else ``../shared/data/mitdb-pvc-12``). The loop's own epoch function
(`medjax.train.loop.train_epoch`, what `medjax train` runs) is timed over whole epochs, alternating writer off / on,
after two warm-up epochs; the figure is the median epoch time per step. The writer logs every step (``log_every=1``,
the worst case) and every 50 steps (the default). Beside it, the writer's own cost: microseconds per logged step
(four scalars), over 5,000 calls, as a share of the step; on a busy 2-core machine the epoch difference is noisier
than that share.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

from benchmarks import results_md

RESULTS = pathlib.Path(__file__).parent / "results" / "tensorboard_cost.json"
REPEATS = 7


def cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def report(results: dict) -> str:
    lines = [f"TensorBoard writer against none, {results['workload']} ({results['cpu']}, {results['cores']} cores; jax "
             f"{results['jax']}; `{results['command']}`; {results['date']}). Median ms per step over "
             f"{results['repeats']} epochs each, alternating in one process.", "",
             "| logging | ms/step without | ms/step with | difference |", "|---|---|---|---|"]
    for name, row in results["settings"].items():
        lines.append(f"| {name} | {row['ms_per_step_without']:.2f} | {row['ms_per_step_with']:.2f} | "
                     f"{row['overhead']:+.1%} |")
    lines += ["", f"The writer itself: {results['writer_us_per_logged_step']:.1f} µs per logged step (four scalars), "
                  f"{results['writer_share_of_step_at_log_every_1']:.2%} of a step when logging every step. The epoch "
                  f"times come from a 2-core machine shared with other jobs: a difference larger than the writer's "
                  f"own share is contention or noise, not the writer (the default, every 50 steps, is the setting "
                  f"the < 2% target is held to)."]
    return "\n".join(lines)


def write_report() -> None:
    table = report(json.loads(RESULTS.read_text()))
    results_md.put_section("tensorboard", "TensorBoard writer cost", "python -m benchmarks.tensorboard_cost --report",
                           table)
    print(table)


def main() -> None:
    import jax

    from medjax.tasks import ecg
    from medjax.train import loop
    from medjax.train.progress import ProgressReporter
    from medjax.train.tensorboard import EventLog

    data = pathlib.Path(os.environ.get("MEDJAX_DATA_DIR", "../shared/data")) / "mitdb-pvc-12"
    results = {"command": "python -m benchmarks.tensorboard_cost", "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__, "workload": "ecg cnn, batch 128",
               "repeats": REPEATS, "settings": {}}
    with tempfile.TemporaryDirectory() as folder:
        for log_every in (1, 50):
            config = ecg.Config(data_dir=str(data), workdir=folder, progress=False, log_every=log_every,
                                baseline=False)
            task = ecg.build_task(config)
            run = loop.setup(task, config)
            reporter = ProgressReporter(1, run.steps_per_epoch, 0, False)
            events = EventLog(pathlib.Path(folder) / f"tb{log_every}")
            state, step, times = run.state, 0, {"off": [], "on": []}
            for epoch in range(2 + 2 * REPEATS):
                setting = ("off", "on")[epoch % 2]
                start = time.perf_counter()
                state, step, _ = loop.train_epoch(state, run.rng, task, config, run, epoch + 1, step, reporter,
                                                   events if setting == "on" else None)
                jax.block_until_ready(state)
                if epoch >= 2:
                    times[setting].append((time.perf_counter() - start) / run.steps_per_epoch * 1e3)
            events.close()
            off, on = statistics.median(times["off"]), statistics.median(times["on"])
            results["settings"][f"log_every={log_every}"] = {
                "ms_per_step_without": off, "ms_per_step_with": on, "overhead": on / off - 1,
                "steps_per_epoch": run.steps_per_epoch, "all_ms_without": times["off"], "all_ms_with": times["on"]}
            print(f"log_every={log_every}: {off:.2f} ms/step without, {on:.2f} with ({on / off - 1:+.1%})")
        log = EventLog(pathlib.Path(folder) / "calls")
        values = {"loss": 0.1, "grad_norm": 1.2, "lr": 1e-3, "param_norm": 10.0}
        calls = []
        for _ in range(5):
            start = time.perf_counter()
            for i in range(5000):
                log.scalars(i, values, "train")
            calls.append((time.perf_counter() - start) / 5000 * 1e6)
        log.close()
    step_ms = results["settings"]["log_every=1"]["ms_per_step_without"]
    results["writer_us_per_logged_step"] = statistics.median(calls)
    results["writer_share_of_step_at_log_every_1"] = statistics.median(calls) / 1e3 / step_ms
    print(f"writer: {statistics.median(calls):.1f} us per logged step, {results['writer_share_of_step_at_log_every_1']:.2%}"
          f" of a step when logging every step")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    if "--report" not in sys.argv[1:]:
        main()
    write_report()
