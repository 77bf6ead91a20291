"""ECG readers, beat windows, RR features, labels and the split by record, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from conftest import data_dir
from medjax.data import ecg
from medjax.errors import DataError, MissingPath
from tests.cli.cli_data import ecg_record


def test_wfdb_reader_keeps_beats_drops_rhythm_annotations_and_flags_pvcs(tmp_path):
    path, digital, beats, symbols = ecg_record(tmp_path)
    record = ecg.read_wfdb(path)
    np.testing.assert_array_equal(record.beats, beats)  # the "+" rhythm annotation is not a beat
    assert record.symbols == symbols and record.fs == 360.0 and record.name == "900"
    np.testing.assert_array_equal(record.is_pvc, [s == "V" for s in symbols])
    np.testing.assert_allclose(record.signal, digital / 200.0, atol=1e-6)
    assert ecg.read_record(f"{path}.hea").beats.size == beats.size


def test_windows_are_the_normalised_samples_around_each_r_peak(tmp_path):
    path, digital, beats, _ = ecg_record(tmp_path)
    got = ecg.cut_beats(ecg.read_wfdb(path), rate=360.0, before=0.25, after=0.45, baseline=False)
    x = digital / 200.0
    normalised = (x - np.median(x)) / x.std()
    inside = (beats - 90 >= 0) & (beats + 161 < x.size)
    np.testing.assert_array_equal(got.kept, inside)
    expected = np.stack([normalised[r - 90:r + 162] for r in beats[inside]])
    assert got.windows.shape == (inside.sum(), 252)
    np.testing.assert_allclose(got.windows, expected, atol=1e-5)


def test_windows_of_a_record_at_another_rate_are_resampled_by_interpolation():
    # A ramp at 250 Hz read at 500 Hz: linear interpolation of a line is exact, so every value is known.
    signal = np.arange(5000, dtype=np.float32) * 0.001
    record = ecg.Record("r", "r", signal, 250.0, np.array([1000, 2500]), None, np.zeros(2, bool))
    got = ecg.cut_beats(record, rate=500.0, before=0.2, after=0.4, baseline=False)
    positions = np.array([1000, 2500])[:, None] + np.arange(-100, 200)[None, :] * 0.5  # samples at 250 Hz
    expected = (positions * 0.001 - np.median(signal)) / signal.std()
    np.testing.assert_allclose(got.windows, expected, rtol=1e-5, atol=1e-5)


def test_rr_features_by_hand():
    beats = np.array([0, 360, 720, 900, 1440])  # RR 1.0, 1.0, 0.5, 1.5 s at 360 Hz
    rr = ecg.rr_features(beats, 360.0, local=2)
    np.testing.assert_allclose(rr[:, 0], [1.0, 1.0, 1.0, 0.5, 1.5])  # previous (the first beat takes its next)
    np.testing.assert_allclose(rr[:, 1], [1.0, 1.0, 0.5, 1.5, 1.5])  # next (the last beat takes its previous)
    # Local mean of the intervals either side of each beat (clipped at the ends): beat 2 (720) has 1.0 and 0.5.
    np.testing.assert_allclose(rr[:, 2], [1.0, 1.0, 0.75, 1.0, 1.5])
    np.testing.assert_allclose(rr[:, 3], rr[:, 0] / rr[:, 2], rtol=1e-6)


def test_aami_classes_from_mitbih_symbols(tmp_path):
    path, _, _, symbols = ecg_record(tmp_path, symbols=("N", "L", "R", "e", "j", "A", "a", "J", "S", "V", "E", "F",
                                                         "/", "f", "Q"))
    labels = ecg.beat_labels(ecg.read_wfdb(path), "aami")
    by_hand = {"N": 0, "L": 0, "R": 0, "e": 0, "j": 0, "A": 1, "a": 1, "J": 1, "S": 1, "V": 2, "E": 2, "F": 3,
               "/": 4, "f": 4, "Q": 4}
    np.testing.assert_array_equal(labels, [by_hand[s] for s in symbols])
    np.testing.assert_array_equal(ecg.beat_labels(ecg.read_wfdb(path), "pvc"), [s == "V" for s in symbols])


def test_split_by_record_follows_de_chazal_and_never_shares_a_patient():
    names = ["100", "105", "106", "108", "114", "116", "119", "121", "123", "200"]
    parts = ecg.split_records(names, val=("108", "116"))
    assert parts == {"train": ("106", "114", "119"), "val": ("108", "116"),
                     "test": ("100", "105", "121", "123", "200")}
    other = [f"p{i}" for i in range(10)]
    seeded = ecg.split_records(other, val=(), seed=3)
    assert seeded == ecg.split_records(other, val=(), seed=3) != ecg.split_records(other, val=(), seed=4)
    flat = [n for names in seeded.values() for n in names]
    assert sorted(flat) == sorted(other) and len(set(flat)) == len(flat)


def test_missing_header_truncated_signal_and_foreign_annotations_are_named(tmp_path):
    path, *_ = ecg_record(tmp_path / "a")
    with pytest.raises(MissingPath, match="nowhere.hea"):
        ecg.read_wfdb(tmp_path / "a" / "nowhere")
    dat = tmp_path / "a" / "900.dat"
    dat.write_bytes(dat.read_bytes()[:1001])
    with pytest.raises(DataError, match="900.hea: expected the signal file to hold the samples"):
        ecg.read_wfdb(path)
    # The annotation file of another record, whose beats fall between this record's QRS complexes.
    mine, _, beats, _ = ecg_record(tmp_path / "b", seed=1)
    wfdb.wrann("900", "atr", beats[:-1] + 144, symbol=["N"] * (beats.size - 1), write_dir=str(tmp_path / "b"))
    with pytest.raises(DataError, match="annotation file of another record"):
        ecg.read_wfdb(mine)


def test_npz_without_its_keys_is_refused(tmp_path):
    path = tmp_path / "mitdb_1.npz"
    np.savez(path, ecg_adu=np.zeros(10, np.int16))
    with pytest.raises(DataError, match="mitdb_1.npz: expected the keys .* got no adu_per_mv"):
        ecg.read_npz(path)


def test_the_shared_copy_matches_its_readme():
    records = ecg.read_folder(data_dir("mitdb-pvc-12"))
    assert [r.name for r in records][:3] == ["100", "102", "104"] and len(records) == 12
    assert sum(r.beats.size for r in records) == 25311 and sum(int(r.is_pvc.sum()) for r in records) == 2011
    assert all(r.fs == 360.0 and r.signal.size == 650000 for r in records)
    # Every record's beats sit on its QRS complexes; another record's beats do not.
    assert min(ecg.qrs_contrast(r.signal, r.beats, r.fs) for r in records) > 2.5
    assert ecg.qrs_contrast(records[0].signal, records[5].beats, 360.0) < 1.5
