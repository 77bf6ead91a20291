"""Cost-growth plots: step time against batch size and against sequence length, one line per framework."""

from __future__ import annotations

import pathlib
from typing import Mapping

import matplotlib

matplotlib.use("Agg")  # files only; the benchmark machine has no display
import matplotlib.pyplot as plt

from benchmarks.report import VARIANT_TITLES

AXIS_TITLES = {"batch": "batch size", "time": "sequence length (steps)"}


def draw_growth(points: list[dict], out_dir: str | pathlib.Path, titles: Mapping[str, str] | None = None
                ) -> list[pathlib.Path]:
    """Draws one PNG per (workload, size name) from growth points; returns the files written.

    Args:
      points: dicts with ``workload``, ``axis`` (the size that moves), ``value``, ``variant``, ``status`` and, when
        ``status`` is ``"ok"``, ``median_ms``, ``p10_ms`` and ``p90_ms``.
      out_dir: where ``growth-<workload>-<axis>.png`` go.
      titles: workload name -> a readable title.

    Both axes are logarithmic, so linear growth is a line of slope 1 and a constant ratio between frameworks is a
    constant vertical gap; the shaded band is each point's p10–p90.
    """
    titles = titles or {}
    out_dir = pathlib.Path(out_dir)
    written = []
    for workload, axis in sorted({(p["workload"], p["axis"]) for p in points}):
        figure, ax = plt.subplots(figsize=(5.5, 4))
        for variant in sorted({p["variant"] for p in points if (p["workload"], p["axis"]) == (workload, axis)}):
            ok = sorted((p for p in points if (p["workload"], p["axis"], p["variant"]) == (workload, axis, variant)
                         and p["status"] == "ok"), key=lambda p: p["value"])
            if not ok:
                continue
            values = [p["value"] for p in ok]
            label = VARIANT_TITLES.get(variant, variant)
            line, = ax.plot(values, [p["median_ms"] for p in ok], marker="o", label=label)
            ax.fill_between(values, [p["p10_ms"] for p in ok], [p["p90_ms"] for p in ok], color=line.get_color(),
                            alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        values = sorted({p["value"] for p in points if (p["workload"], p["axis"]) == (workload, axis)})
        ax.set_xticks(values, [str(v) for v in values])
        ax.minorticks_off()
        ax.set_xlabel(AXIS_TITLES.get(axis, axis))
        ax.set_ylabel("training step, ms (median)")
        ax.set_title(f"{titles.get(workload, workload)}: cost vs {AXIS_TITLES.get(axis, axis)}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        figure.tight_layout()
        path = out_dir / f"growth-{workload}-{axis}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written
