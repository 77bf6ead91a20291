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
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import medmnist
from medjax.data.download import file_md5
from medjax.metrics.classification import medmnist_acc, medmnist_auc
from medjax.nn.conv import TutorialCNN
from medjax.nn.resnet import ResNet18, ResNet50
from medjax.train import losses
from medjax.train.batching import ArraySpec
from medjax.train.config import TrainConfig
from medjax.train.task import Batch, Task

# Model name -> constructor taking the number of output logits.
MODELS: dict[str, Callable[[int], nn.Module]] = {
    "cnn": lambda num_classes: TutorialCNN(num_classes=num_classes),
    "resnet18": lambda num_classes: ResNet18(num_classes=num_classes),
    "resnet50": lambda num_classes: ResNet50(num_classes=num_classes),
}

# Files up to this size get their MD5 recorded in config.json (provenance); hashing a multi-GB 224 px file would
# delay every start by seconds.
_MD5_RECORD_LIMIT_BYTES = 256 << 20


@dataclasses.dataclass
class Config(TrainConfig):
    dataset: str = "breastmnist"  # MedMNIST data set: pathmnist, chestmnist, dermamnist, octmnist, pneumoniamnist, retinamnist, breastmnist, bloodmnist, tissuemnist, organamnist, organcmnist, organsmnist
    size: int = 28  # image side in pixels: 28 (MedMNIST v2) or 64, 128, 224 (MedMNIST+)
    data_dir: str | None = None  # a local folder holding <dataset>.npz (or <dataset>_<size>.npz), or the file itself; unset: download to $MEDJAX_CACHE_DIR or ~/.cache/medjax
    model: str = "resnet18"  # network: cnn (the tutorial CNN), resnet18 or resnet50 (MedMNIST's "(28)" ResNets)
    pixel_mean: float = 0.5  # pixels in [0, 1] are normalised as (x - pixel_mean) / pixel_std
    pixel_std: float = 0.5  # see pixel_mean
    epochs: int = 100  # passes over the training split
    schedule: str = "multistep"  # one of medjax.train.optim.SCHEDULES: constant, cosine, multistep


def smoke_config(**overrides: Any) -> Config:
    """A seconds-long run of the same pipeline: the tutorial CNN for 2 epochs (pass ``data_dir`` and ``workdir``)."""
    return Config(**{"model": "cnn", "epochs": 2, "progress": False, **overrides})


class MedMNISTClassifier(nn.Module):
    """Normalises uint8 images inside the jitted step (4× less host-to-device traffic), then runs the backbone.

    Attributes:
      backbone: a Linen module called as ``(x f32[batch, H, W, C], train) -> f32[batch, num_classes]``.
      pixel_mean: subtracted from pixels scaled to [0, 1].
      pixel_std: divides the centred pixels.
    """

    backbone: nn.Module
    pixel_mean: float = 0.5
    pixel_std: float = 0.5

    def __call__(self, batch: Batch, train: bool = False) -> jax.Array:
        """Logits f32[batch, num_classes] of ``batch["image"]``: uint8[batch, H, W, C]."""
        images = jnp.asarray(batch["image"])
        if images.dtype != jnp.uint8:
            raise TypeError(f"batch['image'] must be uint8 pixels in [0, 255], got {images.dtype}")
        x = images.astype(jnp.float32) / 255.0
        return self.backbone((x - self.pixel_mean) / self.pixel_std, train=train)


@dataclasses.dataclass(frozen=True)
class MedMNISTSplit:
    """One split as the loop reads it: batches ``{"image": uint8[B, H, W, C], "label": int32[B] or int32[B, 14]}``.

    Attributes:
      images: uint8[N, H, W, C].
      labels: int32[N] or int32[N, 14].
      fill_last: complete a short last batch with the first examples of the same order, marked False in
        ``example_mask`` (they count in no loss or metric). Set for training: the loop would pad with copies of the
        last example, and batch norm would then normalise that batch with the statistics of (mostly) one image.
    """

    images: np.ndarray
    labels: np.ndarray
    fill_last: bool = False

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[Batch]:
        index = np.arange(len(self)) if order is None else np.asarray(order)
        for start in range(0, len(index), batch_size):
            rows = index[start:start + batch_size]
            batch = {"image": self.images[rows], "label": self.labels[rows]}
            short = batch_size - len(rows)
            if self.fill_last and 0 < short <= start:
                rows = np.concatenate([rows, index[:short]])
                batch = {"image": self.images[rows], "label": self.labels[rows],
                         "example_mask": np.arange(batch_size) < batch_size - short}
            yield batch


def loss(logits: jax.Array, batch: Batch, task_type: str):
    """The task's loss: mean cross-entropy over the valid rows, and its per-batch sum and count.

    Args:
      logits: f32[batch, classes] (f32[batch, labels] for multi-label).
      batch: with ``label`` (int32[batch] or int32[batch, labels]) and ``example_mask`` (bool[batch]).
      task_type: the data set's MedMNIST task type; multi-label uses sigmoid cross-entropy, the rest softmax.
    """
    where = batch["example_mask"]
    if task_type == medmnist.MULTI_LABEL:
        value = losses.sigmoid_cross_entropy(logits, batch["label"], where=where)
    else:
        value = losses.softmax_cross_entropy(logits, batch["label"], where=where)
    count = jnp.sum(where).astype(jnp.float32)
    return value, {"loss": value * count, "examples": count}


def predict(logits: jax.Array, batch: Batch, task_type: str) -> dict[str, jax.Array]:
    """``{"scores": f32[batch, classes] probabilities, "labels": batch["label"]}``.

    MedMNIST scores probabilities: a sigmoid per label for multi-label, a softmax over classes otherwise.
    """
    multi_label = task_type == medmnist.MULTI_LABEL
    scores = jax.nn.sigmoid(logits) if multi_label else jax.nn.softmax(logits, axis=-1)
    return {"scores": scores, "labels": batch["label"]}


def score(predictions: dict[str, np.ndarray], task_type: str) -> dict[str, float]:
    """MedMNIST's ``{"auc", "acc"}`` of a split's concatenated predictions."""
    labels, scores = np.asarray(predictions["labels"]), np.asarray(predictions["scores"], np.float64)
    return {"auc": medmnist_auc(labels, scores, task_type), "acc": medmnist_acc(labels, scores, task_type)}


def build_model(config: Config, num_classes: int) -> MedMNISTClassifier:
    """The classifier named by ``config.model``; a wrong name lists the valid ones."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r} for medmnist; valid models: {', '.join(MODELS)}")
    return MedMNISTClassifier(MODELS[config.model](num_classes), config.pixel_mean, config.pixel_std)


def build_task(config: Config) -> Task:
    """Loads ``config.dataset`` (from ``config.data_dir`` or the download cache) and assembles the task.

    Raises:
      ValueError: an unknown data set, size or model (the message lists the valid ones), a file whose structure is
        wrong, or a non-positive ``pixel_std``.
      FileNotFoundError: ``config.data_dir`` does not hold the file.
      medjax.data.download.DownloadError: no network (the message says to pass ``--data-dir``) or a bad MD5.
    """
    entry = medmnist.info(config.dataset)
    if config.size not in medmnist.SIZES:
        raise ValueError(f"--size must be one of {medmnist.SIZES}, got {config.size}")
    if config.pixel_std <= 0:
        raise ValueError(f"pixel_std must be positive, got {config.pixel_std}")
    model = build_model(config, entry.num_classes)  # before the (possibly long) download
    path = medmnist.locate(config.dataset, config.size, config.data_dir, progress=config.progress)
    data = medmnist.read_npz(path, config.dataset, config.size)
    multi_label = entry.task == medmnist.MULTI_LABEL
    label_spec = (ArraySpec("i", rank=2, low=0, high=2) if multi_label
                  else ArraySpec("i", rank=1, low=0, high=entry.num_classes))
    size_bytes = path.stat().st_size
    describe = {
        "dataset": entry.name,
        "task_type": entry.task,
        "size": config.size,
        "n_channels": entry.n_channels,
        "n_samples": dict(entry.n_samples),
        "class_names": list(entry.class_names),
        "data_file": str(pathlib.Path(path).resolve()),
        "data_file_md5": file_md5(path) if size_bytes <= _MD5_RECORD_LIMIT_BYTES else None,
        "official_md5": entry.md5[config.size],
        "license": entry.license,
    }
    return Task(
        name="medmnist",
        model=model,
        splits={name: MedMNISTSplit(split.images, split.labels, fill_last=name == "train")
                for name, split in data.items()},
        loss=functools.partial(loss, task_type=entry.task),
        predict=functools.partial(predict, task_type=entry.task),
        score=functools.partial(score, task_type=entry.task),
        select_metric="auc",
        describe=describe,
        class_names=entry.class_names,
        batch_spec={"image": ArraySpec("i", rank=4), "label": label_spec},
    )
