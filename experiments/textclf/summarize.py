"""Tables for RESULTS.md: the split (abstracts per class) and each model's test figures over seeds beside the baseline.

Usage, from the repository root, after `experiments/textclf/run_all.sh`:
  .venv/bin/python experiments/textclf/summarize.py [--runs runs/textclf] [--data-dir ../shared/data/medical-abstracts-tc]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re

import numpy as np

from medjax.data import abstracts


def split_table(data_dir: str, seed: int = 0) -> str:
    """Markdown: abstracts per class in each split of `abstracts.split` (80/10/10, ``seed``)."""
    corpus = abstracts.load(data_dir)
    parts = abstracts.split(corpus, (0.8, 0.1, 0.1), seed=seed)
    counts = abstracts.class_counts(corpus, parts)
    rows = ["| class | " + " | ".join(parts) + " | all |", "|---|" + "---:|" * (len(parts) + 1)]
    for k, name in enumerate(corpus.class_names):
        cells = [str(counts[split][k]) for split in parts]
        rows.append(f"| {k + 1} {name} | " + " | ".join(cells) + f" | {sum(counts[s][k] for s in parts)} |")
    totals = [str(len(parts[split])) for split in parts]
    rows.append("| total | " + " | ".join(totals) + f" | {len(corpus)} |")
    distinct = {split: len({corpus.texts[i] for i in rows_}) for split, rows_ in parts.items()}
    rows.append("| distinct texts | " + " | ".join(str(distinct[s]) for s in parts) + f" | {len(set(corpus.texts))} |")
    return "\n".join(rows)


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def results_table(runs: pathlib.Path) -> str:
    """Markdown: per model, test macro-F1 and accuracy (mean ± sd over seeds), best epoch and wall time."""
    by_model: dict[str, list[dict]] = {}
    baseline = None
    for path in sorted(runs.glob("*_s*/results.json")):
        model = re.sub(r"_s\d+$", "", path.parent.name)
        results = json.loads(path.read_text())
        by_model.setdefault(model, []).append(results)
        if "test_baseline_macro_f1" in results:
            baseline = results
    rows = ["| model | seeds | test macro-F1 | test accuracy | val macro-F1 | best epoch | wall s / run |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    if baseline is not None:
        rows.append(f"| TF-IDF + LR (same split) | – | {baseline['test_baseline_macro_f1']:.4f} | "
                    f"{baseline['test_baseline_accuracy']:.4f} | {baseline['val_baseline_macro_f1']:.4f} | – | – |")
    for model, results in sorted(by_model.items()):
        pick = lambda key: [r[key] for r in results]  # noqa: E731
        rows.append(
            f"| {model} | {len(results)} | {_mean_std(pick('test_macro_f1'))} | {_mean_std(pick('test_accuracy'))} | "
            f"{_mean_std(pick('val_macro_f1'))} | {', '.join(str(e) for e in pick('best_epoch'))} | "
            f"{np.mean(pick('wall_seconds')):.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/textclf", help="folder holding <model>_s<seed>/results.json")
    parser.add_argument("--data-dir", default="../shared/data/medical-abstracts-tc", help="the corpus folder")
    args = parser.parse_args()
    print(split_table(args.data_dir), end="\n\n")
    print(results_table(pathlib.Path(args.runs)))


if __name__ == "__main__":
    main()
