"""Reproduce MedMNIST v2's ResNet (28) rows on BreastMNIST: the published recipe, several seeds, one after another.

Published (MedMNIST v2, Table of 2-D results, BreastMNIST test): ResNet-18 (28) AUC 0.901, ACC 0.863; ResNet-50 (28)
AUC 0.857, ACC 0.812; best in the table AUC 0.919 (Google AutoML Vision).

Command (from the repository root; ~1 h per ResNet-18 seed on a shared 2-core CPU, see RESULTS.md):
  .venv/bin/python experiments/medmnist/run.py --data-dir ../shared/data/breastmnist-copy --model resnet18 \
      --seeds 0 1 2 --out runs/medmnist-breast-resnet18
Smoke test (seconds): add ``--smoke`` (tutorial CNN, 2 epochs). A budgeted run: ``--epochs 20`` (same recipe, the
learning-rate cuts at epochs 10 and 15).

Each seed is one `medjax train medmnist` run in ``<out>/seed<k>`` (config.json, metrics.jsonl, results.json,
checkpoints/, predictions_test.npz); a seed whose results.json exists is not rerun, and an interrupted one resumes from
its checkpoint. ``<out>/summary.json`` collects per-seed test AUC/ACC, their mean and sample standard deviation, and the
wall time.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

PUBLISHED = {  # MedMNIST v2 (Yang et al., Scientific Data 2023), BreastMNIST test split
    "resnet18": {"auc": 0.901, "acc": 0.863},
    "resnet50": {"auc": 0.857, "acc": 0.812},
}


def summarize(runs: dict[int, dict], model: str) -> dict:
    """Per-seed test figures, their mean and sample std, and the published row, from each run's results.json."""
    summary = {"model": model, "published": PUBLISHED.get(model), "seeds": {}}
    for seed, results in sorted(runs.items()):
        summary["seeds"][seed] = {key: results[key] for key in
                                  ("best_epoch", "val_auc", "test_auc", "test_acc", "wall_seconds") if key in results}
    for metric in ("test_auc", "test_acc"):
        values = [r[metric] for r in summary["seeds"].values()]
        summary[metric] = {"mean": statistics.fmean(values),
                           "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    summary["wall_seconds_total"] = sum(r.get("wall_seconds", 0.0) for r in summary["seeds"].values())
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding breastmnist.npz, or the file itself")
    parser.add_argument("--model", default="resnet18", help="cnn, resnet18 or resnet50 (default: resnet18)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (default: 0 1 2)")
    parser.add_argument("--out", required=True, help="parent folder of the per-seed work folders")
    parser.add_argument("--epochs", type=int, default=100,
                        help="epochs per seed (default: 100, the recipe; the milestones stay at 50%% and 75%%)")
    parser.add_argument("--smoke", action="store_true", help="tutorial CNN for 2 epochs: checks the pipeline")
    args = parser.parse_args(argv)

    from medjax.tasks import medmnist
    from medjax.train import loop

    out = pathlib.Path(args.out)
    runs = {}
    for seed in args.seeds:
        workdir = out / f"seed{seed}"
        results_path = workdir / "results.json"
        if not results_path.exists():
            overrides = {"model": "cnn", "epochs": 2} if args.smoke else {"model": args.model, "epochs": args.epochs}
            config = medmnist.Config(dataset="breastmnist", data_dir=args.data_dir, workdir=str(workdir), seed=seed,
                                     progress=False, **overrides)
            loop.train(medmnist.build_task(config), config, task_name="medmnist")
        runs[seed] = json.loads(results_path.read_text())
    summary = summarize(runs, "cnn" if args.smoke else args.model)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
