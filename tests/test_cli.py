"""The command line's own behaviour: help, wrong names, and `medjax bench` outside a checkout."""

import pathlib
import sys

import pytest

from medjax import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)


@pytest.mark.parametrize("argv, names", [
    (["frobnicate"], "train, predict, recommend, translate, report, explain, export, evaluate"),
    (["train", "xray"], "ecg, medmnist, molecules, ner, textclf, translation, treatment"),
    (["predict", "--workdir", "w", "--format", "xml"], "'jsonl', 'csv'"),
])
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


def test_config_toml_beside_flags_flags_win(tmp_path):
    from medjax.tasks import ner

    toml = tmp_path / "run.toml"
    toml.write_text('model = "transformer"\nlr = 1\nbuckets = [16, 64]\nhidden = 32\n')
    config = cli.parse_config(ner.Config, ["--config", str(toml), "--hidden", "8"], "medjax train ner")
    assert (config.model, config.lr, config.buckets, config.hidden) == ("transformer", 1.0, (16, 64), 8)
    assert isinstance(config.lr, float) and hash(config) == hash(ner.Config(model="transformer", lr=1.0,
                                                                             buckets=(16, 64), hidden=8))


def test_help_comes_from_the_fields(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "ner", "--help"])
    out = capsys.readouterr().out
    assert "--max-length MAX_LENGTH" in out and "truncate sentences to this many tokens" in out
    assert "one of bilstm, bilstm-crf, transformer, transformer-crf (default: bilstm-crf)" in " ".join(out.split())


def test_an_older_config_json_takes_the_values_its_run_used():
    """A run made before `constrained_decoding` existed decoded without constraints: reloading it must too."""
    from medjax.tasks import ner
    from medjax.train.config import as_json, from_mapping

    saved = as_json(ner.Config())
    del saved["constrained_decoding"]
    assert from_mapping(ner.Config, saved, "config.json", saved=True).constrained_decoding is False
    assert from_mapping(ner.Config, saved, "run.toml").constrained_decoding is True  # a new config: today's default
