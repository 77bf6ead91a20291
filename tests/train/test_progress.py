"""The plain lines a run prints: every log_every steps and at the end of each epoch."""

import io

from medjax.train.progress import ProgressReporter, format_metrics


def test_plain_lines_every_log_every_steps_and_per_epoch():
    stream = io.StringIO()
    reporter = ProgressReporter(epochs=2, steps_per_epoch=5, log_every=2, show_bar=False, stream=stream)
    reporter.start_epoch(1)
    for step in range(1, 6):
        reporter.step(step, loss=1.0 / step, lr=0.001)
    reporter.end_epoch({"epoch": 1, "train_loss": 0.123456, "val_auc": 0.9})
    assert stream.getvalue().splitlines() == [
        "step 2  loss 0.5  lr 0.001",
        "step 4  loss 0.25  lr 0.001",
        "epoch 1  train_loss 0.1235  val_auc 0.9",
    ]


def test_the_bar_counts_steps_and_closes():
    reporter = ProgressReporter(epochs=1, steps_per_epoch=3, log_every=0, show_bar=True, stream=io.StringIO())
    reporter.start_epoch(1)
    reporter.step(1, 0.5, 0.1)
    assert reporter._bar.n == 1 and reporter._bar.total == 3
    reporter.close()
    assert reporter._bar is None
    assert format_metrics({"a": 1, "b": 0.000123456}) == "a 1  b 0.0001235"
