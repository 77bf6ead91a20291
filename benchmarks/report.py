"""From per-process records to the summary and the Markdown table of ratios.

A ratio is medjax's time over the faster PyTorch variant's time (eager or `torch.compile`), so < 1 means medjax is
faster. Two are given, both from processes of one run: the ratio of the medians (each variant's median over its
processes' median step times) and the median of the per-repeat ratios (repeat r of medjax against repeat r of PyTorch,
which ran right beside it), whose range shows how much drift between processes moves the answer.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping

import numpy as np

# The issue's target: medjax at most this fraction of the faster PyTorch variant's step time.
TARGET_RATIO = 0.8
# Tolerance of the same-first-loss check (absolute, on float32 losses of order 1).
LOSS_TOLERANCE = 1e-4
# Under bf16 both frameworks round activations to 8 significant bits: the first loss moves by ~2**-8 relative.
BF16_LOSS_TOLERANCE = 2e-2
TORCH_VARIANTS = ("torch", "torch-compile")
VARIANT_TITLES = {"medjax": "medjax", "torch": "PyTorch eager", "torch-compile": "torch.compile"}


def variant_summary(records: list[dict]) -> dict[str, Any]:
    """Pools the processes of one (workload, variant)."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        statuses = sorted({r.get("status", "failed") for r in records})
        errors = sorted({r.get("error", "") for r in records if r.get("error")})
        return {"status": ", ".join(statuses), "error": errors[0] if errors else "", "processes": 0}
    medians = [r["timing"]["median_ms"] for r in ok]
    steps = np.concatenate([np.asarray(r["step_ms"]) for r in ok])
    p10, p90 = np.percentile(steps, [10, 90])
    compiles = [r["compile_s"] for r in ok if r.get("compile_s") is not None]
    return {
        "status": "ok",
        "processes": len(ok),
        "median_ms": statistics.median(medians),
        "process_medians_ms": medians,
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "compile_s": statistics.median(compiles) if compiles else None,
        "peak_rss_mb": max(r["peak_rss_bytes"] for r in ok) / 2**20,
        "faults_per_step": statistics.median(r["faults_per_step"] for r in ok),
        "first_loss": ok[0]["first_loss"],
        "threads": ok[0].get("threads"),
        # Other jobs' runnable tasks while each process ran (median over its samples), the median over processes.
        "others_runnable": statistics.median(others) if (others := [
            r["contention"]["others_runnable_median"] for r in ok
            if r.get("contention", {}).get("others_runnable_median") is not None]) else None,
    }


def summarize(records: Iterable[dict], prepared: Mapping[str, dict]) -> dict[str, dict]:
    """Groups process records by workload and variant and computes the ratios.

    Args:
      records: worker records, each with ``workload``, ``variant``, ``repeat`` and ``status``.
      prepared: ``{workload: prepare record}`` holding medjax's first loss and the resolved sizes.

    Returns:
      ``{workload: {"sizes", "variants": {variant: summary}, "ratio", "ratio_per_repeat", "faster_torch",
      "loss_check"}}``.
    """
    grouped: dict[str, dict[str, list[dict]]] = {}
    for record in records:
        grouped.setdefault(record["workload"], {}).setdefault(record["variant"], []).append(record)
    summary = {}
    for workload, by_variant in grouped.items():
        variants = {variant: variant_summary(group) for variant, group in by_variant.items()}
        reference = prepared[workload]["first_loss"]
        loss_diffs = {v: abs(s["first_loss"] - reference) for v, s in variants.items() if s["status"] == "ok"}
        mixed = any(r.get("precision") == "bf16" for group in by_variant.values() for r in group)
        tolerance = BF16_LOSS_TOLERANCE * max(1.0, abs(reference)) if mixed else LOSS_TOLERANCE
        entry = {
            "sizes": prepared[workload]["sizes"],
            "variants": variants,
            "reference_first_loss": reference,
            "first_loss_diff": loss_diffs,
            "precision": "bf16" if mixed else "fp32",
            "loss_check": all(diff <= tolerance for diff in loss_diffs.values()),
        }
        entry.update(_ratios(by_variant, variants))
        summary[workload] = entry
    return summary


def _ratios(by_variant: Mapping[str, list[dict]], variants: Mapping[str, dict]) -> dict[str, Any]:
    timed = [v for v in TORCH_VARIANTS if variants.get(v, {}).get("status") == "ok"]
    if variants.get("medjax", {}).get("status") != "ok" or not timed:
        return {"ratio": None, "ratio_per_repeat": [], "faster_torch": None}
    faster = min(timed, key=lambda v: variants[v]["median_ms"])
    per_repeat = []
    by_repeat = {v: {r["repeat"]: r["timing"]["median_ms"] for r in by_variant[v] if r.get("status") == "ok"}
                 for v in ("medjax", *timed)}
    for repeat, medjax_ms in sorted(by_repeat["medjax"].items()):
        torch_ms = [by_repeat[v][repeat] for v in timed if repeat in by_repeat[v]]
        if torch_ms:
            per_repeat.append(medjax_ms / min(torch_ms))
    return {
        "ratio": variants["medjax"]["median_ms"] / variants[faster]["median_ms"],
        "ratio_per_repeat": per_repeat,
        "faster_torch": faster,
    }


def _cell(summary: Mapping[str, Any] | None) -> str:
    if summary is None:
        return "not run"
    if summary["status"] != "ok":
        return summary["status"]
    return f"{summary['median_ms']:.2f} ({summary['p10_ms']:.2f}–{summary['p90_ms']:.2f})"


def _sizes(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sizes.items())


def markdown(summary: Mapping[str, dict], titles: Mapping[str, str] | None = None) -> str:
    """The table of step times and ratios, one row per workload, followed by the compile/memory table."""
    titles = titles or {}
    lines = [
        "| workload | sizes | medjax ms | PyTorch eager ms | torch.compile ms | ratio (medians) | "
        f"median of per-repeat ratios [range] | ≤ {TARGET_RATIO} | same first loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, entry in summary.items():
        variants = entry["variants"]
        if entry["ratio"] is None:
            ratio, per_repeat, met = "n/a", "n/a", "n/a"
        else:
            ratio = f"**{entry['ratio']:.2f}** vs {VARIANT_TITLES[entry['faster_torch']]}"
            rs = entry["ratio_per_repeat"]
            per_repeat = f"{statistics.median(rs):.2f} [{min(rs):.2f}–{max(rs):.2f}]" if rs else "n/a"
            met = "yes" if entry["ratio"] <= TARGET_RATIO else "**no**"
        diffs = entry["first_loss_diff"]
        worst = max(diffs.values()) if diffs else float("nan")
        check = f"{'yes' if entry['loss_check'] else '**NO**'} (Δ ≤ {worst:.1e})"
        lines.append(f"| {titles.get(workload, workload)} | {_sizes(entry['sizes'])} | "
                     f"{_cell(variants.get('medjax'))} | {_cell(variants.get('torch'))} | "
                     f"{_cell(variants.get('torch-compile'))} | {ratio} | {per_repeat} | {met} | {check} |")
    lines += [
        "",
        "Step times: median over processes of each process's median step (p10–p90 of all timed steps pooled).",
        "",
        "| workload | processes (medjax / eager / compile) "
        "| compile s: medjax (lower+compile) / torch.compile (first step) | peak RSS MB: medjax / eager / compile "
        "| page faults per step: medjax / eager / compile | other jobs' runnable tasks: medjax / eager / compile "
        "| torch threads |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, entry in summary.items():
        variants = entry["variants"]
        get = lambda v, key, fmt: (format(variants[v][key], fmt) if variants.get(v, {}).get(key) is not None
                                   else "–")
        processes = " / ".join(str(variants.get(v, {}).get("processes", 0)) for v in ("medjax", *TORCH_VARIANTS))
        compile_text = f"{get('medjax', 'compile_s', '.2f')} / {get('torch-compile', 'compile_s', '.1f')}"
        rss = " / ".join(get(v, "peak_rss_mb", ".0f") for v in ("medjax", *TORCH_VARIANTS))
        faults = " / ".join(get(v, "faults_per_step", ".0f") for v in ("medjax", *TORCH_VARIANTS))
        others = " / ".join(get(v, "others_runnable", "g") for v in ("medjax", *TORCH_VARIANTS))
        threads = variants.get("torch", {}).get("threads") or "–"
        lines.append(f"| {titles.get(workload, workload)} | {processes} | {compile_text} | {rss} | {faults} "
                     f"| {others} | {threads} |")
    failures = [(w, v, s.get("error", "")) for w, e in summary.items() for v, s in e["variants"].items()
                if s["status"] != "ok"]
    if failures:
        lines += ["", "Not timed:"]
        lines += [f"- {titles.get(w, w)}, {VARIANT_TITLES.get(v, v)}: {error or 'see the process log'}"
                  for w, v, error in failures]
    return "\n".join(lines) + "\n"


def growth_markdown(points: list[dict], titles: Mapping[str, str] | None = None) -> str:
    """The cost-growth sweeps as a table: step ms per point for each variant, and how much each grew end to end."""
    titles = titles or {}
    sweeps: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    for point in points:
        if point["status"] == "ok":
            sweep = sweeps.setdefault((point["workload"], point["axis"]), {})
            sweep.setdefault(point["variant"], {})[point["value"]] = point["median_ms"]
    lines = ["| workload, axis | points | " + "step ms per point (medjax / PyTorch eager) | growth first → last |",
             "|---|---|---|---|"]
    for (workload, axis), by_variant in sweeps.items():
        values = sorted({v for series in by_variant.values() for v in series})
        cells = " · ".join(" / ".join(f"{by_variant[name][v]:.2f}" if v in by_variant.get(name, {}) else "—"
                                      for name in ("medjax", "torch")) for v in values)
        growth = ", ".join(f"{VARIANT_TITLES[name]} ×{series[values[-1]] / series[values[0]]:.1f}"
                           for name, series in by_variant.items() if values[0] in series and values[-1] in series)
        lines.append(f"| {titles.get(workload, workload)}, {axis} | {', '.join(map(str, values))} | {cells} | "
                     f"{growth} |")
    return "\n".join(lines)
