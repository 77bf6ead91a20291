"""One layout for every study: a `study.toml`, configs, committed run records, and a generated RESULTS.md.

    python experiments/study.py run ner [--seeds 0 1 2] [--smoke]   # trains every config x seed, one after another
    python experiments/study.py report ner                          # RESULTS.md from the committed runs alone

A study folder ``experiments/<study>/`` holds ``study.toml`` (the task, the configs to run, the seeds, the metrics to
tabulate, the published rows to stand beside, and optionally a choice to make on validation), one TOML config per
model (``medjax train <task> --config`` reads it), ``notes.md`` (the protocol and the reading of the figures, written
before the test figures were looked at where the study says so), and ``runs/<config>-seed<k>/`` with the
``config.json``, ``results.json`` and ``metrics.jsonl`` of each finished run: small files, committed, from which every
figure of RESULTS.md and of the README is computed (`headlines`; a test holds the README to them).

Each run trains in ``runs/<study>/<config>-seed<k>/`` under the repository root (ignored by git: checkpoints are
large); a run whose results.json exists is not rerun, and an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
RECORDS = ("config.json", "results.json", "metrics.jsonl")


def load_study(name: str) -> dict:
    folder = ROOT / "experiments" / name
    study = tomllib.loads((folder / "study.toml").read_text())
    study["folder"] = folder
    study["name"] = name
    return study


def run(name: str, seeds: list[int] | None = None, smoke: bool = False, configs: list[str] | None = None) -> None:
    """Trains each config of the study (or those named) with each seed (``medjax train`` as a subprocess) and copies
    its records."""
    study = load_study(name)
    for config in study["configs"]:
        if configs and config["name"] not in configs:
            continue
        for seed in seeds if seeds is not None else study["seeds"]:
            run_name = f"{config['name']}-seed{seed}"
            workdir = ROOT / "runs" / ("smoke" if smoke else "") / name / run_name
            command = [sys.executable, "-m", "medjax.cli", "train", study["task"], "--config",
                       str(study["folder"] / config["file"]), "--seed", str(seed), "--workdir", str(workdir),
                       "--no-progress", *(study.get("smoke", []) if smoke else [])]
            if not (workdir / "results.json").exists():
                print(" ".join(command), flush=True)
                subprocess.run(command, check=True, cwd=ROOT)
            if not smoke:
                kept = study["folder"] / "runs" / run_name
                kept.mkdir(parents=True, exist_ok=True)
                for record in RECORDS:
                    shutil.copy(workdir / record, kept / record)


def runs(study: dict) -> dict[str, dict[int, dict]]:
    """``{config name: {seed: results.json}}`` of the committed runs."""
    found = {}
    for config in study["configs"]:
        seeds = {}
        for path in sorted((study["folder"] / "runs").glob(f"{config['name']}-seed*/results.json")):
            seeds[int(path.parent.name.rsplit("-seed", 1)[1])] = json.loads(path.read_text())
        found[config["name"]] = seeds
    return found


def mean_sd(values: list[float]) -> str:
    """``"0.802 ± 0.001"``: the mean and the sample standard deviation (``"0.802"`` for one value)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def choose(study: dict, results: dict[int, dict]) -> tuple[str | None, str]:
    """The option of the study's ``choice`` with the best mean validation figure, and a sentence saying so."""
    choice = study.get("choice")
    keys = [choice["validation"].format(option) for option in choice["options"]] if choice else []
    if not choice or not results or not all(key in r for key in keys for r in results.values()):
        return None, ""
    means = {option: statistics.fmean(r[choice["validation"].format(option)] for r in results.values())
             for option in choice["options"]}
    best = max(means, key=means.get)
    said = ", ".join(f"{option} {value:.4f}" for option, value in means.items())
    return best, f"{choice['name']} chosen on validation: **{best}** (mean {choice['validation'].format('…')}: {said})"


def headlines(name: str) -> dict[str, str]:
    """``{config name: "<metric> <mean ± sd>"}``: the figure of each config that the README quotes."""
    study = load_study(name)
    lines = {}
    for config, results in runs(study).items():
        if not results:
            continue
        metric = study["headline"]
        best, _ = choose(study, results)
        if best is not None:
            metric = study["choice"]["test"].format(best)
        lines[config] = f"{study['headline_label']} {mean_sd([r[metric] for r in results.values()])}"
    return lines


def report(name: str) -> str:
    """Writes and returns ``RESULTS.md`` of the study, from its committed runs and notes."""
    study = load_study(name)
    found = runs(study)
    labels = study["labels"]
    lines = [f"# {study['title']}", "",
             f"Generated by `python experiments/study.py report {name}` from the run records in `runs/` (each "
             f"`results.json`, `metrics.jsonl` and `config.json` as `medjax train` wrote it); edit `notes.md` or "
             f"`study.toml`, not this file. Mean ± sample standard deviation over seeds.", "",
             "| config | seeds | " + " | ".join(labels[m] for m in study["summary"]) + " |",
             "|---|---|" + "---|" * len(study["summary"])]
    for config in study["configs"]:
        results = found[config["name"]]
        if not results:
            lines.append(f"| {config['label']} | not run | " + " | ".join("" for _ in study["summary"]) + " |")
            continue
        cells = [mean_sd([r[m] for r in results.values()]) if all(m in r for r in results.values()) else "—"
                 for m in study["summary"]]
        lines.append(f"| {config['label']} | {', '.join(map(str, sorted(results)))} | " + " | ".join(cells) + " |")
    for row in study.get("published", []):
        cells = [f"{row[m]:.3f}" if m in row else "" for m in study["summary"]]
        lines.append(f"| {row['label']} (published) | | " + " | ".join(cells) + " |")
    quoted = headlines(name)
    if quoted:
        lines += ["", "Quoted in the README:", ""]
    for config in study["configs"]:
        if config["name"] in quoted:
            _, said = choose(study, found[config["name"]])
            lines.append(f"- {config['label']}: **{quoted[config['name']]}**" + (f" ({said})" if said else ""))
    lines += ["", "Per run:", "", "| run | " + " | ".join(labels[m] for m in study["per_run"]) + " |",
              "|---|" + "---|" * len(study["per_run"])]
    for config in study["configs"]:
        for seed, r in sorted(found[config["name"]].items()):
            cells = ["—" if m not in r else f"{r[m]:.0f}" if m == "wall_seconds" else str(r[m])
                     if isinstance(r[m], int) else f"{r[m]:.4f}" for m in study["per_run"]]
            lines.append(f"| {config['name']}-seed{seed} | " + " | ".join(cells) + " |")
    lines += ["", "Configs: " + ", ".join(f"`{c['file']}`" for c in study["configs"]) + f"; command: "
              f"`python experiments/study.py run {name}`.", ""]
    if any(found.values()):
        plot_curves(study, found)
        lines += [f"![validation {study['select']} per epoch, every run](curves.png)", ""]
    notes = study["folder"] / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    text = "\n".join(lines)
    (study["folder"] / "RESULTS.md").write_text(text)
    return text


def plot_curves(study: dict, found: dict[str, dict[int, dict]]) -> pathlib.Path:
    """``curves.png``: the training loss and the validation selection metric per epoch of every committed run."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), dpi=110)
    loss_axes, val_axes = figure.subplots(1, 2)
    for index, config in enumerate(study["configs"]):
        for seed in sorted(found[config["name"]]):
            path = study["folder"] / "runs" / f"{config['name']}-seed{seed}" / "metrics.jsonl"
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            epochs = [line["epoch"] for line in lines]
            style = {"color": f"C{index}", "alpha": 0.8, "label": config["label"] if seed == min(found[config["name"]])
                     else None}
            loss_axes.plot(epochs, [line["train_loss"] for line in lines], **style)
            val_axes.plot(epochs, [line[f"val_{study['select']}"] for line in lines], **style)
    loss_axes.set(xlabel="epoch", ylabel="training loss", yscale="log")
    val_axes.set(xlabel="epoch", ylabel=f"validation {study['select']}")
    val_axes.legend(fontsize=8)
    figure.tight_layout()
    out = study["folder"] / "curves.png"
    figure.savefig(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("study", help="a folder of experiments/ with a study.toml")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds to run (default: the study's)")
    parser.add_argument("--smoke", action="store_true", help="the study's smoke flags; records are not kept")
    parser.add_argument("--configs", nargs="+", help="run only these configs (default: all)")
    args = parser.parse_args(argv)
    if args.action == "run":
        run(args.study, args.seeds, args.smoke, args.configs)
    if not args.smoke:
        print(report(args.study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
