"""Small files shaped like the real data sets, for tests that run the command line as a user would."""

from __future__ import annotations

import numpy as np


def breastmnist(path, labels_high: int = 2, seed: int = 0):
    """Writes an .npz shaped like BreastMNIST (546/78/156 grey 28x28 images) whose label is learnable (a bright
    top-left corner means class 1); labels at or above 2 come only when ``labels_high`` asks for them."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 546), ("val", 78), ("test", 156)):
        labels = rng.integers(0, labels_high, (n, 1)).astype(np.int64)
        images = rng.integers(0, 128, (n, 28, 28), dtype=np.uint8)
        images[labels[:, 0] == 1, :8, :8] += 120
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    np.savez(path, **arrays)
    return path
