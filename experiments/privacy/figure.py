"""AUC against ε from the study's committed records: ``python experiments/privacy/figure.py`` writes auc_vs_epsilon.png.

Each seed is a dot, the mean a line; no DP (ε = ∞) is drawn at the right edge, apart from the finite ε.
"""

from __future__ import annotations

import json
import pathlib
import statistics

HERE = pathlib.Path(__file__).resolve().parent


def points() -> dict[str, dict[float, list[float]]]:
    """``{metric: {ε (inf without DP): [value per seed]}}`` for val and test AUC."""
    found: dict[str, dict[float, list[float]]] = {"val_auc": {}, "test_auc": {}}
    for path in sorted((HERE / "runs").glob("*/results.json")):
        results = json.loads(path.read_text())
        asked = json.loads((path.parent / "config.json").read_text())["config"]["dp_epsilon"]  # spent: to 1e-4
        epsilon = float("inf") if asked is None else asked
        for metric in found:
            found[metric].setdefault(epsilon, []).append(results[metric])
    return found


def main() -> pathlib.Path:
    from matplotlib.figure import Figure

    found = points()
    finite = sorted(e for e in found["test_auc"] if e != float("inf"))
    where = {e: i for i, e in enumerate(finite)}
    where[float("inf")] = len(finite) + 0.6
    figure = Figure(figsize=(6, 4), dpi=110)
    axes = figure.subplots()
    for index, (metric, label) in enumerate((("val_auc", "validation"), ("test_auc", "test"))):
        xs = sorted(found[metric], key=where.get)
        for e in xs:
            axes.plot([where[e] + 0.08 * (index - 0.5)] * len(found[metric][e]), found[metric][e], "o",
                      color=f"C{index}", alpha=0.5)
        axes.plot([where[e] for e in xs], [statistics.fmean(found[metric][e]) for e in xs], "-", color=f"C{index}",
                  label=f"{label} AUC (mean of {len(found[metric][xs[0]])} seeds)")
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes.set_xticks([where[e] for e in [*finite, float("inf")]], [f"{e:g}" for e in finite] + ["∞ (no DP)"])
    axes.set(xlabel="ε (δ = 1e-5)", ylabel="AUC", title="BreastMNIST, tutorial CNN, DP-SGD")
    axes.legend(fontsize=8)
    figure.tight_layout()
    out = HERE / "auc_vs_epsilon.png"
    figure.savefig(out)
    return out


if __name__ == "__main__":
    print(main())
