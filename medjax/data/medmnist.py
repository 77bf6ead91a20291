"""The twelve 2-D MedMNIST v2 data sets (and their MedMNIST+ 64/128/224 px versions): registry, download and loader.

The registry copies names, class names, split sizes, URLs and MD5s from the ``INFO`` dict of the ``medmnist`` package
(v3.0.2, Zenodo record 10519652). A file comes either from the cache (downloaded and MD5-verified) or from a local
folder or ``.npz`` file given as ``data_dir``, which is checked by its structure instead of its MD5, so that a
re-saved copy (different bytes, same arrays) loads too. Loading never unpickles.

Example:
  >>> data = load("breastmnist", data_dir="/work/shared/data/breastmnist-copy")
  >>> data["train"].images.shape, data["train"].labels.shape
  ((546, 28, 28, 1), (546,))
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
import zlib
from typing import Mapping

import numpy as np

from medjax.data import download
from medjax.errors import ConfigError, DataError, MissingPath

BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL = "binary-class", "multi-class", "multi-label, binary-class", "ordinal-regression"
TASK_TYPES = (BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL)
SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
URL = "https://zenodo.org/records/10519652/files/{file}?download=1"
NO_NETWORK_HINT = ("With no network, download {file} from {url} elsewhere and pass --data-dir (data_dir=) pointing at "
                   "the folder that holds it or at the file itself.")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What MedMNIST publishes about one data set.

    Attributes:
      name: lower-case name, e.g. ``"breastmnist"``.
      task: one of ``TASK_TYPES``, spelled as MedMNIST does.
      class_names: the name of each label index (of each of the 14 labels for ChestMNIST).
      n_channels: 1 (grayscale, stored ``(N, H, W)``) or 3 (RGB, stored ``(N, H, W, 3)``).
      n_samples: examples per split, ``{"train": ..., "val": ..., "test": ...}``.
      md5: the official MD5 of the file of each image size.
      license: the data's license.
    """

    name: str
    task: str
    class_names: tuple[str, ...]
    n_channels: int
    n_samples: Mapping[str, int]
    md5: Mapping[int, str]
    license: str = "CC BY 4.0"

    @property
    def num_classes(self) -> int:
        """Output units a classifier needs: classes, or labels for multi-label ChestMNIST."""
        return len(self.class_names)

    def file_name(self, size: int = 28) -> str:
        """``<name>.npz`` at 28 px, ``<name>_<size>.npz`` for the MedMNIST+ sizes."""
        _check_size(size)
        return f"{self.name}.npz" if size == 28 else f"{self.name}_{size}.npz"

    def url(self, size: int = 28) -> str:
        """The official download address of the file of this size."""
        return URL.format(file=self.file_name(size))


def _info(name, task, class_names, n_channels, n_samples, md5s, license="CC BY 4.0") -> DatasetInfo:
    train, val, test = n_samples
    return DatasetInfo(name, task, tuple(class_names), n_channels, {"train": train, "val": val, "test": test},
                       dict(zip(SIZES, md5s)), license)


_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
           "lung-right", "pancreas", "spleen")

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    _info("pathmnist", MULTI_CLASS,
          ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
           "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
          3, (89996, 10004, 7180),
          ("a8b06965200029087d5bd730944a56c1", "55aa9c1e0525abe5a6b9d8343a507616",
           "ac42d08fb904d92c244187169d1fd1d9", "2c51a510bcdc9cf8ddb2af93af1eadec")),
    _info("chestmnist", MULTI_LABEL,
          ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia", "pneumothorax",
           "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
          1, (78468, 11219, 22433),
          ("02c8a6516a18b556561a56cbdd36c4a8", "9de6cd0b934ebb5b7426cfba5efbae16",
           "db107e5590b27930b62dbaf558aebee3", "45bd33e6f06c3e8cdb481c74a89152aa")),
    _info("dermamnist", MULTI_CLASS,
          ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
           "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"),
          3, (7007, 1003, 2005),
          ("0744692d530f8e62ec473284d019b0c7", "b70a2f5635c6199aeaa28c31d7202e1f",
           "2defd784463fa5243564e855ed717de1", "8974907d8e169bef5f5b96bc506ae45d"),
          license="CC BY-NC 4.0"),
    _info("octmnist", MULTI_CLASS,
          ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
          1, (97477, 10832, 1000),
          ("c68d92d5b585d8d81f7112f81e2d0842", "e229e9440236b774d9f0dfef9d07bdaf",
           "0a97e76651ace45c5d943ee3f65b63ae", "abc493b6d529d5de7569faaef2773ba3")),
    _info("pneumoniamnist", BINARY, ("normal", "pneumonia"), 1, (4708, 524, 624),
          ("28209eda62fecd6e6a2d98b1501bb15f", "8f4eceb4ccffa70c672198ea285246c6",
           "05b46931834c231683c68f40c47b2971", "d6a3c71de1b945ea11211b03746c1fe1")),
    _info("retinamnist", ORDINAL, ("0", "1", "2", "3", "4"), 3, (1080, 120, 400),
          ("bd4c0672f1bba3e3a89f0e4e876791e4", "afda852cc34dcda56f86ad2b2457dbcc",
           "e48e916a24454daf90583d4e6efb1a18", "eae7e3b6f3fcbda4ae613ebdcbe35348")),
    _info("breastmnist", BINARY, ("malignant", "normal, benign"), 1, (546, 78, 156),
          ("750601b1f35ba3300ea97c75c52ff8f6", "742edef2a1fd1524b2efff4bd7ba9364",
           "363e4b3f8d712e9b5de15470a2aaadf1", "b56378a6eefa9fed602bb16d192d4c8b")),
    _info("bloodmnist", MULTI_CLASS,
          ("basophil", "eosinophil", "erythroblast",
           "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
           "neutrophil", "platelet"),
          3, (11959, 1712, 3421),
          ("7053d0359d879ad8a5505303e11de1dc", "2b94928a2ae4916078ca51e05b6b800b",
           "adace1e0ed228fccda1f39692059dd4c", "b718ff6835fcbdb22ba9eacccd7b2601")),
    _info("tissuemnist", MULTI_CLASS,
          ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
           "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
           "Thick Ascending Limb"),
          1, (165466, 23640, 47280),
          ("ebe78ee8b05294063de985d821c1c34b", "123ece2eba09d0aa5d698fda57103344",
           "61b955355d7425a89687b06cca3ce0c2", "b077128c4a949f0a4eb01517f9037b9c")),
    _info("organamnist", MULTI_CLASS, _ORGANS, 1, (34561, 6491, 17778),
          ("68e3f8846a6bd62f0c9bf841c0d9eacc", "2dcccc29b88e6da5a01161ef20cda288",
           "eeae80d0a227a8d099027e1b3cfd3b60", "50747347e05c87dd3aaf92c49f9f3170")),
    _info("organcmnist", MULTI_CLASS, _ORGANS, 1, (12975, 2392, 8216),
          ("b9ceb9546e10131b32923c5bbeaea2b1", "3ce34a8724ea6f548e6db4744d03b6a9",
           "773c1f009daa3fe5d9a2a201b2a7ed94", "050f5e875dc056f6768abf94ec9995d1")),
    _info("organsmnist", MULTI_CLASS, _ORGANS, 1, (13932, 2452, 8827),
          ("9ab87b696fb54e2a387ebe992d6ed5f1", "53a6d115339d874c25e309a994ff46d3",
           "ded0c5fa01a95dc4978b956f613e9b8e", "b354719e553fbbb2513d5533f52a4cb1")),
)}


@dataclasses.dataclass(frozen=True)
class ImageSplit:
    """One split in host memory.

    Attributes:
      images: uint8[N, H, W, C], C = 1 or 3 (grayscale files gain the channel axis).
      labels: int32[N] class indices, or int32[N, 14] 0/1 labels for multi-label ChestMNIST.
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; an unknown name lists the valid ones."""
    if name not in DATASETS:
        raise ConfigError("--dataset", f"expected one of {', '.join(DATASETS)}, got {name!r}")
    return DATASETS[name]


def _check_size(size: int) -> None:
    if size not in SIZES:
        raise ConfigError("--size", f"expected one of {', '.join(map(str, SIZES))}, got {size!r}")


def locate(name: str, size: int = 28, data_dir: str | os.PathLike | None = None,
           cache_dir: str | os.PathLike | None = None, progress: bool = True) -> pathlib.Path:
    """The path of a data set's ``.npz`` file, downloading it into the cache if needed.

    Args:
      name: a key of ``DATASETS``.
      size: image side in pixels, one of ``SIZES``.
      data_dir: a local folder holding ``<name>.npz`` (or ``<name>_<size>.npz``), or the file itself. When given,
        nothing is downloaded.
      cache_dir: where downloads go; default ``download.cache_dir() / "medmnist"``.
      progress: show a progress bar while downloading.

    Raises:
      FileNotFoundError: ``data_dir`` does not hold the file (the message lists the ``.npz`` files it does hold).
      download.DownloadError: no network, or the download's MD5 is wrong (the file is deleted).
    """
    entry = info(name)
    file = entry.file_name(size)
    if data_dir is not None:
        local = pathlib.Path(data_dir).expanduser()
        if local.is_file():
            return local
        if not local.is_dir():
            raise MissingPath(local, "expected a MedMNIST .npz file or a folder holding one, found nothing")
        path = local / file
        if not path.is_file():
            present = sorted(p.name for p in local.glob("*.npz")) or ["none"]
            raise MissingPath(local, f"expected a folder holding {file}, found .npz files: {', '.join(present)}")
        return path
    folder = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else download.cache_dir() / "medmnist"
    hint = NO_NETWORK_HINT.format(file=file, url=entry.url(size))
    return download.fetch(entry.url(size), folder / file, entry.md5[size], hint=hint, progress=progress)


def read_npz(path: str | os.PathLike, name: str, size: int = 28) -> dict[str, ImageSplit]:
    """Reads a MedMNIST ``.npz`` file and checks its structure against the registry entry of ``name``.

    Accepted: the six keys ``{train,val,test}_{images,labels}``; uint8 images ``(N, size, size)`` for grayscale or
    ``(N, size, size, 3)`` for RGB sets (``(N, size, size, 1)`` too); integer labels ``(N,)`` or ``(N, 1)`` within
    ``[0, num_classes)``, or ``(N, 14)`` 0/1 labels for ChestMNIST; ``N`` equal to the registry's split size.

    Returns:
      ``{"train": ImageSplit, "val": ImageSplit, "test": ImageSplit}``.

    Raises:
      ValueError: naming the file and what is wrong (not a zip, truncated or corrupt, pickled arrays, missing key,
        wrong dtype, wrong shape, wrong split size, label out of range).
    """
    entry = info(name)
    _check_size(size)
    path = pathlib.Path(path)
    arrays = _read_arrays(path)
    missing = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels") if f"{split}_{kind}" not in arrays]
    if missing:
        raise DataError(path, f"missing key(s) {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'})")
    return {split: _check_split(path, entry, size, split, arrays[f"{split}_images"], arrays[f"{split}_labels"])
            for split in SPLITS}


def load(name: str, size: int = 28, data_dir: str | os.PathLike | None = None,
         cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, ImageSplit]:
    """Locates (downloading if needed) and reads a MedMNIST data set: ``locate`` then ``read_npz``."""
    return read_npz(locate(name, size, data_dir, cache_dir, progress), name, size)


def _read_arrays(path: pathlib.Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, read eagerly so that a corrupt member fails here, with the file named."""
    with open(path, "rb") as f:
        magic = f.read(6)
    # Checked before np.load, which would otherwise try to unpickle any file that is neither .npz nor .npy.
    if magic == b"\x93NUMPY":
        raise DataError(path, "not an .npz archive but a single .npy array")
    if not magic.startswith(b"PK"):
        raise DataError(path, "not an .npz archive (it does not start like a zip file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except zipfile.BadZipFile as err:
        raise DataError(path, f"truncated or corrupt zip archive ({err})") from err
    except (EOFError, zlib.error, OSError) as err:
        raise DataError(path, f"truncated or corrupt archive member ({type(err).__name__}: {err})") from err
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(path, "holds object (pickled) arrays, which medjax never loads") from err
        raise DataError(path, f"unreadable .npz archive ({err})") from err


def _check_split(path: pathlib.Path, entry: DatasetInfo, size: int, split: str, images: np.ndarray,
                 labels: np.ndarray) -> ImageSplit:
    where = f"{path}: {split}_images"  # the array of the archive
    if images.dtype != np.uint8:
        raise DataError(where, f"expected uint8 pixels, got {images.dtype}")
    rgb = entry.n_channels == 3
    expected = f"(N, {size}, {size}, 3)" if rgb else f"(N, {size}, {size}) or (N, {size}, {size}, 1)"
    good_shape = images.shape[1:3] == (size, size) and (
        (images.ndim == 4 and images.shape[3] == 3) if rgb else
        (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 1)))
    if not good_shape:
        raise DataError(where, f"expected shape {expected} for {entry.name}, got {images.shape}")
    if len(images) != entry.n_samples[split]:
        raise DataError(where, f"expected {entry.n_samples[split]} images ({entry.name}'s {split} split), got "
                               f"{len(images)}")
    if images.ndim == 3:
        images = images[..., None]
    return ImageSplit(images, _check_labels(path, entry, split, labels, len(images)))


def _check_labels(path: pathlib.Path, entry: DatasetInfo, split: str, labels: np.ndarray, n: int) -> np.ndarray:
    where = f"{path}: {split}_labels"
    if labels.dtype.kind not in "iu":
        raise DataError(where, f"expected integer labels, got {labels.dtype}")
    if entry.task == MULTI_LABEL:
        if labels.shape != (n, entry.num_classes):
            raise DataError(where, f"expected shape ({n}, {entry.num_classes}), got {labels.shape}")
        bad = (labels != 0) & (labels != 1)
        if bad.any():
            raise DataError(where, f"expected 0 or 1 (multi-label), got {labels[bad].ravel()[0]}")
        return labels.astype(np.int32)
    if labels.shape not in ((n,), (n, 1)):
        raise DataError(where, f"expected shape ({n},) or ({n}, 1), got {labels.shape}")
    labels = labels.reshape(n)
    # Compare in int64 so that an out-of-range value of any integer type is reported as it is.
    low, high = int(labels.min(initial=0)), int(labels.max(initial=0))
    if low < 0 or high >= entry.num_classes:
        bad = low if low < 0 else high
        raise DataError(where, f"expected labels in [0, {entry.num_classes - 1}] for {entry.name}, got {bad}")
    return labels.astype(np.int32)
