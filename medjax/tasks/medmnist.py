"""MedMNIST image classification with the published MedMNIST v2 recipe.

The defaults are the benchmark's: ResNet-18 in its "(28)" form, Adam at 1e-3 for 100 epochs, the learning rate
multiplied by 0.1 at 50% and 75% of training, batch 128, no augmentation, pixels normalised with mean 0.5 and std 0.5,
and the epoch with the best validation AUC kept. The loss follows the task type as MedMNIST's code does: softmax
cross-entropy for binary, multi-class and ordinal (RetinaMNIST is trained as 5-class classification) sets, sigmoid
cross-entropy for multi-label ChestMNIST. Scores are MedMNIST's AUC and ACC.

Example (a few seconds with the tutorial CNN; the published row uses --model resnet18 and 100 epochs):
  medjax train medmnist --dataset breastmnist --model cnn --epochs 2 --workdir runs/breast-cnn \
      --data-dir ../shared/data/breastmnist-copy
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import medmnist
from medjax.data.download import file_md5
from medjax.data.splits import ArraySplit
from medjax.errors import DataError
from medjax.metrics.classification import medmnist_acc, medmnist_auc
from medjax.nn.conv import TutorialCNN
from medjax.nn.resnet import ResNet18, ResNet50
from medjax.tasks.common import carried, class_columns, conformal_columns
from medjax.train import losses, precision
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig, option
from medjax.train.metrics import Mean
from medjax.train.task import Batch, FromBatch, FromOutputs, Task

# Model name -> constructor taking the number of output logits.
MODELS = {"cnn": TutorialCNN, "resnet18": ResNet18, "resnet50": ResNet50}

# Files up to this size get their MD5 recorded in config.json (provenance); hashing a multi-GB 224 px file would
# delay every start by seconds.
_MD5_RECORD_LIMIT_BYTES = 256 << 20


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    dataset: str = option("breastmnist", "the MedMNIST data set", choices=tuple(medmnist.DATASETS))
    size: int = option(28, "image side in pixels: 28 (MedMNIST v2) or 64, 128, 224 (MedMNIST+)",
                       choices=medmnist.SIZES)
    data_dir: str | None = option(None, "a folder holding <dataset>.npz (or <dataset>_<size>.npz), or the file "
                                        "itself; unset: download to $MEDJAX_CACHE_DIR or ~/.cache/medjax")
    model: str = option("resnet18", "network: cnn (the tutorial CNN), resnet18 or resnet50 (MedMNIST's \"(28)\" "
                                    "ResNets)", choices=tuple(MODELS))
    pixel_mean: float = option(0.5, "pixels in [0, 1] are normalised as (x - pixel_mean) / pixel_std")
    pixel_std: float = option(0.5, "see pixel_mean", above=0.0)
    epochs: int = option(100, "passes over the training split", minimum=1)
    schedule: str = option("multistep", "the learning-rate schedule (MedMNIST: x0.1 at 50% and 75%)",
                           choices=("constant", "cosine", "multistep"))


# MedMNIST v2's table (Yang et al. 2023), test AUC / ACC, for the data sets medjax has been run on.
_PUBLISHED = {("breastmnist", "resnet18"): {"test_auc": 0.901, "test_acc": 0.863},
              ("breastmnist", "resnet50"): {"test_auc": 0.857, "test_acc": 0.812}}


def published_rows(config: dict) -> list[dict]:
    """MedMNIST v2's published row for the run's data set and model at 28 px, if medjax knows it."""
    row = _PUBLISHED.get((config.get("dataset"), config.get("model"))) if config.get("size") == 28 else None
    return [{"label": f"MedMNIST v2 {config['model']} (28), 100 epochs", **row}] if row else []


def smoke_config(**overrides: Any) -> Config:
    """A seconds-long run of the same pipeline: the tutorial CNN for 2 epochs (pass ``data_dir`` and ``workdir``)."""
    return Config(**{"model": "cnn", "epochs": 2, "progress": False, **overrides})


class NormalizedImages(nn.Module):
    """Scales uint8 images inside the jitted step (4× less host-to-device traffic than floats), then the backbone.

    Attributes:
      backbone: a Linen module called as ``(x f32[batch, H, W, C], train) -> f32[batch, num_classes]``.
      pixel_mean: subtracted from pixels scaled to [0, 1].
      pixel_std: divides the centred pixels.
    """

    backbone: nn.Module
    pixel_mean: float = 0.5
    pixel_std: float = 0.5

    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Logits f32[batch, num_classes] of ``images``: uint8[batch, H, W, C]."""
        x = jnp.asarray(images).astype(jnp.float32) / 255.0
        return self.backbone((x - self.pixel_mean) / self.pixel_std, train=train)


def loss(logits: jax.Array, batch: Batch, task_type: str):
    """Mean cross-entropy over the valid rows: sigmoid per label for multi-label sets, softmax otherwise."""
    where = batch["example_mask"]
    if task_type == medmnist.MULTI_LABEL:
        return losses.sigmoid_cross_entropy(logits, batch["label"], where=where), {}
    value = losses.softmax_cross_entropy(logits, batch["label"], where=where)
    return value, {"accuracy": Mean.of(jnp.argmax(logits, -1) == batch["label"], where=where)}


def predict(logits: jax.Array, batch: Batch, task_type: str) -> dict[str, jax.Array]:
    """``{"scores": f32[batch, classes] probabilities}`` (sigmoid per label for multi-label sets), with the batch's
    ``labels`` when it has them, as MedMNIST scores them."""
    multi_label = task_type == medmnist.MULTI_LABEL
    scores = jax.nn.sigmoid(logits) if multi_label else jax.nn.softmax(logits, axis=-1)
    return {"scores": scores, **carried(batch)}


def score(predictions: dict[str, np.ndarray], task_type: str) -> dict[str, float]:
    """MedMNIST's ``{"auc", "acc"}`` of a split's concatenated predictions."""
    labels, scores = np.asarray(predictions["labels"]), np.asarray(predictions["scores"], np.float64)
    return {"auc": medmnist_auc(labels, scores, task_type), "acc": medmnist_acc(labels, scores, task_type)}


@precision.follows_config
def build_model(config: Config, meta: dict) -> nn.Module:
    """The network named by ``config.model``, scaling uint8 images inside the jitted step."""
    backbone = MODELS[config.model](num_classes=meta["num_classes"])
    return FromBatch(NormalizedImages(backbone, config.pixel_mean, config.pixel_std), ("image",))


def inference(config: Config, meta: dict):
    return FromOutputs(functools.partial(predict, task_type=meta["task_type"]))


def build_task(config: Config, meta: dict | None = None) -> Task:
    """Loads ``config.dataset`` (from ``config.data_dir`` or the download cache) and assembles the task.

    Raises:
      medjax.errors.UserError: a file whose structure is wrong, a missing file, no network (the message says to
        pass ``--data-dir``) or a bad MD5.
    """
    entry = medmnist.info(config.dataset)
    path = medmnist.locate(config.dataset, config.size, config.data_dir, progress=config.progress)
    data = medmnist.read_npz(path, config.dataset, config.size)
    multi_label = entry.task == medmnist.MULTI_LABEL
    label_spec = (ArraySpec("i", rank=2, low=0, high=2) if multi_label
                  else ArraySpec("i", rank=1, low=0, high=entry.num_classes))
    meta = meta or {"task_type": entry.task, "class_names": list(entry.class_names), "num_classes": entry.num_classes,
                    "size": config.size, "n_channels": entry.n_channels}
    describe = {
        "dataset": entry.name, "task_type": entry.task, "size": config.size, "n_channels": entry.n_channels,
        "n_samples": dict(entry.n_samples), "class_names": list(entry.class_names),
        "data_file": str(pathlib.Path(path).resolve()),
        "data_file_md5": file_md5(path) if path.stat().st_size <= _MD5_RECORD_LIMIT_BYTES else None,
        "official_md5": entry.md5[config.size], "license": entry.license,
    }
    return Task(
        name="medmnist",
        model=build_model(config, meta),
        splits={name: ArraySplit({"image": split.images, "label": split.labels}, fill_last=name == "train")
                for name, split in data.items()},
        loss=functools.partial(loss, task_type=entry.task),
        predict=inference(config, meta),
        score=functools.partial(score, task_type=entry.task),
        select_metric="auc",
        describe=describe,
        class_names=entry.class_names,
        batch_spec={"image": ArraySpec("i", rank=4, low=0, high=256), "label": label_spec},
        meta=meta,
    )


def read_inputs(arguments: list[str]) -> list[str]:
    """`medjax predict`'s arguments: image files (PNG, JPEG, anything Pillow opens)."""
    return arguments


def encode(config: Config, meta: dict, inputs) -> ArraySplit:
    """Images as the model's batches: ``u8[n, h, w(, c)]`` at the run's size, or image files, which are converted to
    the run's channels and resized (bicubic, as MedMNIST made its sets) to ``size × size``."""
    size, channels = meta["size"], meta["n_channels"]
    if isinstance(inputs, (str, pathlib.Path)) or (isinstance(inputs, (list, tuple)) and inputs
                                                   and isinstance(inputs[0], (str, pathlib.Path))):
        images = read_images([inputs] if isinstance(inputs, (str, pathlib.Path)) else inputs, size, channels)
    else:
        images = np.asarray(inputs)
        if images.dtype != np.uint8:
            raise DataError(None, f"expected uint8 images (0-255), got dtype {images.dtype}")
        if images.ndim == 3 and channels == 1:
            images = images[..., None]
        if images.ndim != 4 or images.shape[1:] != (size, size, channels):
            raise DataError(None, f"expected images u8[n, {size}, {size}{'' if channels == 1 else ', 3'}] (the run's "
                                  f"size), got shape {tuple(np.shape(inputs))}")
    return ArraySplit({"image": images, "index": np.arange(len(images), dtype=np.int32)})


def read_images(paths, size: int, channels: int) -> np.ndarray:
    """u8[n, size, size, channels] from image files; a file Pillow cannot read is named in one line."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                if image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.BICUBIC)
                images.append(np.asarray(image, np.uint8).reshape(size, size, channels))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise DataError(path, f"expected an image file (PNG, JPEG, ...), got unreadable contents ({err})") from None
    return np.stack(images)


def decode(config: Config, meta: dict, predictions: dict, inputs, coverage: float | None = None) -> dict:
    """``probabilities`` f32[n, classes], ``label`` and ``class`` (and ``set`` with ``coverage``)."""
    multi_label = meta["task_type"] == medmnist.MULTI_LABEL
    columns = class_columns(predictions["scores"], meta["class_names"], multi_label)
    return columns | conformal_columns(config.workdir, coverage, predictions["scores"], meta["class_names"])
