"""The command line's own behaviour: help, wrong names, and `medjax bench` outside a checkout."""

import pathlib
import sys

import pytest

from medjax import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)


@pytest.mark.parametrize("argv, names", [(["frobnicate"], "train, evaluate"), (["train", "xray"], "medmnist, ner, textclf")])
def test_wrong_names_get_the_valid_ones_in_one_line(argv, names, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("medjax: error: ") and names in err and err.count("\n") == 1


def test_bench_outside_a_checkout_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Hide the checkout (pytest puts its root on the path) and any benchmarks module already imported.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (pathlib.Path(p or ".") / "benchmarks").is_dir()])
    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, name)
    assert cli.main(["bench", "--help"]) == 2
    assert "root of a medjax checkout" in capsys.readouterr().err
