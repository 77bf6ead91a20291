"""Each benchmark workload is the same model on both sides: medjax and its PyTorch twin give the same first loss.

Tiny sizes, no timing: these tests check that the benchmark compares like with like, never how fast either side is.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import medjax_step, report, torch_step, workloads  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("name", workloads.WORKLOADS)
def test_same_first_loss(name, tmp_path):
    sizes = dict(workloads.medjax_module(name).TINY)
    start = tmp_path / "start.npz"
    medjax_loss = medjax_step.prepare(name, sizes, seed=0, path=start)
    torch_loss = torch_step.first_loss(name, sizes, start)
    assert np.isfinite(medjax_loss)
    assert abs(medjax_loss - torch_loss) <= report.LOSS_TOLERANCE, (medjax_loss, torch_loss)


def test_timed_steps_train_identically(tmp_path):
    # The timed steps themselves (donated jitted step; twin with Adam) follow the same trajectory: after the first,
    # warm-up, timed and last steps (5 Adam updates) both sides still agree, so both time forward + backward + Adam.
    sizes = dict(workloads.medjax_module("cnn").TINY)
    start = tmp_path / "start.npz"
    medjax_step.prepare("cnn", sizes, seed=0, path=start)
    ours = medjax_step.run("cnn", sizes, start, steps=2, warmup=2)
    theirs = torch_step.run("cnn", sizes, start, steps=2, warmup=2, compile=False)
    assert theirs["status"] == "ok"
    assert abs(ours["first_loss"] - theirs["first_loss"]) <= report.LOSS_TOLERANCE
    assert ours["last_loss"] != pytest.approx(ours["first_loss"], abs=1e-3)  # the weights did move
    assert abs(ours["last_loss"] - theirs["last_loss"]) <= 1e-4, (ours["last_loss"], theirs["last_loss"])
    assert ours["param_count"] == theirs["param_count"]
    assert ours["timing"]["steps"] == theirs["timing"]["steps"] == 2
    assert ours["compile_s"] > 0 and ours["peak_rss_bytes"] > 0


def test_twin_refuses_weights_of_other_sizes(tmp_path):
    sizes = dict(workloads.medjax_module("attention").TINY)
    start = tmp_path / "start.npz"
    medjax_step.prepare("attention", sizes, seed=0, path=start)
    _, variables = workloads.load_start(start)
    with pytest.raises(ValueError, match=r"embed\.kernel: the PyTorch twin expects shape \(9, 3\)"):
        workloads.torch_module("attention").build({**sizes, "hidden": 9}, variables)


def test_start_round_trips_nested_variables(tmp_path):
    batch = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    variables = {"params": {"dense": {"kernel": np.ones((3, 2), np.float32)}},
                 "batch_stats": {"bn": {"mean": np.zeros(2)}}}
    workloads.save_start(tmp_path / "s.npz", batch, variables)
    got_batch, got_variables = workloads.load_start(tmp_path / "s.npz")
    np.testing.assert_array_equal(got_batch["x"], batch["x"])
    np.testing.assert_array_equal(got_variables["params"]["dense"]["kernel"], np.ones((3, 2)))
    np.testing.assert_array_equal(got_variables["batch_stats"]["bn"]["mean"], np.zeros(2))
    with pytest.raises(ValueError, match="contains '/'"):
        workloads.save_start(tmp_path / "t.npz", {"a/b": np.zeros(1)}, {})


def test_unknown_workload_and_size_are_named():
    with pytest.raises(ValueError, match=r"unknown workload\(s\) \['gru'\]; valid workloads: cnn, resnet18"):
        workloads.medjax_module("gru")
    with pytest.raises(ValueError, match=r"unknown size\(s\) \['depth'\]; this workload's sizes are"):
        workloads.parse_sizes({"batch": 2}, {"depth": 3})
