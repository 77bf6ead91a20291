"""TensorBoard event files: what a run logs, read back from the files, and curves that survive a resume."""

from __future__ import annotations

import json

import numpy as np

from medjax.train import loop
from medjax.train.tensorboard import EventLog, read_events, read_scalars


def test_a_run_logs_steps_epochs_test_and_config(tiny_task, tiny_config, tmp_path):
    task, config = tiny_task(), tiny_config(tmp_path, log_every=2)
    results = loop.train(task, config, "blobs")
    scalars = read_scalars(tmp_path / "tensorboard")
    # 44 examples, batch 8: 6 steps an epoch, 18 in all; every 2nd step logged.
    assert [step for step, _ in scalars["train/loss"]] == list(range(2, 19, 2))
    assert {"train/lr", "train/grad_norm", "train/param_norm"} <= set(scalars)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # Event files hold float32: values agree to its rounding.
    assert [s for s, _ in scalars["val/accuracy"]] == [line["step"] for line in lines]
    np.testing.assert_allclose([v for _, v in scalars["val/accuracy"]], [line["val_accuracy"] for line in lines],
                               rtol=1e-6)
    np.testing.assert_allclose([v for _, v in scalars["epoch/train_loss"]], [line["train_loss"] for line in lines],
                               rtol=1e-6)
    assert scalars["test/accuracy"] == [(18, np.float32(results["test_accuracy"]))]
    texts = [v for e in read_events(tmp_path / "tensorboard") for v in e.summary.value if v.tag.startswith("config")]
    assert texts and b'"lr": 0.05' in texts[0].tensor.string_val[0]


def test_resumed_curves_have_no_duplicated_or_missing_steps(tiny_task, tiny_config, tmp_path):
    task = tiny_task()
    whole = tiny_config(tmp_path / "whole", log_every=1)
    loop.train(task, whole, "blobs")
    config = tiny_config(tmp_path / "cut", log_every=1)
    assert loop.train(task, config, "blobs", stop_after_epoch=1) is None
    # As if killed during epoch 2 after logging steps 7-9 that the checkpoint of epoch 1 (step 6) does not hold.
    extra = EventLog(tmp_path / "cut" / "tensorboard", resume_step=10**9)
    extra.scalars(7, {"loss": -1.0}, "train")
    extra.scalars(9, {"loss": -1.0}, "train")
    extra.close()
    loop.train(task, config, "blobs")
    resumed, uninterrupted = read_scalars(tmp_path / "cut" / "tensorboard"), read_scalars(tmp_path / "whole" /
                                                                                          "tensorboard")
    assert sorted(resumed) == sorted(uninterrupted)
    for tag, points in uninterrupted.items():
        assert [s for s, _ in resumed[tag]] == [s for s, _ in points], tag
        np.testing.assert_allclose([v for _, v in resumed[tag]], [v for _, v in points], rtol=1e-5, err_msg=tag)


def test_a_record_cut_by_a_killed_write_is_dropped(tmp_path):
    log = EventLog(tmp_path, 0)
    log.scalars(1, {"loss": 0.5}, "train")
    log.close()
    path = next(tmp_path.glob("events.out.tfevents.*"))
    path.write_bytes(path.read_bytes() + b"\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00half")
    assert read_scalars(tmp_path) == {"train/loss": [(1, 0.5)]}
