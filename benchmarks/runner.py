"""The benchmark runner: each (workload, variant, repeat) in its own process, frameworks alternating, one report.

    python -m benchmarks --workloads cnn,lstm --variants medjax,torch,torch-compile --repeats 3 --steps 100
    medjax bench --workloads attention --growth

For each workload one process prepares the start (batch and initial weights, saved as .npz) and medjax's first loss.
Then, repeat after repeat, every variant runs in a fresh process; the order of the variants rotates from one repeat to
the next, so slow drift of the machine (other jobs, heat) falls on every framework rather than on whichever ran last.
Everything goes under ``--out/<date-time>/``: ``runs/*.json`` (one record per process), ``logs/``, ``summary.json``,
``table.md``, ``report.md`` and, with ``--growth``, the cost-growth sweeps and their PNG plots.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any, Mapping, NamedTuple

from benchmarks import measure, report, workloads
from medjax.train.precision import POLICIES

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
VARIANTS = ("medjax", "torch", "torch-compile")
# torch.compile costs ~20 s a process on this CPU, so the growth sweeps compare medjax with PyTorch eager by default.
GROWTH_VARIANTS = ("medjax", "torch")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Time medjax against PyTorch, side by "
                                     "side; writes JSON and a Markdown table of ratios (medjax / faster PyTorch).")
    parser.add_argument("--workloads", default=",".join(workloads.WORKLOADS),
                        help=f"comma-separated, from {', '.join(workloads.WORKLOADS)} (default: all)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=3, help="processes per variant (default: 3)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per process (default: 100)")
    parser.add_argument("--warmup", type=int, default=10,
                        help="untimed steps after the first, per process (default: 10)")
    parser.add_argument("--size", action="append", default=[], metavar="[WORKLOAD:]NAME=VALUE",
                        help="override a size, e.g. batch=32 (every workload that has it) or lstm:time=100; repeatable")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny sizes: checks the machinery in seconds")
    parser.add_argument("--growth", action="store_true", help="also sweep batch size (CNN, LSTM, attention) and "
                        "sequence length (LSTM, attention); draw step time against each as PNG")
    parser.add_argument("--growth-variants", default=",".join(GROWTH_VARIANTS), help="variants of the growth sweeps")
    parser.add_argument("--growth-steps", type=int, default=50, help="timed steps per growth point (default: 50)")
    parser.add_argument("--growth-repeats", type=int, default=1, help="processes per growth point (default: 1)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: every available CPU, as XLA)")
    parser.add_argument("--precision", choices=tuple(POLICIES), default="fp32",
                        help="bf16: medjax's --precision bf16 against torch.autocast(bfloat16), the convolutional "
                             "twins channels-last; the first-loss check then allows bfloat16's rounding")
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help=f"do not set {' '.join(f'{k}={v}' for k, v in measure.MALLOC_TUNING.items())} "
                             "(set by default, for both frameworks alike)")
    parser.add_argument("--quiet", type=int, default=-1, metavar="N",
                        help="before each timed process, wait until at most N other tasks are runnable (a shared "
                             "machine); -1 (default) starts at once")
    parser.add_argument("--quiet-wait", type=float, default=300, help="the longest wait for --quiet, in seconds")
    parser.add_argument("--seed", type=int, default=0, help="seeds every batch and initial weights (default: 0)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a process is stopped")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "out"), help="parent folder of the run folder")
    parser.add_argument("--report", nargs="+", metavar="RUN_DIR",
                        help="time nothing: rebuild the report of finished run folders (several: one merged report)")
    parser.add_argument("--results-section", nargs=2, metavar=("NAME", "TITLE"),
                        help="with --report: also put the report into benchmarks/RESULTS.md as section NAME")
    args = parser.parse_args(argv)
    args.workloads = workloads.check_names([w for w in args.workloads.split(",") if w])
    for option in ("variants", "growth_variants"):
        chosen = [v for v in getattr(args, option).split(",") if v]
        unknown = sorted(set(chosen) - set(VARIANTS))
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; valid variants: {', '.join(VARIANTS)}")
        setattr(args, option, chosen)
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        parser.error(f"need repeats >= 1, steps >= 1, warmup >= 0; got {args.repeats}, {args.steps}, {args.warmup}")
    return args


def size_overrides(specs: list[str], names: list[str], tiny: bool) -> dict[str, dict[str, int]]:
    """Each workload's sizes from ``--tiny`` and ``--size`` options (``[WORKLOAD:]NAME=VALUE``)."""
    modules = {name: workloads.medjax_module(name) for name in names}
    sizes = {name: dict(module.TINY if tiny else module.SIZES) for name, module in modules.items()}
    for spec in specs:
        target, _, assignment = spec.rpartition(":")
        key, equals, value = assignment.partition("=")
        if not equals or not value.lstrip("-").isdigit():
            raise ValueError(f"--size wants [WORKLOAD:]NAME=INTEGER, got {spec!r}")
        chosen = [target] if target else [name for name in names if key in sizes[name]]
        if not chosen:
            raise ValueError(f"--size {spec!r}: no chosen workload has a size {key!r}")
        for name in chosen:
            if name not in sizes:
                raise ValueError(f"--size {spec!r}: workload {name!r} is not among {names}")
            sizes[name] = workloads.parse_sizes(sizes[name], {key: int(value)})
    return sizes


def child_environment(malloc_tuning: bool) -> dict[str, str]:
    """The environment of every worker: the same for both frameworks, JAX on the CPU, allocator tuned unless told."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    for name in measure.MALLOC_TUNING:
        env.pop(name, None)
    if malloc_tuning:
        env.update(measure.MALLOC_TUNING)
    # The test suite fakes 8 CPU devices; a benchmark process should see the machine as it is.
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Launcher:
    """Starts workers in a run folder and collects their records."""

    def __init__(self, run_dir: pathlib.Path, env: Mapping[str, str], args: argparse.Namespace):
        self.run_dir, self.env, self.args = run_dir, env, args
        for sub in ("runs", "logs", "start"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)

    def start_path(self, tag: str) -> pathlib.Path:
        return self.run_dir / "start" / f"{tag}.npz"

    def launch(self, task: str, workload: str, name: str, cases: Mapping[str, Mapping[str, int]], steps: int = 0
               ) -> dict:
        """Runs one worker process; returns its record, or a ``failed``/``timed out`` record with the log's tail.

        Args:
          task: a `benchmarks.worker.TASKS` entry.
          workload: the workload's name.
          name: names the record and log files.
          cases: ``{tag: sizes}``; the tag names the start (batch and weights) shared by all processes of one set of
            sizes. One case to time; one or more to prepare.
          steps: timed steps.
        """
        out = self.run_dir / "runs" / f"{name}.json"
        command = [sys.executable, "-m", "benchmarks.worker", task, "--workload", workload, "--out", str(out),
                   "--seed", str(self.args.seed), "--steps", str(steps), "--warmup", str(self.args.warmup),
                   "--threads", str(self.args.threads), "--precision", self.args.precision]
        for tag, sizes in cases.items():
            command += ["--sizes", json.dumps(dict(sizes)), "--start", str(self.start_path(tag))]
        log_path = self.run_dir / "logs" / f"{name}.log"
        print(f"  {name}", end=" ", flush=True)
        quiet = (measure.wait_for_quiet(self.args.quiet, self.args.quiet_wait)
                 if self.args.quiet >= 0 and task != "prepare" else None)
        started = time.time()
        with open(log_path, "w") as log:
            try:
                code = subprocess.run(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=self.args.timeout).returncode
                status = "ok" if code == 0 else "failed"
            except subprocess.TimeoutExpired:
                status = "timed out"
        if status == "ok" and out.exists():
            record = json.loads(out.read_text())
        else:
            tail = log_path.read_text().strip().splitlines()[-1:] or [""]
            record = {"status": status, "error": tail[0][:500], "workload": workload, "variant": task}
        if quiet is not None:
            record["quiet"] = quiet
        # Every process leaves its record, failed ones included, so a report can be rebuilt from the files alone.
        out.write_text(json.dumps(record, indent=1))
        print(f"{record.get('status', 'ok')} {_short(record)} [{time.time() - started:.0f} s]", flush=True)
        return record


def _short(record: Mapping[str, Any]) -> str:
    if "timing" in record:
        return f"{record['timing']['median_ms']:.2f} ms/step"
    if "cases" in record:
        return "first loss " + ", ".join(f"{case['first_loss']:.6f}" for case in record["cases"])
    return record.get("error", "")


def rotated(variants: list[str], repeat: int) -> list[str]:
    """The variants in the order of repeat ``repeat``: shifted by one each repeat, so each runs first, then last."""
    shift = repeat % len(variants)
    return variants[shift:] + variants[:shift]


class Case(NamedTuple):
    """One set of shapes to time: a workload at given sizes; ``axis`` names the size a growth sweep moves."""

    workload: str
    sizes: Mapping[str, int]
    axis: str | None = None


def benchmark(launcher: Launcher, stage: str, cases: Mapping[str, Case], variants: list[str],
              repeats: int, steps: int) -> None:
    """Prepares each case, then runs every variant of every case ``repeats`` times, alternating; each process leaves
    its record in the run folder's ``runs/``.

    Args:
      stage: names the prepare processes' files (``"main"``, ``"growth"``).
      cases: ``{tag: case}``; the tag names the case's start and processes.
    """
    prepared = {}
    for workload in dict.fromkeys(case.workload for case in cases.values()):
        # One process prepares every case of a workload: each start costs a compile, not a process start-up too.
        mine = {tag: case.sizes for tag, case in cases.items() if case.workload == workload}
        record = launcher.launch("prepare", workload, f"{workload}-{stage}-prepare", mine)
        if record.get("status") != "ok":
            raise RuntimeError(f"preparing {workload} failed: {record.get('error')} "
                               f"(log in {launcher.run_dir / 'logs'})")
        prepared.update(zip(mine, record["cases"]))
    uncompilable: set[str] = set()  # a failed torch.compile fails again; its first record already says why
    for repeat in range(repeats):
        for tag, (workload, _, _) in cases.items():
            for variant in rotated(variants, repeat):
                if variant == "torch-compile" and tag in uncompilable:
                    continue
                record = launcher.launch(variant, workload, f"{tag}-{variant}-r{repeat}",
                                         {tag: prepared[tag]["sizes"]}, steps)
                if record.get("status") == "does not compile":
                    uncompilable.add(tag)


def growth_cases(names: list[str], sizes: Mapping[str, Mapping[str, int]]) -> dict[str, Case]:
    """The cost-growth sweeps of the chosen workloads that have any: one case per (workload, size name, value).

    Each sweep moves one size of the benchmark's sizes; the others stay as chosen.
    """
    cases = {}
    for workload in names:
        for axis, values in workloads.medjax_module(workload).GROWTH.items():
            for value in values:
                cases[f"{workload}-{axis}{value}"] = Case(workload, {**sizes[workload], axis: value}, axis)
    return cases


def growth_points(records: list[dict], cases: Mapping[str, Case]) -> list[dict]:
    """One point per (case, variant): the median over processes of the median step, with the pooled p10/p90."""
    points = []
    for tag, (workload, sizes, axis) in cases.items():
        for variant in sorted({r["variant"] for r in records if r["case"] == tag}):
            group = [r for r in records if r["case"] == tag and r["variant"] == variant]
            summary = report.variant_summary(group)
            point = {"workload": workload, "axis": axis, "value": sizes[axis], "variant": variant, "sizes": dict(sizes),
                     "status": summary["status"]}
            if summary["status"] == "ok":
                point.update({key: summary[key] for key in ("median_ms", "p10_ms", "p90_ms")})
            points.append(point)
    return points


# The CPU features that decide how fast float32 and bfloat16 matmuls can be (AMX and AVX512-BF16 have bf16 dot
# instructions; without them bfloat16 is converted to float32 around every matmul).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def machine_facts() -> dict[str, Any]:
    """The machine, for the report: CPU model, the vector and bfloat16 features it has, CPUs, memory, OS, Python."""
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return {"cpu": cpu, "cpu_flags": [f for f in CPU_FLAGS if f in flags],
            "cpus": os.cpu_count(), "cpus_available": len(os.sched_getaffinity(0)),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(), "load_average_1m": os.getloadavg()[0]}


def versions(records: list[dict]) -> dict[str, str]:
    """Library versions as the workers reported them."""
    found: dict[str, str] = {}
    for record in records:
        found.update(record.get("framework", {}))
    return found


def _contention(records: list[dict]) -> str:
    """How busy the machine was when the timed processes started: other runnable tasks and the 1-minute load."""
    started = [r["process"] for r in records if "process" in r and "runnable_tasks" in r["process"]]
    if not started:
        return "Machine load at process starts: not recorded."
    runnable = [p["runnable_tasks"] for p in started]
    load = [p["load_average_1m"] for p in started]
    waited = sum(r.get("quiet", {}).get("waited_s", 0) for r in records)
    return (f"Machine load at the start of the {len(started)} timed processes: other runnable tasks median "
            f"{statistics.median(runnable):g} (max {max(runnable)}), 1-minute load average median "
            f"{statistics.median(load):.2f} (max {max(load):.2f}); waited {waited:.0f} s in all for a quiet machine.")


# Record files: ``{case tag}-{variant}-r{repeat}.json`` for a timed process, ``{workload}-{stage}-prepare.json``.
RUN_FILE = re.compile(r"^(?P<tag>.+)-(?P<variant>torch-compile|torch|medjax)-r(?P<repeat>\d+)\.json$")


def load_run(run_dir: pathlib.Path) -> tuple[list[dict], dict[str, dict], dict[str, Case]]:
    """Reads a run folder's records back: (timed records with ``case``, ``variant`` and ``repeat``; prepared starts
    ``{tag: {"sizes", "first_loss", "start"}}``; the cases, growth cases with their ``axis``)."""
    records, prepared, cases = [], {}, {}
    for path in sorted((run_dir / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        if path.stem.endswith("-prepare"):
            workload = path.stem.split("-")[0]
            growth = workloads.medjax_module(workload).GROWTH
            for case in record.get("cases", []):
                tag = pathlib.Path(case["start"]).stem
                axis = next((a for a in growth if tag == f"{workload}-{a}{case['sizes'][a]}"), None)
                prepared[tag], cases[tag] = case, Case(workload, case["sizes"], axis)
        elif match := RUN_FILE.match(path.name):
            records.append({**record, "case": match["tag"], "variant": match["variant"],
                            "repeat": int(match["repeat"])})
    return records, prepared, cases


def _precision(records: list[dict]) -> str:
    if all(r.get("precision", "fp32") == "fp32" for r in records):
        return "Precision: float32 on both sides."
    return ("Precision: bf16 on both sides: medjax's `--precision bf16` policy (float32 parameters and Adam, "
            "bfloat16 matmuls and convolutions) against PyTorch under `torch.autocast(\"cpu\", torch.bfloat16)`, the "
            "convolutional twins channels-last.")


def write_report(run_dirs: list[pathlib.Path], out_dir: pathlib.Path) -> tuple[str, dict[str, dict]]:
    """Builds ``summary.json``, ``table.md``, ``report.md`` and the growth plots in ``out_dir`` from the records of one
    run folder or several (e.g. light and heavy workloads run apart). Returns (the report, the summary)."""
    records, prepared, cases = [], {}, {}
    for run_dir in run_dirs:
        more_records, more_prepared, more_cases = load_run(run_dir)
        records += more_records
        prepared.update(more_prepared)
        cases.update(more_cases)
    main_tags = {tag for tag, case in cases.items() if case.axis is None}
    summary = report.summarize([r for r in records if r["case"] in main_tags], {t: prepared[t] for t in main_tags})
    growth = {tag: case for tag, case in cases.items() if case.axis is not None}
    points = growth_points([r for r in records if r["case"] in growth], growth)
    names = sorted({case.workload for case in cases.values()}, key=workloads.WORKLOADS.index)
    titles = {name: workloads.medjax_module(name).TITLE for name in names}
    summary = {name: summary[name] for name in names if name in summary}
    from benchmarks import plots

    plot_paths = plots.draw_growth(points, out_dir, titles) if points else []
    table = report.markdown(summary, titles)
    (out_dir / "table.md").write_text(table)
    runs = [json.loads((d / "run.json").read_text()) if (d / "run.json").exists() else {"folder": d.name}
            for d in run_dirs]
    envs = {json.dumps(r["process"]["env"], sort_keys=True) for r in records if "process" in r}
    facts = {"runs": runs, "versions": versions(records), "env": [json.loads(e) for e in sorted(envs)]}
    (out_dir / "summary.json").write_text(json.dumps({**facts, "workloads": summary, "growth": points}, indent=1))
    lines = [f"# Benchmark {', '.join(d.name for d in run_dirs)}", ""]
    for run in runs:
        machine = run.get("machine")
        lines.append(f"- `{run.get('command', 'command not recorded')}`" + (
            f" on {machine['cpu']} ({', '.join(machine.get('cpu_flags', [])) or 'CPU flags not recorded'}), "
            f"{machine['cpus_available']} of {machine['cpus']} CPUs, "
            f"{machine['memory_gib']} GiB, {machine['os']}; started {run['started']}, "
            f"load average {machine['load_average_1m']:.2f}"
            if machine else f" (folder {run['folder']})"))
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) + ".", "",
              "Environment of the processes: " + "; ".join(", ".join(f"`{k}={v}`" for k, v in env.items()) or "none"
                                                           for env in facts["env"]) + ".",
              "", _precision(records), "", _contention(records), "", table]
    if points:
        lines += ["", report.growth_markdown(points, titles), ""]
    lines += [f"![{plot.stem}]({plot.name})" for plot in plot_paths]
    text = "\n".join(lines) + "\n"
    (out_dir / "report.md").write_text(text)
    return text, summary


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks` and `medjax bench`; returns 0, or 1 if a first-loss check failed."""
    args = parse_args(argv)
    if args.report:
        run_dirs = [pathlib.Path(d) for d in args.report]
        out_dir = run_dirs[0] if len(run_dirs) == 1 else pathlib.Path(args.out) / time.strftime("merged-%Y%m%d-%H%M%S")
        out_dir.mkdir(parents=True, exist_ok=True)
    else:
        sizes = size_overrides(args.size, args.workloads, args.tiny)
        out_dir = pathlib.Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
        run_dirs = [out_dir]
        launcher = Launcher(out_dir, child_environment(not args.no_malloc_tuning), args)
        command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
        (out_dir / "run.json").write_text(json.dumps({"command": command, "started": time.strftime("%Y-%m-%d %H:%M"),
                                                      "machine": machine_facts()}, indent=1))
        print(f"benchmark run in {out_dir}")
        benchmark(launcher, "main", {name: Case(name, sizes[name]) for name in args.workloads}, args.variants,
                  args.repeats, args.steps)
        sweep = growth_cases(args.workloads, sizes) if args.growth else {}
        if sweep:
            print("cost growth")
            benchmark(launcher, "growth", sweep, args.growth_variants, args.growth_repeats, args.growth_steps)
        for path in (out_dir / "start").glob("*.npz"):
            path.unlink()  # starts are rebuilt from the seed; the weights of ResNet-18 alone are 45 MB
    text, summary = write_report(run_dirs, out_dir)
    if args.results_section:
        from benchmarks import results_md

        name, title = args.results_section
        command = shlex.join(["python", "-m", "benchmarks", "--report", *args.report, "--results-section", name, title])
        body = text.split("\n", 2)[2].replace("](growth-", f"]({run_dirs[0].resolve().relative_to(REPO_ROOT / 'benchmarks')}/growth-")
        results_md.put_section(name, title, command, body.strip())
    print(text)
    print(f"written: {out_dir / 'report.md'}, {out_dir / 'summary.json'}")
    return 0 if all(entry["loss_check"] for entry in summary.values()) else 1
