"""The Medical Abstracts text-classification corpus (Schopf, Braun and Matthes, 2022): reader and a reproducible split.

The folder ``medical-abstracts-tc/`` holds ``medical_tc_labels.csv`` (``condition_label,condition_name``) and
``medical_tc_test.csv`` (``condition_label,medical_abstract``, 2,888 rows, 5 classes). Only the published *test* file
is available, so `split` cuts it into train / validation / test with a fixed seed, stratified by class, with every
copy of a repeated abstract on the same side: 113 texts occur two or three times, each copy with a different label,
and a copy in training would leak the text of a test abstract.

Example:
  >>> corpus = load("/path/to/medical-abstracts-tc")                # doctest: +SKIP
  >>> parts = split(corpus, fractions=(0.8, 0.1, 0.1), seed=0)      # doctest: +SKIP
  >>> train = corpus.subset(parts["train"])                         # doctest: +SKIP
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import pathlib
from typing import Mapping, Sequence

import numpy as np

from medjax.data.files import existing, read_text
from medjax.errors import DataError, MissingPath, where

LABELS_FILE = "medical_tc_labels.csv"
ABSTRACTS_FILE = "medical_tc_test.csv"
SPLIT_NAMES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Abstracts:
    """Labelled documents held in memory.

    Attributes:
      texts: the n abstracts, as in the file.
      labels: ``int32[n]``, class indices 0..K-1 (the file's label ids in increasing order).
      class_names: the K class names, index-aligned with ``labels``.
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Abstracts:
        """The documents at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return Abstracts(tuple(self.texts[i] for i in indices), self.labels[indices], self.class_names)


def _records(path: pathlib.Path, header: tuple[str, ...]):
    """Yields ``(line, row)`` for each data row of a CSV file after checking its header and field count.

    ``line`` is the physical line where the record starts (quoted fields may span lines).
    """
    with io.StringIO(read_text(path, "a CSV file"), newline="") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            first = next(reader, None)
        except csv.Error as error:
            raise DataError(where(path, 1), f"malformed CSV ({error})") from None
        if first is None:
            raise DataError(path, f"empty file; expected a header {','.join(header)} and data rows")
        if tuple(field.strip() for field in first) != header:
            raise DataError(where(path, 1), f"header is {','.join(first)!r}; expected {','.join(header)!r}")
        start = reader.line_num + 1
        count = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                raise DataError(where(path, start), f"malformed CSV ({error})") from None
            if row:  # csv yields [] for blank lines
                if len(row) != len(header):
                    raise DataError(
                        where(path, start), f"{len(row)} fields; expected {len(header)} ({','.join(header)})"
                    )
                count += 1
                yield start, row
            start = reader.line_num + 1
        if count == 0:
            raise DataError(path, "expected data rows after the header, got none")


def _label_id(path: pathlib.Path, line: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(where(path, line), f"label {text!r} is not an integer") from None


def read_label_names(path: str | pathlib.Path) -> dict[int, str]:
    """Reads ``condition_label,condition_name`` rows into ``{label id: name}``."""
    path = pathlib.Path(path)
    names: dict[int, str] = {}
    for line, (label, name) in _records(path, ("condition_label", "condition_name")):
        label_id = _label_id(path, line, label)
        if label_id in names:
            raise DataError(where(path, line), f"label {label_id} listed twice")
        if not name.strip():
            raise DataError(where(path, line), f"label {label_id} has an empty name")
        names[label_id] = name.strip()
    return names


def read_abstracts(path: str | pathlib.Path, label_names: Mapping[int, str]) -> Abstracts:
    """Reads ``condition_label,medical_abstract`` rows.

    Args:
      path: the CSV file.
      label_names: ``{label id: name}`` from `read_label_names`; a row whose label is not a key is rejected.

    Returns:
      The documents, labels mapped to 0..K-1 in increasing label-id order.

    Raises:
      ValueError: naming the file and line, for an empty file, a wrong header, a row with the wrong number of
        fields, a non-integer or unknown label, or an empty abstract.
    """
    path = pathlib.Path(path)
    index = {label_id: i for i, label_id in enumerate(sorted(label_names))}
    texts: list[str] = []
    labels: list[int] = []
    for line, (label, text) in _records(path, ("condition_label", "medical_abstract")):
        label_id = _label_id(path, line, label)
        if label_id not in index:
            raise DataError(where(path, line), f"unknown label {label_id}; expected one of {sorted(index)}")
        if not text.strip():
            raise DataError(where(path, line), "expected an abstract, got an empty field")
        texts.append(text)
        labels.append(index[label_id])
    class_names = tuple(label_names[label_id] for label_id in sorted(label_names))
    return Abstracts(tuple(texts), np.asarray(labels, np.int32), class_names)


def load(data_dir: str | pathlib.Path) -> Abstracts:
    """Reads the corpus folder (``medical_tc_labels.csv`` and ``medical_tc_test.csv``)."""
    data_dir = existing(data_dir, "the medical-abstracts-tc folder", folder=True)
    for name in (LABELS_FILE, ABSTRACTS_FILE):
        if not (data_dir / name).is_file():
            raise MissingPath(data_dir / name, f"expected the medical-abstracts-tc folder {data_dir} to hold "
                                               f"{LABELS_FILE} and {ABSTRACTS_FILE}, found no {name}")
    return read_abstracts(data_dir / ABSTRACTS_FILE, read_label_names(data_dir / LABELS_FILE))


def split(
    corpus: Abstracts, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Splits into train / val / test, stratified by class, with all copies of a text on one side.

    Identical texts form a group. Groups are visited in a seeded random order (larger groups first, as they are the
    hardest to place) and each goes to the split that is furthest below its per-class target for the group's labels
    (an iterative stratification, as for multi-label data), so every class is split close to ``fractions``.

    Args:
      corpus: the documents.
      fractions: the share of each split, summing to 1.
      seed: the same seed and corpus give the same split.

    Returns:
      ``{"train": int64[n_train], "val": ..., "test": ...}``, sorted row indices into ``corpus``.
    """
    fractions = np.asarray(fractions, np.float64)
    if fractions.shape != (len(SPLIT_NAMES),) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be {len(SPLIT_NAMES)} non-negative shares summing to 1, got {fractions}")
    num_classes = len(corpus.class_names)
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for row, text in enumerate(corpus.texts):
        groups[text].append(row)
    members = list(groups.values())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(members))
    order = sorted(order, key=lambda g: -len(members[g]))  # stable: random order within each group size

    class_totals = np.bincount(corpus.labels, minlength=num_classes)
    target = fractions[:, None] * class_totals[None, :]  # [split, class]
    placed = np.zeros_like(target)
    assignment = np.empty(len(corpus), np.int64)
    for g in order:
        rows = members[g]
        counts = np.bincount(corpus.labels[rows], minlength=num_classes)
        deficit = ((target - placed) * (counts > 0)).sum(axis=1)
        chosen = int(np.argmax(deficit))
        placed[chosen] += counts
        assignment[rows] = chosen
    return {name: np.flatnonzero(assignment == s) for s, name in enumerate(SPLIT_NAMES)}


def class_counts(corpus: Abstracts, parts: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    """``{split name: [count of class 0, ..., class K-1]}``, for documenting a split."""
    num_classes = len(corpus.class_names)
    return {name: np.bincount(corpus.labels[rows], minlength=num_classes).tolist() for name, rows in parts.items()}
