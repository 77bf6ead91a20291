"""Generated tables in benchmarks/RESULTS.md: replaced in place between their markers, and every committed one is
what its script makes of its committed JSON."""

import json
import pathlib
import shlex

import pytest

from benchmarks import conv_kernels, e2e_medmnist, e2e_ner, lstm_kernel, precision, results_md, xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_put_section_replaces_between_markers_and_appends_new_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nkept\n")
    results_md.put_section("demo", "Demo", "python -m demo --report", "| a |\n| 1 |", path)
    results_md.put_section("demo", "Demo", "python -m demo --report", "| a |\n| 2 |", path)
    results_md.put_section("other", "Other", "python -m other", "text", path)
    text = path.read_text()
    assert text.startswith("# Results\n\nkept\n\n## Demo\n")
    assert "| 2 |" in text and "| 1 |" not in text and text.count("## Demo") == 1
    assert text.endswith("## Other\n\n<!-- other table: python -m other -->\ntext\n<!-- /other table -->\n")


@pytest.mark.parametrize("module, results", [
    (e2e_ner, e2e_ner.RESULTS), (e2e_medmnist, e2e_medmnist.RESULTS), (lstm_kernel, lstm_kernel.RESULTS),
    (conv_kernels, conv_kernels.RESULTS),
])
def test_every_committed_table_is_its_script_s_reading_of_the_committed_json(module, results):
    assert module.report(json.loads(results.read_text())) in results_md.RESULTS_MD.read_text()


def test_the_flag_sweep_table_is_the_committed_json_s():
    table = xla_flags.sweep_report(json.loads(xla_flags.SWEEP_RESULTS.read_text()))
    assert table in results_md.RESULTS_MD.read_text()


def test_the_precision_table_is_the_committed_runs():
    text = results_md.RESULTS_MD.read_text()
    command = text.split(f"<!-- {precision.NAME} table: ", 1)[1].split(" -->", 1)[0]
    runs = [str(ROOT / path) for path in shlex.split(command)[3:]]
    assert runs and precision.table(*precision.read_pairs(runs)) in text
