"""bf16 against fp32 on the CPU measured, for both frameworks, from two runner runs made one after the other:

    python -m benchmarks --precision fp32 --workloads W --variants medjax,torch --out benchmarks/results/runs
    python -m benchmarks --precision bf16 --workloads W --variants medjax,torch --out benchmarks/results/runs
    python -m benchmarks.precision benchmarks/results/runs/FP32_RUN benchmarks/results/runs/BF16_RUN [FP32 BF16 ...]

writes the table (step time and peak RSS of each framework in each precision, and bf16 / fp32) into
`benchmarks/RESULTS.md` as section ``precision`` and prints it. The CPU's bfloat16 features come from the runs'
``run.json``.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import sys

from benchmarks import results_md, workloads

NAME, TITLE = "precision", "bf16 against fp32 on CPU (issue 25)"


def _load(run_dir: pathlib.Path) -> tuple[dict, dict]:
    return (json.loads((run_dir / "summary.json").read_text())["workloads"],
            json.loads((run_dir / "run.json").read_text()))


def _ms(entry: dict, variant: str) -> float | None:
    found = entry["variants"].get(variant, {})
    return found.get("median_ms") if found.get("status") == "ok" else None


def table(fp32: dict, bf16: dict, machine: dict) -> str:
    flags = machine.get("cpu_flags", [])
    amx = "" if "amx_bf16" in flags else " (no amx_bf16: no AMX tiles)"
    lines = [f"CPU: {machine['cpu']}, {machine['cpus_available']} CPUs; features: "
             f"{', '.join(flags) or 'not recorded'}{amx}.", "",
             "| workload | medjax fp32 ms | medjax bf16 ms | medjax bf16 / fp32 | PyTorch fp32 ms | PyTorch autocast "
             "bf16 ms | PyTorch bf16 / fp32 | bf16: medjax / PyTorch | peak RSS MB medjax fp32 / bf16 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in (w for w in workloads.WORKLOADS if w in fp32 and w in bf16):
        m32, m16, t32, t16 = _ms(fp32[name], "medjax"), _ms(bf16[name], "medjax"), _ms(fp32[name], "torch"), \
            _ms(bf16[name], "torch")
        fmt = lambda x: "–" if x is None else f"{x:.2f}"
        ratio = lambda a, b: "–" if a is None or b is None else f"{a / b:.2f}"
        rss = " / ".join(fmt(e["variants"].get("medjax", {}).get("peak_rss_mb")).split(".")[0] for e in
                         (fp32[name], bf16[name]))
        lines.append(f"| {workloads.medjax_module(name).TITLE} | {fmt(m32)} | {fmt(m16)} | **{ratio(m16, m32)}** | "
                     f"{fmt(t32)} | {fmt(t16)} | {ratio(t16, t32)} | {ratio(m16, t16)} | {rss} |")
    lines += ["", "Step times: median over processes of each process's median step (the runner's own figure); "
                  "each framework's bf16 / fp32 compares two runs made one after the other on the same machine."]
    return "\n".join(lines)


def read_pairs(paths: list[str]) -> tuple[dict, dict, dict]:
    """The fp32 and bf16 workloads of each (fp32 run, bf16 run) pair, merged (heavy workloads may run apart), and
    the machine of the first run."""
    fp32, bf16 = {}, {}
    for fp32_dir, bf16_dir in zip(paths[::2], paths[1::2]):
        (a, _), (b, _) = _load(pathlib.Path(fp32_dir)), _load(pathlib.Path(bf16_dir))
        fp32.update(a)
        bf16.update(b)
    return fp32, bf16, _load(pathlib.Path(paths[0]))[1]["machine"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = table(*read_pairs(argv))
    results_md.put_section(NAME, TITLE, shlex.join(["python", "-m", "benchmarks.precision", *argv]), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
