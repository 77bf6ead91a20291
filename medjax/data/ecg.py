"""ECG records and their beats: WFDB records (PhysioNet) and the shared `.npz` copy of MIT-BIH, cut into beat windows.

A record is one ECG lead in millivolts with its sampling rate and the annotated beats (sample index and MIT-BIH beat
symbol, or only a PVC flag in the shared copy). A folder of records is a data set: `read_folder` reads every
``*.npz`` or every WFDB record (``<name>.hea`` + its signal file + ``<name>.atr``) in it.

Beats are windows around each annotated R peak (0.25 s before, 0.45 s after by default), resampled to one rate by
linear interpolation when records differ, from a signal whose baseline wander was removed with de Chazal et al.'s two
median filters (200 ms, then 600 ms) and which was then scaled by the record's standard deviation. RR intervals
(previous, next, and the local mean of the 10 surrounding) are the timing features of the ECG literature (de Chazal
et al. 2004, IEEE TBME 51:1196).

Labels are the AAMI EC57 classes N, S, V, F, Q mapped from MIT-BIH beat symbols, or V against non-V where only PVC
flags exist. The inter-patient split is by record (no patient on both sides): de Chazal's DS1 (train) and DS2 (test).

Example:
  >>> records = read_folder("../shared/data/mitdb-pvc-12")
  >>> beats = cut_beats(records[0], rate=360.0)
  >>> beats.windows.shape, beats.rr.shape           # (f32[beats, 252], f32[beats, 4])
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import zipfile
import zlib
from typing import Sequence

import numpy as np

from medjax.errors import ConfigError, DataError, MissingPath, where

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
PVC_CLASSES = ("non-V", "V")
# AAMI EC57 / de Chazal et al. 2004, Table I. "?" (unclassified, kept by the shared copy) counts as Q.
AAMI_OF_SYMBOL = {**dict.fromkeys("NLRej", "N"), **dict.fromkeys("AaJS", "S"), **dict.fromkeys("VE", "V"),
                  "F": "F", **dict.fromkeys("/fQ?", "Q")}
# de Chazal et al. 2004's inter-patient split of the 44 non-paced MIT-BIH records.
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205", "207",
       "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214", "219", "221",
       "222", "228", "231", "232", "233", "234")
# Paced records, which AAMI EC57 excludes.
PACED = ("102", "104", "107", "217")
_NPZ_KEYS = ("ecg_adu", "adu_per_mv", "fs", "r_peaks", "is_pvc")
# An annotation file of another record puts its beats where this signal has no QRS: the slope near the annotated
# beats is then no steeper than anywhere else. Real MIT-BIH records score 3-17 (median of peak |slope| within 100 ms
# of a beat over the same at random places); shuffled beats score about 1.
_MIN_QRS_CONTRAST = 1.8
# Beat windows may take at most this share of the machine's physical memory (`check_window_memory`).
_MEMORY_SHARE = 0.5
# Beats interpolated at once by `cut_beats` (its float64 temporaries stay this many window rows).
_CHUNK_ELEMENTS = 1 << 22


@dataclasses.dataclass(frozen=True)
class Record:
    """One ECG lead and its annotated beats.

    Attributes:
      name: the record's name (``"100"``).
      source: the file it came from (named in errors).
      signal: f32[samples] in millivolts.
      fs: sampling rate in Hz.
      beats: int64[beats] sample index of each annotated beat (R peak), ascending.
      symbols: the MIT-BIH beat symbol of each beat, or None where only PVC flags exist.
      is_pvc: bool[beats], True on premature ventricular contractions (symbol ``V``).
      annotated: the beats come from annotations (False: found by a QRS detector, with no labels).
    """

    name: str
    source: str
    signal: np.ndarray
    fs: float
    beats: np.ndarray
    symbols: tuple[str, ...] | None
    is_pvc: np.ndarray
    annotated: bool = True


@dataclasses.dataclass(frozen=True)
class Beats:
    """The beats of one record kept for learning (windows inside the signal).

    Attributes:
      windows: f32[beats, window] the normalised signal around each R peak.
      rr: f32[beats, 4] previous RR, next RR, local mean RR (s) and previous RR over the local mean.
      sample: int64[beats] each beat's R-peak sample index in its record.
      kept: bool[annotated beats] which of the record's beats these are (edge windows are dropped).
    """

    windows: np.ndarray
    rr: np.ndarray
    sample: np.ndarray
    kept: np.ndarray


def read_npz(path: str | pathlib.Path) -> Record:
    """A record of the shared MIT-BIH copy (``mitdb_<rec>.npz``: ``ecg_adu``, ``adu_per_mv``, ``fs``, ``r_peaks``,
    ``is_pvc``), loaded without pickles."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingPath(path, "expected an ECG record (.npz), found no such file")
    try:
        saved = np.load(path, allow_pickle=False)
        if not hasattr(saved, "files"):  # one array: a .npy file under an .npz name
            raise DataError(path, "expected an .npz archive, got a single .npy array")
        with saved:
            keys = saved.files
            missing = [key for key in _NPZ_KEYS if key not in keys]
            if missing:
                raise DataError(path, f"expected the keys {', '.join(_NPZ_KEYS)}, got no {', '.join(missing)}")
            arrays = {key: saved[key] for key in _NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        if isinstance(err, DataError):
            raise
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(path, f"expected an .npz archive, got truncated or unreadable contents ({detail})") from None
    for key in _NPZ_KEYS:
        array = arrays[key]
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise DataError(f"{path}: {key}", f"expected numbers, got an array of {array.dtype}")
    for key in ("adu_per_mv", "fs"):
        if arrays[key].size != 1 or not np.isfinite(arrays[key]).all() or float(arrays[key].reshape(())) <= 0:
            raise DataError(f"{path}: {key}", f"expected one positive number, got {arrays[key].reshape(-1)[:3]} of "
                                              f"shape {arrays[key].shape}")
    signal = arrays["ecg_adu"].astype(np.float32) / np.float32(arrays["adu_per_mv"].reshape(()))
    beats, is_pvc = arrays["r_peaks"].astype(np.int64), arrays["is_pvc"].astype(bool)
    if beats.shape != is_pvc.shape:
        raise DataError(path, f"expected one is_pvc flag per r_peak, got {is_pvc.size} flags for {beats.size} peaks")
    name = path.stem.removeprefix("mitdb_")
    return _checked(Record(name, str(path), signal, float(arrays["fs"].reshape(())), beats, None, is_pvc))


def header_rate(header: str | pathlib.Path) -> float | None:
    """The sampling frequency that a WFDB header's record line gives (its third field, ``fs[/counter[(base)]]``), or
    None where the line has none (WFDB then means 250 Hz), once the header is seen to hold what wfdb needs.

    Raises:
      medjax.errors.DataError: a header with no record line, a signal count that is no positive integer, fewer
        signal lines than that count, or a frequency that is not a positive number (wfdb itself would read ``abc``
        as 250 Hz), naming the header's line.
    """
    header = pathlib.Path(header)
    lines = [(number, line.split("#", 1)[0].strip())
             for number, line in enumerate(header.read_bytes().decode("latin-1").splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        raise DataError(header, "expected a WFDB record line 'name signals [frequency [samples]]', got an empty "
                                "header")
    number, line = lines[0]
    fields = line.split()
    if len(fields) < 2 or not fields[1].isdigit() or int(fields[1]) < 1:
        raise DataError(where(header, number), f"expected a WFDB record line 'name signals [frequency [samples]]' "
                                               f"with at least one signal, got {line[:60]!r}")
    signals = int(fields[1])
    if "/" not in fields[0]:  # a single-segment record: one line per signal follows (multi-segment: one per segment)
        described = [n for n, text in lines[1:] if len(text.split()) >= 2]
        if len(described) < signals:
            raise DataError(where(header, number), f"expected {signals} signal line(s) after the record line, got "
                                                   f"{len(described)}")
    if len(fields) < 3:
        return None
    frequency = fields[2].split("/", 1)[0]
    try:
        rate = float(frequency)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise DataError(where(header, number), f"expected a positive sampling frequency in Hz as the record "
                                               f"line's third field, got {fields[2][:40]!r}")
    return rate


def read_wfdb(path: str | pathlib.Path, annotator: str = "atr", detect_missing_annotations: bool = False) -> Record:
    """A WFDB record's first signal and its beat annotations, through the ``wfdb`` package.

    Args:
      path: the record without extension (``mitdb/100``) or its ``.hea`` file; any format and rate wfdb reads.
      annotator: the annotation file's extension (``atr``: MIT-BIH's reference beat labels).
      detect_missing_annotations: with no annotation file, find the beats with wfdb's XQRS detector (unlabelled)
        instead of failing.

    Raises:
      medjax.errors.MissingPath: no ``.hea`` or no annotation file.
      medjax.errors.MissingPath: the signal file the header names is missing (naming it).
      medjax.errors.DataError: a header whose sampling frequency is not a positive number, a signal file shorter
        than its header says, or annotations that do not belong to this signal (past its end, or not on its QRS
        complexes).
    """
    import wfdb
    from wfdb.io.header import HeaderSyntaxError

    base = pathlib.Path(path)
    base = base.with_suffix("") if base.suffix in (".hea", ".dat", f".{annotator}") else base
    header, annotations = base.with_name(base.name + ".hea"), base.with_name(f"{base.name}.{annotator}")
    detect = detect_missing_annotations and not annotations.is_file()
    for needed, what in ((header, "a WFDB header"), (annotations, f"its beat annotations (.{annotator})")):
        if not needed.is_file() and not (detect and needed == annotations):
            raise MissingPath(needed, f"expected {what} for record {base}, found no such file")
    header_rate(header)
    try:
        record = wfdb.rdrecord(str(base), channels=[0], physical=True)
    except (IndexError, HeaderSyntaxError, UnicodeDecodeError) as err:
        raise DataError(header, f"expected a WFDB header, got unreadable contents ({err})") from None
    except ValueError as err:
        raise DataError(header, f"expected the signal file to hold the samples the header lists, got a shorter or "
                                f"damaged file ({err})") from None
    except FileNotFoundError as err:
        missing = err.filename or header
        raise MissingPath(missing, f"expected the signal file named in {header}, found no such file") from None
    if record.p_signal is None or record.p_signal.ndim != 2 or record.p_signal.shape[0] == 0:
        raise DataError(header, "expected a signal of at least one sample, got none")
    signal = np.nan_to_num(record.p_signal[:, 0].astype(np.float32))
    if detect:
        beats = detect_beats(signal, float(record.fs))
        return _checked(Record(base.name, str(header), signal, float(record.fs), beats, None,
                               np.zeros(beats.size, bool), annotated=False))
    try:
        notes = wfdb.rdann(str(base), annotator)
    except (ValueError, IndexError) as err:
        raise DataError(annotations, f"expected a WFDB annotation file, got unreadable contents ({err})") from None
    is_beat = np.array([symbol in AAMI_OF_SYMBOL for symbol in notes.symbol], bool)
    symbols = tuple(s for s, b in zip(notes.symbol, is_beat) if b)
    beats = np.asarray(notes.sample, np.int64)[is_beat]
    checked = Record(base.name, str(annotations), signal, float(record.fs), beats, symbols,
                     np.array([s == "V" for s in symbols], bool))
    return _checked(checked, check_alignment=True)


def read_record(path: str | pathlib.Path, detect_missing_annotations: bool = False) -> Record:
    """`read_npz` for an ``.npz`` file, `read_wfdb` otherwise (a record path without extension, or its ``.hea``)."""
    if str(path).endswith(".npz"):
        return read_npz(path)
    return read_wfdb(path, detect_missing_annotations=detect_missing_annotations)


def detect_beats(signal: np.ndarray, fs: float) -> np.ndarray:
    """int64[beats]: R peaks found by wfdb's XQRS detector, for a record without beat annotations."""
    from wfdb import processing

    found = np.unique(processing.xqrs_detect(sig=signal.astype(np.float64), fs=fs, verbose=False))
    if found.size == 0:
        raise DataError(None, "expected QRS complexes in the signal, found none (XQRS detector)")
    return found.astype(np.int64)


def read_folder(folder: str | pathlib.Path) -> list[Record]:
    """Every record of a folder: its ``*.npz`` files, or else its WFDB records (one per ``.hea``), sorted by name."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise MissingPath(folder, "expected a folder of ECG records (.npz, or WFDB .hea/.dat/.atr), found none")
    npz, headers = sorted(folder.glob("*.npz")), sorted(folder.glob("*.hea"))
    if not npz and not headers:
        raise DataError(folder, "expected ECG records (*.npz, or WFDB *.hea with .dat and .atr), found none")
    return [read_npz(p) for p in npz] if npz else [read_wfdb(p) for p in headers]


def _checked(record: Record, check_alignment: bool = False) -> Record:
    place = record.source
    if record.signal.ndim != 1 or record.signal.size == 0:
        raise DataError(place, f"expected a non-empty single-lead signal, got shape {record.signal.shape}")
    if not record.fs > 0:
        raise DataError(place, f"expected a positive sampling rate, got {record.fs}")
    if record.beats.size == 0:
        raise DataError(place, "expected annotated beats, got none")
    if np.any(np.diff(record.beats) <= 0):
        raise DataError(place, "expected beat annotations in increasing sample order, got them out of order")
    if record.beats[0] < 0 or record.beats[-1] >= record.signal.size:
        raise DataError(place, f"expected beats within the signal's {record.signal.size} samples, got one at "
                               f"sample {record.beats[-1]}: is this the annotation file of another record?")
    if check_alignment and record.beats.size >= 20:
        contrast = qrs_contrast(record.signal, record.beats, record.fs)
        if contrast < _MIN_QRS_CONTRAST:
            raise DataError(place, f"expected beat annotations on this signal's QRS complexes, got beats where the "
                                   f"signal is no steeper than elsewhere (contrast {contrast:.2f} < "
                                   f"{_MIN_QRS_CONTRAST}): is this the annotation file of another record?")
    return record


def qrs_contrast(signal: np.ndarray, beats: np.ndarray, fs: float) -> float:
    """How much steeper the signal is within 100 ms of the annotated beats than at evenly spread places.

    The median over beats of the largest |slope| within ±100 ms, over the same median at as many positions spread
    evenly over the record: about 1 for annotations that belong to another signal.
    """
    slope = np.abs(np.diff(signal, append=signal[-1]))
    half = max(int(0.1 * fs), 1)

    def peak_slope(centres: np.ndarray) -> float:
        lo, hi = np.clip(centres - half, 0, slope.size), np.clip(centres + half + 1, 0, slope.size)
        return float(np.median([slope[a:b].max() for a, b in zip(lo, hi)]))

    spread = np.linspace(half, slope.size - half - 1, num=beats.size).astype(np.int64)
    return peak_slope(beats) / max(peak_slope(spread), 1e-12)


def remove_baseline(signal: np.ndarray, fs: float) -> np.ndarray:
    """The signal minus its baseline wander: de Chazal et al.'s 200 ms then 600 ms median filters."""
    from scipy.ndimage import median_filter

    baseline = signal
    for seconds in (0.2, 0.6):
        width = int(round(seconds * fs)) | 1  # odd, so the filter is centred
        baseline = median_filter(baseline, width, mode="nearest")
    return signal - baseline


def rr_features(beats: np.ndarray, fs: float, local: int = 10) -> np.ndarray:
    """f32[beats, 4]: previous RR, next RR, the mean of the ``local`` RR intervals around the beat (s), and the
    previous RR over that local mean (below 1 for a premature beat).

    The first beat's previous RR is its next, the last beat's next RR is its previous; a record of one beat gets 1 s.
    """
    if beats.size < 2:
        return np.tile(np.array([[1.0, 1.0, 1.0, 1.0]], np.float32), (beats.size, 1))
    rr = np.diff(beats).astype(np.float64) / fs
    previous = np.concatenate([rr[:1], rr])
    following = np.concatenate([rr, rr[-1:]])
    # The local mean of interval i: RR intervals i - local/2 ... i + local/2 - 1 (clipped at the record's ends).
    sums = np.concatenate([[0.0], np.cumsum(rr)])
    index = np.arange(beats.size)
    lo, hi = np.clip(index - local // 2, 0, rr.size), np.clip(index + local // 2, 1, rr.size)
    lo = np.minimum(lo, hi - 1)
    mean = (sums[hi] - sums[lo]) / (hi - lo)
    return np.stack([previous, following, mean, previous / mean], axis=1).astype(np.float32)


def window_offsets(rate: float, before: float, after: float) -> np.ndarray:
    """The window's sample times relative to the R peak, in seconds: ``-before`` to ``after`` at ``rate`` Hz."""
    first, last = -int(round(before * rate)), int(round(after * rate))
    return np.arange(first, last) / rate


def physical_memory() -> int:
    """Bytes of physical memory of this machine (0 where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def window_bytes(beats: int, rate: float, before: float, after: float) -> int:
    """Bytes of ``beats`` float32 windows of `window_offsets` (``beats × window samples × 4``)."""
    return int(beats) * window_offsets(rate, before, after).size * 4


def check_window_memory(beats: int, rate: float, before: float, after: float) -> None:
    """Refuses beat windows that would take more than half of the machine's physical memory.

    Call it with the beats of every record when they are cut and then kept together (the data set's total).

    Raises:
      medjax.errors.ConfigError: naming ``--before``/``--after`` and the gigabytes the windows would need.
    """
    needed, memory = window_bytes(beats, rate, before, after), physical_memory()
    if memory and needed > _MEMORY_SHARE * memory:
        samples = window_offsets(rate, before, after).size
        raise ConfigError("--before/--after", f"expected beat windows that fit in memory, got {before:g} s before "
                                              f"and {after:g} s after the R peak: {samples} samples at {rate:g} Hz × "
                                              f"{beats} beats = {needed / 1e9:.1f} GB, more than half of this "
                                              f"machine's {memory / 1e9:.1f} GB")


def cut_beats(record: Record, rate: float = 360.0, before: float = 0.25, after: float = 0.45,
              baseline: bool = True) -> Beats:
    """The record's beat windows at ``rate`` Hz, normalised, with their RR features.

    The signal is read at the R peak's time plus `window_offsets` by linear interpolation, which is the identity at
    integer samples when ``rate`` equals the record's rate. Beats whose window would leave the signal are dropped.

    Args:
      record: a `Record`.
      rate: the common sampling rate of the windows (Hz).
      before: seconds before the R peak.
      after: seconds after the R peak (the window is ``round(before·rate) + round(after·rate)`` samples).
      baseline: remove baseline wander first (`remove_baseline`).

    Returns:
      `Beats`; the signal is scaled by its standard deviation over the whole record (after baseline removal).

    Raises:
      medjax.errors.ConfigError: a window (``before``, ``after``) so long that this record's windows would take
        more than half of the machine's memory (`check_window_memory`).
    """
    offsets = window_offsets(rate, before, after)
    if offsets.size == 0:
        raise ConfigError("--before/--after", f"expected a window of at least one sample, got {before:g} s before "
                                              f"and {after:g} s after the R peak at {rate:g} Hz")
    peak_times = record.beats / record.fs
    kept = (peak_times + offsets[0] >= 0) & (peak_times + offsets[-1] <= (record.signal.size - 1) / record.fs)
    check_window_memory(int(kept.sum()), rate, before, after)
    signal = record.signal.astype(np.float64)
    if baseline:
        signal = remove_baseline(signal, record.fs)
    signal = (signal - np.median(signal)) / max(float(signal.std()), 1e-8)
    centres = peak_times[kept]
    windows = np.empty((centres.size, offsets.size), np.float32)
    step = max(_CHUNK_ELEMENTS // offsets.size, 1)
    positions = np.arange(signal.size)
    for start in range(0, centres.size, step):  # float64 temporaries of a chunk only, written into float32 windows
        times = centres[start:start + step, None] + offsets[None, :]
        windows[start:start + step] = np.interp(times * record.fs, positions, signal)
    rr = rr_features(record.beats, record.fs)[kept]
    return Beats(windows, rr, record.beats[kept], kept)


def beat_labels(record: Record, scheme: str) -> np.ndarray:
    """int32[beats]: AAMI class indices (``scheme="aami"``, `AAMI_CLASSES`) or 1 for V, 0 otherwise (``"pvc"``)."""
    if scheme == "pvc":
        return record.is_pvc.astype(np.int32)
    if record.symbols is None:
        raise DataError(record.source, "expected MIT-BIH beat symbols for the AAMI classes, got only PVC flags; use "
                                       "--labels pvc")
    return np.array([AAMI_CLASSES.index(AAMI_OF_SYMBOL[s]) for s in record.symbols], np.int32)


def split_records(names: Sequence[str], val: Sequence[str], seed: int = 0) -> dict[str, tuple[str, ...]]:
    """The inter-patient split by record: DS1 trains, DS2 tests (de Chazal et al. 2004), ``val`` is held out of
    train for model selection.

    Records named in neither list (another database) are split 60/20/20 by record, seeded; ``val`` records absent
    from the data are ignored, and with none present the last DS1 record validates.

    Returns:
      ``{"train" | "val" | "test": record names}``, disjoint.
    """
    names = list(names)
    test = [n for n in names if n in DS2]
    train = [n for n in names if n in DS1]
    if not test or not train:
        order = np.random.default_rng(seed).permutation(len(names))
        shuffled = [names[i] for i in order]
        n_test, n_val = max(round(0.2 * len(names)), 1), max(round(0.2 * len(names)), 1)
        test, held, train = shuffled[:n_test], shuffled[n_test:n_test + n_val], shuffled[n_test + n_val:]
    else:
        held = [n for n in train if n in val] or train[-1:]
        train = [n for n in train if n not in held]
    return {"train": tuple(sorted(train)), "val": tuple(sorted(held)), "test": tuple(sorted(test))}
