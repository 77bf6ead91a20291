"""`medjax explain` on a trained imaging run: PNG overlays per method, a batch, and one-line errors."""

from __future__ import annotations

import types

from medjax import cli
from tests.cli.cli_data import breastmnist


def test_explain_writes_overlays_and_names_bad_requests(tmp_path, capsys):
    def _cli(*argv):  # in-process: the command's exit status and what it printed
        capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        out = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    data, run = breastmnist(tmp_path / "breastmnist.npz"), tmp_path / "run"
    trained = _cli("train", "medmnist", "--model", "cnn", "--epochs", "1", "--data-dir", data, "--workdir", run,
                   "--no-progress")
    assert trained.returncode == 0, trained.stderr
    one = _cli("explain", "--workdir", run, "--index", "3", "--method", "gradcam")
    assert one.returncode == 0, one.stderr
    assert one.stdout.split() == [str(run / "explain" / "test-3-gradcam.png")]
    batch = _cli("explain", "--workdir", run, "--limit", "2", "--method", "integrated_gradients")
    assert batch.returncode == 0, batch.stderr
    for path in batch.stdout.split():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    page = _cli("report", "--workdir", run, "--html")
    assert page.returncode == 0 and "explain/test-3-gradcam.png" in (run / "report.html").read_text()
    for argv, named in ((["--index", "156"], "--index: expected an index from 0 to 155 (test has 156 examples)"),
                        (["--index", "0", "--method", "rollout"], "needs a text run with attention"),
                        ([], "expected --index i or --limit n")):
        result = _cli("explain", "--workdir", run, *argv)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and named in result.stderr, result.stderr
