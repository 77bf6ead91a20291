"""An ensemble (or a sweep) of N in one compiled step against N sequential single steps: the library's own steps.

    python -m benchmarks.ensemble [--members 8 --rounds 30 --repeats 3]    # writes benchmarks/results/ensemble.json
    python -m benchmarks.ensemble --sweep --members 4                       # writes benchmarks/results/sweep.json
    python -m benchmarks.ensemble [--sweep] --report                        # the table in benchmarks/RESULTS.md

Each round is one optimizer step of every member: N calls of `medjax.train.steps.train_step` (one per member
state), or one call of `medjax.train.ensemble.ensemble_train_step` over the stacked states, unrolled, with
``lax.map`` and with ``vmap``. An ensemble's members are N seeds of one optimizer; a sweep's are one start with N
learning rates (1e-4 ... 1e-2), the sequential side N optimizers with one rate each and the stacked side
`medjax.train.sweep`'s states, the rate carried in the optimizer state, as `medjax train --sweep` runs them. Rounds are timed one by one (blocking on the new states); the median of each
strategy per repeat, the strategies' order rotating between repeats; ratio = ensemble / sequential, median over
repeats. Workloads: the tutorial CNN (batch 64, 28x28x1) and the tutorial LSTM (2 x 32, batch 64, 50 steps).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import medjax  # noqa: F401 - first, as `medjax train` does: its allocator and XLA settings precede JAX's backend
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import results_md

RESULTS = {False: pathlib.Path(__file__).parent / "results" / "ensemble.json",
           True: pathlib.Path(__file__).parent / "results" / "sweep.json"}


def workload(name: str):
    from medjax.nn.conv import TutorialCNN
    from medjax.nn.recurrent import TutorialLSTMClassifier
    from medjax.train.task import FromBatch
    from medjax.tutorial import classification_loss

    rng = np.random.default_rng(0)
    if name == "cnn":
        model = FromBatch(TutorialCNN(num_classes=10), ("x",))
        batch = {"x": rng.normal(size=(64, 28, 28, 1)).astype(np.float32), "label": rng.integers(0, 10, 64)}
    else:
        model = FromBatch(TutorialLSTMClassifier(hidden=32, num_layers=2, num_classes=2), ("x", "mask"))
        batch = {"x": rng.normal(size=(64, 50, 10)).astype(np.float32), "mask": np.ones((64, 50), bool),
                 "label": rng.integers(0, 2, 64)}
    batch["label"] = batch["label"].astype(np.int32)
    batch["example_mask"] = np.ones(64, bool)
    return model, {k: jnp.asarray(v) for k, v in batch.items()}, classification_loss


def cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def time_workload(name: str, members: int, rounds: int, repeats: int, swept: bool = False) -> dict:
    from medjax.train import ensemble, optim, steps, sweep
    from medjax.train.config import TrainConfig
    from medjax.train.state import init_train_state

    model, batch, loss = workload(name)
    if swept:
        rates = np.geomspace(1e-4, 1e-2, members).tolist()
        singles = [init_train_state(model, optim.make_optimizer(TrainConfig(lr=lr), 10_000), batch,
                                    jax.random.PRNGKey(0)) for lr in rates]
        start = init_train_state(model, optim.make_optimizer(TrainConfig(), 10_000, swept=True), batch,
                                 jax.random.PRNGKey(0))
        members_states = [sweep.with_setting(start, "lr", lr) for lr in rates]
        rngs = jnp.stack([jax.random.PRNGKey(99)] * members)
    else:
        tx = optim.make_optimizer(TrainConfig(), 10_000)
        singles = [init_train_state(model, tx, batch, jax.random.PRNGKey(i)) for i in range(members)]
        members_states = singles
        rngs = jax.random.split(jax.random.PRNGKey(99), members)
    stacked = {how: ensemble.stack(members_states) for how in ensemble.STRATEGIES}

    def sequential():
        nonlocal singles
        singles = [steps.train_step(s, batch, rngs[i], loss)[0] for i, s in enumerate(singles)]
        jax.block_until_ready(singles)

    def together(how):
        def run():
            stacked[how] = ensemble.ensemble_train_step(stacked[how], batch, rngs, loss, ("dropout",), how)[0]
            jax.block_until_ready(stacked[how])
        return run

    variants = {"sequential": sequential, **{how: together(how) for how in ensemble.STRATEGIES}}
    for run in variants.values():  # compile and warm up
        for _ in range(3):
            run()
    medians = {key: [] for key in variants}
    order = list(variants)
    for repeat in range(repeats):
        for key in order[repeat % len(order):] + order[:repeat % len(order)]:
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                variants[key]()
                times.append(time.perf_counter() - start)
            medians[key].append(statistics.median(times) * 1e3)
    return {
        "chosen": ensemble.choose_strategy(stacked["map"], batch, rngs, loss, ("dropout",), "cpu"),
        "round_ms": {key: values for key, values in medians.items()},
        **{f"ratio_{how}": statistics.median(m / s for m, s in zip(medians[how], medians["sequential"]))
           for how in ensemble.STRATEGIES},
    }


def report(results: dict) -> str:
    kind = "Sweep of learning rates" if results.get("sweep") else "Ensemble"
    lines = [f"{kind} of {results['members']} against {results['members']} sequential single steps "
             f"({results['machine']}; jax {results['jax']}; `{results['command']}`; {results['date']}). Median ms "
             f"per round (every member one step), median of {results['repeats']} repeats of {results['rounds']} "
             f"rounds; ratio = stacked / sequential (at most 1.0 is the target).", "",
             "| workload | sequential ms | unrolled ms | lax.map ms | vmap ms | ratio unrolled | ratio lax.map | "
             "ratio vmap | medjax's CPU choice |", "|---|---|---|---|---|---|---|---|---|"]
    for name, figures in results["workloads"].items():
        ms = {key: statistics.median(values) for key, values in figures["round_ms"].items()}
        lines.append(f"| {name} | {ms['sequential']:.1f} | {ms['unroll']:.1f} | {ms['map']:.1f} | {ms['vmap']:.1f} | "
                     f"{figures['ratio_unroll']:.2f} | {figures['ratio_map']:.2f} | {figures['ratio_vmap']:.2f} | "
                     f"{figures['chosen']} (ratio {figures['ratio_' + figures['chosen']]:.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=["cnn", "lstm"])
    parser.add_argument("--sweep", action="store_true", help="a sweep of learning rates instead of seeds")
    parser.add_argument("--report", action="store_true", help="write the table of the committed JSON into RESULTS.md")
    args = parser.parse_args(argv)
    path = RESULTS[args.sweep]
    command = "python -m benchmarks.ensemble" + (" --sweep" if args.sweep else "")
    if not args.report:
        results = {"members": args.members, "rounds": args.rounds, "repeats": args.repeats, "machine":
                   f"{cpu_model()}, {len(jax.devices())} CPU device(s)", "jax": jax.__version__,
                   "date": time.strftime("%Y-%m-%d"), "command": command, "sweep": args.sweep,
                   "workloads": {name: time_workload(name, args.members, args.rounds, args.repeats, args.sweep)
                                 for name in args.workloads}}
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    table = report(json.loads(path.read_text()))
    if args.sweep:
        results_md.put_section("sweep", "Sweeps on CPU", command + " --report", table)
    else:
        results_md.put_section("ensemble", "Ensembles on CPU", command + " --report", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
