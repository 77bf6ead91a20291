"""NCBI-disease NER: BiLSTM-CRF and transformer tagger, several seeds each, one run after another.

Train on train.tsv, select the epoch on devel entity F1, report test entity precision/recall/F1 (seqeval's default
scoring). Published BiLSTM-CRF on this split: F1 80.4 (Crichton et al. 2017); 85.8 trained on train+devel (Wang et al.
2019); pretrained BioBERT 89.7.

Command (from the repository root; ~15-20 min per BiLSTM-CRF seed on a shared 2-core CPU, see RESULTS.md):
  nohup .venv/bin/python experiments/ner/run.py --data-dir ../shared/data/ncbi-disease \
      --models bilstm-crf transformer --seeds 0 1 2 --out runs/ner > runs/ner/run.log 2>&1 &
Smoke test (about a minute): add ``--smoke`` (200 sentences per split, 2 epochs, small models).

Each run is one `medjax train ner` in ``<out>/<model>/seed<k>``; a run whose results.json exists is not rerun, and an
interrupted one resumes from its checkpoint. ``<out>/summary.json`` holds the per-seed test figures, their mean and
sample standard deviation, and wall times.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics

# Flags per model on top of `medjax.tasks.ner.Config`'s defaults (which are the BiLSTM-CRF recipe).
RECIPES = {
    "bilstm-crf": [],
    "bilstm": ["--model", "bilstm"],
    "transformer": ["--model", "transformer", "--lr", "1e-3", "--dropout", "0.3"],
    "transformer-crf": ["--model", "transformer-crf", "--lr", "1e-3", "--dropout", "0.3"],
}
SMOKE = ["--limit", "200", "--epochs", "2", "--hidden", "16", "--width", "32", "--mlp-dim", "64", "--embed-dim", "16"]
PUBLISHED = {"bilstm-crf": {"f1": 0.804, "source": "Crichton et al. 2017 (train only)"}}
METRICS = ("test_precision", "test_recall", "test_f1")


def summarize(runs: dict[int, dict]) -> dict:
    """Per-seed figures, and the mean and sample std of each test metric, from the runs' results.json."""
    seeds = {seed: {k: r[k] for k in ("best_epoch", "val_f1", *METRICS, "wall_seconds")} for seed, r in runs.items()}
    summary: dict = {"seeds": seeds}
    for metric in METRICS:
        values = [r[metric] for r in seeds.values()]
        summary[metric] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    summary["wall_seconds_total"] = sum(r["wall_seconds"] for r in seeds.values())
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder with train.tsv, devel.tsv and test.tsv")
    parser.add_argument("--models", nargs="+", default=["bilstm-crf", "transformer"], choices=sorted(RECIPES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (default: 0 1 2)")
    parser.add_argument("--out", required=True, help="parent folder of the <model>/seed<k> work folders")
    parser.add_argument("--smoke", action="store_true", help="tiny data and models: checks the pipeline")
    args = parser.parse_args(argv)

    from medjax.cli import main as cli

    out = pathlib.Path(args.out)
    summary = {}
    for model in args.models:
        runs = {}
        for seed in args.seeds:
            workdir = out / model / f"seed{seed}"
            results_path = workdir / "results.json"
            if not results_path.exists():
                cli(["train", "ner", "--data-dir", args.data_dir, "--workdir", str(workdir), "--seed", str(seed),
                     "--no-progress", *RECIPES[model], *(SMOKE if args.smoke else [])])
            runs[seed] = json.loads(results_path.read_text())
            print(f"{model} seed {seed}: " + ", ".join(f"{k} {runs[seed][k]:.4f}" for k in METRICS), flush=True)
        summary[model] = {**summarize(runs), "published": PUBLISHED.get(model), "flags": RECIPES[model]}
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for model, result in summary.items():
        print(model + ": " + ", ".join(f"{m} {result[m]['mean']:.4f} ± {result[m]['std']:.4f}" for m in METRICS))
    return summary


if __name__ == "__main__":
    main()
