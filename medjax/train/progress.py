"""What a run tells the person watching it: a progress bar per epoch and plain lines that survive in a log file.

The bar (tqdm, on stderr) shows the steps of the current epoch; every ``log_every`` steps a plain line with the
step, loss and learning rate goes to stdout, and every epoch ends with a line of its metrics. The plain lines are what
a batch job's log keeps; the bar is only for a terminal.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, TextIO

import tqdm


def format_metrics(values: Mapping[str, Any]) -> str:
    """``key value`` pairs on one line; floats with four significant digits."""
    parts = []
    for key, value in values.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


class ProgressReporter:
    """A progress bar over the steps of each epoch, plus periodic plain lines.

    Args:
      epochs: epochs in the run.
      steps_per_epoch: training steps per epoch (the bar's length).
      log_every: print a plain line every this many steps (0: only at the end of each epoch).
      show_bar: draw the tqdm bar.
      stream: where the plain lines go.
    """

    def __init__(self, epochs: int, steps_per_epoch: int, log_every: int, show_bar: bool, stream: TextIO | None = None):
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.log_every = log_every
        self.show_bar = show_bar
        self.stream = stream or sys.stdout
        self._bar: tqdm.tqdm | None = None

    def start_epoch(self, epoch: int) -> None:
        """Opens the bar for ``epoch`` (1-based)."""
        self.close()
        self._bar = tqdm.tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{self.epochs}",
            disable=not self.show_bar,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def step(self, step: int, loss: float, lr: float) -> None:
        """Reports one finished training step (global step number, 1-based)."""
        if self._bar is not None:
            self._bar.update(1)
        if self.log_every and step % self.log_every == 0:
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}", refresh=False)
            self.line(format_metrics({"step": step, "loss": loss, "lr": lr}))

    def end_epoch(self, record: Mapping[str, Any]) -> None:
        """Closes the epoch's bar and prints its metrics."""
        self.close()
        self.line(format_metrics(record))

    def line(self, text: str) -> None:
        """Prints a plain line without breaking the bar."""
        tqdm.tqdm.write(text, file=self.stream)
        self.stream.flush()

    def close(self) -> None:
        """Closes the bar, if open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
