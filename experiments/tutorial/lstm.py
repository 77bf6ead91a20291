"""The tutorial's LSTM, fixed and run through medjax: a 2-layer LSTM (input 10, hidden 32) → Linear(32→2) on the last
*valid* step of each variable-length sequence.

    python experiments/tutorial/lstm.py     # ~20 s on a 2-core CPU; the loss falls from ~0.69 to ~0.12

Sequences are 50 steps of 10 noise features, each with its own length (10–50, padded and masked); the label says
whether feature 0 sums to more than 0 over the valid steps, so the model must read the whole sequence and no padding.
The tutorial fed 2-D ``(64, 10)`` data to its LSTM; medjax asks for ``[batch, time, features]`` and says so.
"""

import numpy as np

from medjax.nn.recurrent import TutorialLSTMClassifier
from medjax.tutorial import sequence_program


def label(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """1 where feature 0 sums to more than 0 over the valid steps."""
    return x[:, :, 0].sum(axis=1) > 0


def main(argv=None) -> list[float]:
    return sequence_program(__doc__, TutorialLSTMClassifier(hidden=32, num_layers=2, num_classes=2), label, argv)


if __name__ == "__main__":
    main()
