"""The model card of a run: ``<workdir>/README.md``, written when `medjax train` ends (and by `medjax report`).

What a person handed the folder needs before using the model: the task and the data it was trained on, its figures
beside the published row (the same table as ``report.html``, `medjax.train.html_report.result_table`), what it is for
and not for, its limits, and how to load it. Every value from the run's files is quoted as data.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

from medjax.train.html_report import result_table
from medjax.train.workdir import read_json, write_atomically

# What `run.predict` takes, per task: the line the card's example shows.
INPUTS = {
    "medmnist": 'np.zeros((1, {size}, {size}), np.uint8)   # u8[n, h, w(, c)] images, or ["scan.png", ...]',
    "textclf": '["abstract text ..."]',
    "ner": '["Familial breast cancer is linked to BRCA1 ."]',
    "molecules": '["CCO", "c1ccccc1O"]   # SMILES',
    "ecg": '["path/to/mitdb/100"]   # WFDB records (or the .npz copies)',
    "treatment": '[1]   # person_id values of the run\'s OMOP database',
    "translation": '["The patient has a fever."]',
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render(workdir: pathlib.Path, published: Sequence[dict[str, Any]], purpose: str) -> str:
    saved = read_json(workdir / "config.json", "the config.json of a run")
    results = read_json(workdir / "results.json", "the results.json of a finished run")
    task, config = str(saved.get("task")), saved.get("config", {})
    describe = saved.get("describe") or {}
    header, rows = result_table(results, published)
    source = config.get("data_dir") or config.get("dataset") or config.get("database") or "(the task's default)"
    size = describe.get("size", 28)
    lines = [
        f"# {task} model: {_cell(workdir.name)}",
        "",
        f"{_cell(purpose)} Trained with medjax {_cell(saved.get('medjax_version', '?'))}: model "
        f"`{_cell(config.get('model', '?'))}`, {_cell(config.get('epochs'))} epochs, seed {_cell(config.get('seed'))}, "
        f"epoch {_cell(results.get('best_epoch'))} kept on validation `{_cell(results.get('select_metric'))}`.",
        "",
        "## Data",
        "",
        f"- source: `{_cell(source)}`",
        *(f"- {key.replace('_', ' ')}: {_cell(json.dumps(describe[key]))}"
          for key in ("split_sizes", "n_samples", "sentences", "split_patients", "records") if key in describe),
        "",
        "## Results",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join([_cell(metric), *map(_cell, values)]) + " |" for metric, values in rows),
        "",
        "## Intended use and limits",
        "",
        "- For research and teaching: not a medical device, not validated for any clinical decision.",
        "- Its figures hold for data like its test split; other sites, devices, populations or label definitions may "
        "do worse without warning. Check on your own data first (`medjax evaluate` after pointing the config at it).",
        "- Prediction sets and intervals (`--coverage`) hold their coverage only for data exchangeable with the "
        "validation split they were calibrated on.",
        "",
        "## How to load it",
        "",
        "```python",
        "import medjax, numpy as np",
        f"run = medjax.load({str(workdir)!r})",
        f"inputs = {INPUTS.get(task, '...').format(size=size)}",
        "out = run.predict(inputs)",
        "```",
        "",
        "```bash",
        f"medjax predict --workdir {workdir} INPUT...      # JSON lines; --output out.csv for CSV",
        f"medjax export --workdir {workdir} --format stablehlo   # for serving without medjax",
        "```",
        "",
    ]
    return "\n".join(lines)


def write(workdir: str | pathlib.Path, published: Sequence[dict[str, Any]] = (), purpose: str = "") -> pathlib.Path:
    """Writes ``<workdir>/README.md`` for a finished run and returns its path."""
    workdir = pathlib.Path(workdir)
    path = workdir / "README.md"
    write_atomically(path, render(workdir, published, purpose))
    return path
