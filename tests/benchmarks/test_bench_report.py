"""The runner's bookkeeping: ratios computed by hand, the Markdown table and plots written, options checked.

No timing is asserted anywhere: step times here are made up, or come from a tiny run whose speed means nothing.
"""

import json

import numpy as np
import pytest

from benchmarks import plots, report, runner


def _record(variant, repeat, median_ms, first_loss=1.0, **extra):
    steps = [median_ms - 1.0, median_ms, median_ms + 1.0]
    return {"workload": "cnn", "variant": variant, "repeat": repeat, "status": "ok", "first_loss": first_loss,
            "timing": {"median_ms": median_ms}, "step_ms": steps, "compile_s": 0.5 if variant == "medjax" else None,
            "peak_rss_bytes": 300 * 2**20, "faults_per_step": 7, **extra}


PREPARED = {"cnn": {"sizes": {"batch": 64}, "first_loss": 1.0}}


def test_ratios_by_hand():
    records = [_record("medjax", r, ms) for r, ms in enumerate([8.0, 10.0, 9.0])]
    records += [_record("torch", r, ms) for r, ms in enumerate([10.0, 12.0, 11.0])]
    records += [_record("torch-compile", r, ms) for r, ms in enumerate([20.0, 6.0, 30.0])]
    entry = report.summarize(records, PREPARED)["cnn"]
    assert entry["variants"]["medjax"]["median_ms"] == 9.0
    assert entry["variants"]["torch"]["median_ms"] == 11.0
    assert entry["variants"]["torch-compile"]["median_ms"] == 20.0
    # The faster PyTorch variant by median is eager (11 < 20); per repeat, the faster of the two run beside it.
    assert entry["faster_torch"] == "torch"
    assert entry["ratio"] == pytest.approx(9.0 / 11.0)
    assert entry["ratio_per_repeat"] == pytest.approx([8 / 10, 10 / 6, 9 / 11])
    pooled = np.concatenate([r["step_ms"] for r in records if r["variant"] == "medjax"])
    assert entry["variants"]["medjax"]["p10_ms"] == pytest.approx(np.percentile(pooled, 10))
    assert entry["loss_check"]


def test_table_marks_a_failed_compile_and_a_loss_mismatch():
    records = [_record("medjax", 0, 4.0), _record("torch", 0, 5.0, first_loss=1.001),
               {"workload": "cnn", "variant": "torch-compile", "repeat": 0, "status": "does not compile",
                "error": "Unsupported: LSTM"}]
    summary = report.summarize(records, PREPARED)
    assert not summary["cnn"]["loss_check"]
    table = report.markdown(summary, {"cnn": "tutorial CNN"})
    row = next(line for line in table.splitlines() if line.startswith("| tutorial CNN | batch 64"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[2] == "4.00 (3.20–4.80)"  # p10, p90 of the steps 3, 4, 5
    assert cells[4] == "does not compile"
    assert cells[5] == "**0.80** vs PyTorch eager"
    assert cells[7] == "yes"  # 0.80 <= 0.8
    assert cells[8].startswith("**NO**")
    assert "- tutorial CNN, torch.compile: Unsupported: LSTM" in table


def test_size_overrides():
    sizes = runner.size_overrides(["batch=8", "lstm:time=9"], ["cnn", "lstm"], tiny=True)
    assert sizes["cnn"]["batch"] == sizes["lstm"]["batch"] == 8
    assert sizes["lstm"]["time"] == 9
    with pytest.raises(ValueError, match="no chosen workload has a size 'depth'"):
        runner.size_overrides(["depth=3"], ["cnn"], tiny=False)
    with pytest.raises(ValueError, match=r"wants \[WORKLOAD:\]NAME=INTEGER, got 'batch=x'"):
        runner.size_overrides(["batch=x"], ["cnn"], tiny=False)
    with pytest.raises(ValueError, match="workload 'lstm' is not among"):
        runner.size_overrides(["lstm:time=9"], ["cnn"], tiny=False)


def test_variants_alternate_and_options_are_checked():
    assert [runner.rotated(["a", "b", "c"], r) for r in range(3)] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    with pytest.raises(SystemExit):
        runner.parse_args(["--variants", "medjax,tensorflow"])
    with pytest.raises(ValueError, match="unknown workload"):
        runner.parse_args(["--workloads", "gru"])


def test_environment_is_the_same_for_both_frameworks(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_cpu_foo=1")
    env = runner.child_environment(malloc_tuning=True)
    assert env["MALLOC_MMAP_THRESHOLD_"] == "2000000000" and env["MALLOC_TRIM_THRESHOLD_"] == "20000000000"
    assert env["MALLOC_ARENA_MAX"] == "1"  # without one arena the thresholds miss XLA's worker threads
    assert env["XLA_FLAGS"] == "--xla_cpu_foo=1"  # the test suite's fake devices do not leak into a benchmark
    assert "MALLOC_MMAP_THRESHOLD_" not in runner.child_environment(malloc_tuning=False)


def test_growth_plots_are_written(tmp_path):
    points = [{"workload": "lstm", "axis": axis, "value": v, "variant": variant, "status": "ok",
               "median_ms": v * k, "p10_ms": v * k * 0.9, "p90_ms": v * k * 1.1}
              for axis in ("batch", "time") for v in (16, 32, 64) for variant, k in (("medjax", 1.0), ("torch", 2.0))]
    written = plots.draw_growth(points, tmp_path, {"lstm": "tutorial LSTM"})
    assert sorted(p.name for p in written) == ["growth-lstm-batch.png", "growth-lstm-time.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


@pytest.mark.torch
def test_runner_writes_json_and_table(tmp_path, capsys):
    pytest.importorskip("torch")
    code = runner.main(["--workloads", "attention", "--tiny", "--variants", "medjax,torch", "--repeats", "1",
                        "--steps", "2", "--warmup", "0", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    table = (run_dir / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| tutorial attention |"))
    assert "batch 4, time 6" in row and "| yes (Δ ≤" in row
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [env["MALLOC_MMAP_THRESHOLD_"] for env in summary["env"]] == ["2000000000"]  # one environment for both
    assert set(summary["workloads"]["attention"]["variants"]) == {"medjax", "torch"}
    records = sorted(p.name for p in (run_dir / "runs").iterdir())
    assert records == ["attention-main-prepare.json", "attention-medjax-r0.json", "attention-torch-r0.json"]
    assert json.loads((run_dir / "runs" / "attention-torch-r0.json").read_text())["threads"] >= 1
    assert "`python -m benchmarks --workloads attention --tiny" in (run_dir / "report.md").read_text()
    assert not list((run_dir / "start").glob("*.npz"))
    # The report can be rebuilt from the run folder's files alone, to the same table.
    (run_dir / "table.md").unlink()
    assert runner.main(["--report", str(run_dir)]) == 0
    assert (run_dir / "table.md").read_text() == table


def test_contention_sampler_counts_only_other_jobs():
    import time

    from benchmarks import measure

    assert measure.own_running_threads() >= 1  # this thread, reading its own state
    with measure.ContentionSampler(interval_s=0.05) as sampler:
        time.sleep(0.5)
    summary = sampler.summary()
    assert summary["samples"] >= 5
    assert 0 <= summary["others_runnable_median"] <= summary["others_runnable_max"]
