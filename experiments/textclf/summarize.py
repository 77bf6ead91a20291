"""Tables for RESULTS.md: the split (abstracts per class), each model's test figures over seeds beside the baseline,
per-class F1 of the seed-0 runs, and a paired bootstrap of each seed-0 model's macro-F1 minus the baseline's.

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
from medjax.metrics.classification import macro_f1
from medjax.tasks import textclf


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


def baseline_test_predictions(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, baseline predictions)`` on the test split, refitted exactly as a seed-0 run fits it."""
    data = textclf.load_corpus(textclf.Config(data_dir=data_dir))
    pipeline, _ = textclf.fit_tfidf_baseline(data.texts("train"), data.labels("train"), data.texts("val"),
                                             data.labels("val"))
    return data.labels("test"), pipeline.predict(data.texts("test"))


def per_class_and_bootstrap(runs: pathlib.Path, data_dir: str, resamples: int = 2000) -> str:
    """Markdown: per-class test F1 of the baseline and each seed-0 run, then the paired bootstrap of the differences."""
    labels, baseline = baseline_test_predictions(data_dir)
    corpus_names = abstracts.load(data_dir).class_names
    predictions = {"TF-IDF + LR": baseline}
    for path in sorted(runs.glob("*_s0/predictions_test.npz")):
        saved = np.load(path)
        if not np.array_equal(saved["labels"], labels):
            raise ValueError(f"{path} was not scored on this split's test abstracts")
        predictions[path.parent.name] = saved["pred"]
    k = len(corpus_names)
    rows = ["| model | " + " | ".join(corpus_names) + " | macro |", "|---|" + "---:|" * (k + 1)]
    for name, pred in predictions.items():
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in _per_class_f1(labels, pred, k)) +
                    f" | {macro_f1(labels, pred, k):.3f} |")
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(labels), len(labels)) for _ in range(resamples)]
    rows.append("")
    for name, pred in list(predictions.items())[1:]:
        diffs = np.array([macro_f1(labels[i], pred[i], k) - macro_f1(labels[i], baseline[i], k) for i in draws])
        observed = macro_f1(labels, pred, k) - macro_f1(labels, baseline, k)
        rows.append(f"- {name} − baseline: {observed:+.3f} macro-F1, 95% bootstrap interval "
                    f"[{np.percentile(diffs, 2.5):+.3f}, {np.percentile(diffs, 97.5):+.3f}], "
                    f"above 0 in {np.mean(diffs > 0):.0%} of {resamples} resamples of the test abstracts")
    return "\n".join(rows)


def _per_class_f1(labels: np.ndarray, pred: np.ndarray, k: int) -> list[float]:
    f1 = []
    for c in range(k):
        tp = np.sum((labels == c) & (pred == c))
        denominator = np.sum(labels == c) + np.sum(pred == c)
        f1.append(2 * tp / denominator if denominator else 0.0)
    return f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/textclf", help="folder holding <model>_s<seed>/results.json")
    parser.add_argument("--data-dir", default="../shared/data/medical-abstracts-tc", help="the corpus folder")
    args = parser.parse_args()
    print(split_table(args.data_dir), end="\n\n")
    print(results_table(pathlib.Path(args.runs)), end="\n\n")
    print(per_class_and_bootstrap(pathlib.Path(args.runs), args.data_dir))


if __name__ == "__main__":
    main()
