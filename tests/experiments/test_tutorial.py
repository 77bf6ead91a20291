"""The tutorial's three programs, fixed, run through medjax: they print the tutorial's lines and their loss falls."""

import re

import pytest

from experiments.tutorial import attention, cnn, lstm


@pytest.mark.parametrize(
    "program, argv, factor",
    [
        (cnn, ["--examples", "512", "--epochs", "3"], 0.5),
        (cnn, ["--examples", "256", "--epochs", "3", "--size", "32"], 0.9),  # the size that broke the tutorial
        (lstm, ["--examples", "1024", "--epochs", "3"], 0.97),
        (attention, ["--examples", "512", "--epochs", "4"], 0.97),
    ],
    ids=["cnn28", "cnn32", "lstm", "attention"],
)
def test_tutorial_program_prints_epochs_and_learns(program, argv, factor, capsys):
    history = program.main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    epochs = int(argv[argv.index("--epochs") + 1])
    assert [re.fullmatch(rf"Epoch \[{k + 1}/{epochs}\], Loss: \d+\.\d{{4}}", line) is not None
            for k, line in enumerate(lines)] == [True] * epochs
    assert history[-1] < factor * history[0]
