"""The README's result figures are the committed run records' figures: each study's headline, recomputed from its
``runs/*/results.json``, stands in the README's results table as written, and RESULTS.md quotes the same."""

import pathlib

import pytest

from experiments import study

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


STUDIES = ["medmnist", "ner", "textclf", "ecg", "molecules", "treatment", "privacy", "ensembles"]


@pytest.mark.parametrize("name", STUDIES)
def test_headline_figures_come_from_the_committed_runs(name):
    lines = study.headlines(name)
    found = study.runs(study.load_study(name))
    for config, records in found.items():
        for seed, results in records.items():
            run = ROOT / "experiments" / name / "runs" / f"{config}-seed{seed}"
            assert (run / "metrics.jsonl").stat().st_size > 0 and (run / "config.json").exists()
            assert results["best_epoch"] in [int(line.split('"epoch": ')[1].split(",")[0])
                                             for line in (run / "metrics.jsonl").read_text().splitlines()]
    results_md = (ROOT / "experiments" / name / "RESULTS.md").read_text()
    for config, figure in lines.items():
        assert figure in README, f"README lacks {name} {config}: {figure!r}"
        assert figure in results_md


def test_every_figure_in_the_readme_results_table_is_a_headline():
    table = README.split("## Results on real data", 1)[1].split("\n## ", 1)[0]
    quoted = {figure for name in STUDIES for figure in study.headlines(name).values()}
    rows = [row for row in table.splitlines() if row.startswith("| ") and not row.startswith("| study")]
    for row in rows:
        medjax_cell = row.split("|")[2].strip()
        assert medjax_cell in quoted or medjax_cell.startswith("not run"), row
