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


def ecg_record(folder, name: str = "900", fs: int = 360, seconds: float = 60.0, seed: int = 0,
               symbols: tuple[str, ...] = ("N", "N", "N", "V", "N", "A", "N", "F", "N", "/")):
    """Writes a WFDB record (``.hea``, ``.dat`` in format 16, ``.atr``) of a synthetic ECG and returns
    ``(path without extension, digital signal int16[samples], beat samples int64[beats], beat symbols)``.

    Beats every 0.8 s (±5%), each a narrow 1 mV spike (a wide negative one for V); the physical signal is the digital
    one over 200 ADC units per mV exactly. The annotation file also holds a rhythm annotation (``+``), which is no beat.
    """
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    beats = np.cumsum(rng.uniform(0.76, 0.84, int(seconds / 0.8) + 2) * fs).astype(np.int64)
    beats = beats[beats < n - fs // 2]
    labels = tuple(symbols[i % len(symbols)] for i in range(beats.size))
    t = np.arange(n)
    signal = np.zeros(n)
    for sample, symbol in zip(beats, labels):
        width, height = (0.03, -1.2) if symbol == "V" else (0.01, 1.0)
        signal += height * np.exp(-0.5 * ((t - sample) / (width * fs)) ** 2)
    digital = np.round((signal + 0.01 * rng.standard_normal(n)) * 200).astype(np.int16)
    wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["MLII"], d_signal=digital[:, None], fmt=["16"], adc_gain=[200.0],
                baseline=[0], write_dir=str(folder))
    samples = np.concatenate([[beats[0] - 10], beats])
    wfdb.wrann(name, "atr", samples, symbol=["+", *labels], aux_note=["(N", *[""] * beats.size],
               write_dir=str(folder))
    return folder / name, digital, beats, labels
