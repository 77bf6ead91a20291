"""MedMNIST loader: every accepted layout, every rejected input with its message, and the MD5-verified download path
with the URL fetch mocked (no test touches the network)."""

import dataclasses
import hashlib
import io
import re
import urllib.error

import numpy as np
import pytest

from medjax.data import download, medmnist

BREAST_SIZES = {"train": 546, "val": 78, "test": 156}


def _arrays(sizes, side=28, channels=None, label_shape="flat", num_classes=2, seed=0):
    """Synthetic MedMNIST arrays: uint8 images and integer labels with the given split sizes."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in sizes.items():
        shape = (n, side, side) if channels is None else (n, side, side, channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        labels = (np.arange(n) % num_classes).astype(np.uint8)
        arrays[f"{split}_labels"] = {"flat": labels, "column": labels[:, None]}[label_shape]
    return arrays


def _write(path, arrays):
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def breast_npz(tmp_path):
    return _write(tmp_path / "breastmnist.npz", _arrays(BREAST_SIZES, label_shape="column"))


# --- the real copy ------------------------------------------------------------------------------------------------


@pytest.mark.data
def test_real_breastmnist_copy_loads_by_structure_not_md5(breastmnist_dir):
    path = breastmnist_dir / "breastmnist.npz"
    assert download.file_md5(path) != medmnist.DATASETS["breastmnist"].md5[28]  # the MD5 route would reject it
    for source in (breastmnist_dir, path):
        data = medmnist.load("breastmnist", data_dir=source)
        assert {s: len(data[s]) for s in medmnist.SPLITS} == BREAST_SIZES
        assert data["train"].images.shape == (546, 28, 28, 1) and data["train"].images.dtype == np.uint8
        # Label counts from the data's README: 0 = malignant, 1 = normal/benign.
        counts = {s: np.bincount(data[s].labels, minlength=2).tolist() for s in medmnist.SPLITS}
        assert counts == {"train": [147, 399], "val": [21, 57], "test": [42, 114]}


# --- accepted layouts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label_shape", ["flat", "column"])
@pytest.mark.parametrize("as_file", [False, True])
def test_folder_or_file_with_flat_or_column_labels(tmp_path, label_shape, as_file):
    arrays = _arrays(BREAST_SIZES, label_shape=label_shape)
    path = _write(tmp_path / "breastmnist.npz", arrays)
    data = medmnist.load("breastmnist", data_dir=path if as_file else tmp_path)
    for split in medmnist.SPLITS:
        np.testing.assert_array_equal(data[split].images[..., 0], arrays[f"{split}_images"])
        np.testing.assert_array_equal(data[split].labels, arrays[f"{split}_labels"].reshape(-1))
        assert data[split].labels.dtype == np.int32 and data[split].labels.shape == (BREAST_SIZES[split],)


def test_grayscale_with_channel_axis_and_other_size(tmp_path):
    arrays = _arrays(BREAST_SIZES, side=64, channels=1)
    _write(tmp_path / "breastmnist_64.npz", arrays)
    data = medmnist.load("breastmnist", size=64, data_dir=tmp_path)
    np.testing.assert_array_equal(data["val"].images, arrays["val_images"])


def test_rgb_multiclass(tmp_path):
    sizes = medmnist.DATASETS["retinamnist"].n_samples
    arrays = _arrays(sizes, channels=3, num_classes=5)
    data = medmnist.load("retinamnist", data_dir=_write(tmp_path / "any_name.npz", arrays))
    np.testing.assert_array_equal(data["test"].images, arrays["test_images"])
    assert data["test"].labels.max() == 4


def test_multilabel(tmp_path, monkeypatch):
    # ChestMNIST has 112k images; a registry entry with tiny splits exercises the same checks.
    small = {"train": 6, "val": 3, "test": 4}
    monkeypatch.setitem(medmnist.DATASETS, "chestmnist",
                        dataclasses.replace(medmnist.DATASETS["chestmnist"], n_samples=small))
    arrays = _arrays(small)
    rng = np.random.default_rng(0)
    for split, n in small.items():
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, 14), dtype=np.uint8)
    data = medmnist.load("chestmnist", data_dir=_write(tmp_path / "chestmnist.npz", arrays))
    np.testing.assert_array_equal(data["train"].labels, arrays["train_labels"])
    arrays["val_labels"][1, 3] = 2
    with pytest.raises(ValueError, match=r"val_labels: expected 0 or 1 \(multi-label\), got 2"):
        medmnist.load("chestmnist", data_dir=_write(tmp_path / "chestmnist.npz", arrays))
    arrays["val_labels"] = arrays["val_labels"][:, :13]
    with pytest.raises(ValueError, match=r"val_labels: expected shape \(3, 14\), got \(3, 13\)"):
        medmnist.load("chestmnist", data_dir=_write(tmp_path / "chestmnist.npz", arrays))


def test_registry_matches_medmnist_info():
    assert len(medmnist.DATASETS) == 12
    breast = medmnist.DATASETS["breastmnist"]
    assert breast.task == "binary-class" and breast.class_names == ("malignant", "normal, benign")
    assert breast.url(128) == "https://zenodo.org/records/10519652/files/breastmnist_128.npz?download=1"
    assert medmnist.DATASETS["chestmnist"].num_classes == 14
    assert medmnist.DATASETS["retinamnist"].task == "ordinal-regression"
    for entry in medmnist.DATASETS.values():
        assert entry.task in medmnist.TASK_TYPES and entry.n_channels in (1, 3)
        assert sorted(entry.md5) == list(medmnist.SIZES)
        assert all(len(md5) == 32 and int(md5, 16) >= 0 for md5 in entry.md5.values())


# --- rejected inputs ----------------------------------------------------------------------------------------------


def _reject(tmp_path, arrays, match, name="breastmnist"):
    path = _write(tmp_path / f"{name}.npz", arrays)
    with pytest.raises(ValueError, match=match) as err:
        medmnist.load(name, data_dir=path)
    assert str(path) in str(err.value)


def test_rejects_missing_key(tmp_path):
    arrays = _arrays(BREAST_SIZES)
    del arrays["val_labels"]
    _reject(tmp_path, arrays, r"missing key\(s\) val_labels")


def test_rejects_wrong_image_dtype(tmp_path):
    arrays = _arrays(BREAST_SIZES)
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    _reject(tmp_path, arrays, "train_images: expected uint8 pixels, got float32")


@pytest.mark.parametrize("shape, name", [((78, 28, 28, 3), "breastmnist"), ((78, 32, 32), "breastmnist"),
                                         ((120, 28, 28), "retinamnist")])
def test_rejects_wrong_image_shape(tmp_path, shape, name):
    arrays = _arrays(medmnist.DATASETS[name].n_samples, channels=None if name == "breastmnist" else 3)
    arrays["val_images"] = np.zeros(shape, np.uint8)
    _reject(tmp_path, arrays, "val_images: expected shape .* got " + re.escape(str(shape)), name=name)


def test_rejects_wrong_split_size(tmp_path):
    arrays = _arrays({**BREAST_SIZES, "test": 150})
    _reject(tmp_path, arrays, "test_images: expected 156 images \\(breastmnist's test split\\), got 150")


def test_rejects_labels_out_of_range_wrong_shape_or_dtype(tmp_path):
    arrays = _arrays(BREAST_SIZES)
    arrays["train_labels"] = arrays["train_labels"].copy()
    arrays["train_labels"][7] = 2
    _reject(tmp_path, arrays, r"train_labels: expected labels in \[0, 1\] for breastmnist, got 2")
    arrays["train_labels"] = np.full(546, -1, np.int8)
    _reject(tmp_path, arrays, r"train_labels: expected labels in \[0, 1\] for breastmnist, got -1")
    arrays["train_labels"] = np.zeros((546, 2), np.uint8)
    _reject(tmp_path, arrays, r"train_labels: expected shape \(546,\) or \(546, 1\), got \(546, 2\)")
    arrays["train_labels"] = np.zeros(546, np.float32)
    _reject(tmp_path, arrays, "train_labels: expected integer labels, got float32")


def test_rejects_truncated_and_corrupt_archives(tmp_path, breast_npz):
    raw = breast_npz.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"truncated.npz: truncated or corrupt zip archive"):
        medmnist.load("breastmnist", data_dir=truncated)
    # Same length, damaged bytes inside the first member's compressed data: the zip index still reads.
    corrupt = tmp_path / "corrupt.npz"
    damaged = bytearray(raw)
    damaged[2000:2400] = bytes(400)
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"corrupt.npz: truncated or corrupt"):
        medmnist.load("breastmnist", data_dir=corrupt)


def test_rejects_pickles_and_non_npz(tmp_path):
    arrays = _arrays(BREAST_SIZES)
    arrays["test_labels"] = np.array([{"a": 1}] * 156, dtype=object)
    _reject(tmp_path, arrays, "holds object \\(pickled\\) arrays, which medjax never loads")
    npy = tmp_path / "breastmnist.npy"
    np.save(npy, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"breastmnist.npy: not an .npz archive but a single .npy array"):
        medmnist.load("breastmnist", data_dir=npy)
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match=r"notes.npz: not an .npz archive \(it does not start like a zip file\)"):
        medmnist.load("breastmnist", data_dir=text)


def test_rejects_folder_without_the_file_and_bad_names(tmp_path):
    _write(tmp_path / "pathmnist.npz", {"x": np.zeros(1)})
    with pytest.raises(FileNotFoundError, match=r"expected a folder holding breastmnist_64.npz, found .npz files: pathmnist.npz"):
        medmnist.load("breastmnist", size=64, data_dir=tmp_path)
    with pytest.raises(ValueError, match="--dataset: expected one of pathmnist, chestmnist"):
        medmnist.load("breast", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"--size: expected one of 28, 64, 128, 224, got 32"):
        medmnist.load("breastmnist", size=32, data_dir=tmp_path)


# --- the download path (URL fetch mocked) -------------------------------------------------------------------------


class _Response(io.BytesIO):
    def __init__(self, payload, fail_after=None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(n)


def _serve(monkeypatch, payload, calls, **kwargs):
    def open_url(url, timeout):
        calls.append((url, timeout))
        return _Response(payload, **kwargs)

    monkeypatch.setattr(download, "open_url", open_url)


def _with_md5(monkeypatch, md5):
    entry = medmnist.DATASETS["breastmnist"]
    monkeypatch.setitem(medmnist.DATASETS, "breastmnist", dataclasses.replace(entry, md5={**entry.md5, 28: md5}))


def test_download_verifies_md5_and_caches(tmp_path, monkeypatch, breast_npz):
    payload = breast_npz.read_bytes()
    _with_md5(monkeypatch, hashlib.md5(payload).hexdigest())
    calls = []
    _serve(monkeypatch, payload, calls)
    cache = tmp_path / "cache"
    data = medmnist.load("breastmnist", cache_dir=cache, progress=False)
    assert len(data["train"]) == 546
    assert (cache / "breastmnist.npz").read_bytes() == payload
    assert calls == [("https://zenodo.org/records/10519652/files/breastmnist.npz?download=1",
                      download.CONNECT_TIMEOUT_S)]
    medmnist.load("breastmnist", cache_dir=cache, progress=False)
    assert len(calls) == 1  # the second load reads the cache


def test_download_md5_mismatch_deletes_the_file(tmp_path, monkeypatch, breast_npz):
    _with_md5(monkeypatch, "0" * 32)
    _serve(monkeypatch, breast_npz.read_bytes(), [])
    cache = tmp_path / "cache"
    with pytest.raises(download.DownloadError, match=r"breastmnist.npz .* has MD5 [0-9a-f]{32}, expected 0{32}; "
                                                     r"the file was deleted"):
        medmnist.load("breastmnist", cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []


def test_download_broken_off_leaves_nothing(tmp_path, monkeypatch, breast_npz):
    _serve(monkeypatch, breast_npz.read_bytes(), [], fail_after=1)
    cache = tmp_path / "cache"
    with pytest.raises(download.DownloadError, match="broke off .*connection reset.*--data-dir"):
        medmnist.load("breastmnist", cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("error", [urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
                                   TimeoutError("timed out")])
def test_no_network_says_how_to_use_a_local_copy(tmp_path, monkeypatch, error):
    def open_url(url, timeout):
        raise error

    monkeypatch.setattr(download, "open_url", open_url)
    with pytest.raises(download.DownloadError, match=r"could not download .*breastmnist.npz.*no network\?.*pass "
                                                     r"--data-dir \(data_dir=\) pointing at the folder"):
        medmnist.load("breastmnist", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "breastmnist.npz").exists()


def test_default_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDJAX_CACHE_DIR", str(tmp_path))
    assert download.cache_dir() == tmp_path
    monkeypatch.delenv("MEDJAX_CACHE_DIR")
    assert download.cache_dir().parts[-2:] == (".cache", "medjax")
