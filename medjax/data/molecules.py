"""Molecules with a property, from CSV files of SMILES strings: reader, random and scaffold splits.

``--data-dir`` may name a CSV file, a folder with exactly one CSV file (split by the chosen method), or a folder with
``train.csv`` and ``test.csv`` (and optionally ``valid.csv``) that is used as given; without ``valid.csv`` the
validation rows are carved out of ``train.csv`` by the chosen method. Every CSV needs a header naming the SMILES and
target columns; an optional reference column (FreeSolv's ``calc``: a physics-based estimate of the target) is kept as
a second baseline.

Splits follow MoleculeNet (Wu et al. 2018, Chem. Sci. 9:513) and deepchem: ``random`` shuffles with a seed and cuts
80/10/10; ``scaffold`` groups molecules by Bemis–Murcko scaffold (RDKit) and fills train with the largest groups
first, then validation, then test, so no scaffold is on two sides and test holds the rare chemotypes. The scaffold
split is deterministic (deepchem's order: larger groups first, ties by later first occurrence); ``split_seed`` does
not change it.

Example:
  >>> data, given = load("../shared/data/freesolv", "smiles", "expt")           # doctest: +SKIP
  >>> parts = random_split(len(data), (0.8, 0.1, 0.1), seed=0)                  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import pathlib
from typing import Sequence

import numpy as np

from medjax.data.files import read_text
from medjax.data.smiles import tokenize_smiles
from medjax.errors import ConfigError, DataError, MissingPath, where

SPLIT_NAMES = ("train", "val", "test")
GIVEN_FILES = {"train": "train.csv", "val": "valid.csv", "test": "test.csv"}


@dataclasses.dataclass(frozen=True)
class Molecules:
    """Molecules and their target, held in memory.

    Attributes:
      smiles: the n SMILES strings, as in the files.
      tokens: each SMILES's atom-level tokens (`medjax.data.smiles.tokenize_smiles`).
      targets: ``float64[n]`` the target column.
      reference: ``float64[n]`` the reference column (another method's estimate of the target), or None.
      places: ``"file:line"`` of each molecule, for error messages.
    """

    smiles: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    targets: np.ndarray
    reference: np.ndarray | None
    places: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.smiles)


def _number(text: str, column: str, place: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(place, f"expected a number in column {column!r}, got {text!r}")
    return value


def read_csv(path: str | pathlib.Path, smiles_column: str = "smiles", target_column: str = "expt",
             reference_column: str = "") -> Molecules:
    """Reads one CSV file of molecules; every error names the file and the line.

    Args:
      path: a CSV file with a header row.
      smiles_column: the column of SMILES strings.
      target_column: the column of target values (numbers; 0/1 for a classification task).
      reference_column: a column of another method's estimates, kept when the header has it ("" or absent: None).

    Raises:
      DataError: a missing named column (the message lists the columns there are), a row with the wrong number of
        fields, an empty SMILES, a SMILES with a character the tokenizer does not cover, or a target that is not a
        finite number.
    """
    path = pathlib.Path(path)
    reader = csv.reader(io.StringIO(read_text(path, "a CSV file of molecules"), newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise DataError(path, f"empty file; expected a header with columns {smiles_column!r} and "
                                  f"{target_column!r}")
        for column in (smiles_column, target_column):
            if column not in header:
                raise DataError(where(path, 1), f"expected a column {column!r}, got columns "
                                                f"{', '.join(map(repr, header))}")
        s, t = header.index(smiles_column), header.index(target_column)
        r = header.index(reference_column) if reference_column in header else None
        rows = {"smiles": [], "tokens": [], "targets": [], "reference": [], "places": []}
        line = reader.line_num + 1
        for row in reader:
            place = where(path, line)
            line = reader.line_num + 1
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(place, f"expected {len(header)} fields ({','.join(header)}), got {len(row)}")
            smiles = row[s].strip()
            if not smiles:
                raise DataError(place, f"expected a SMILES in column {smiles_column!r}, got an empty field")
            rows["smiles"].append(smiles)
            rows["tokens"].append(tuple(tokenize_smiles(smiles, place)))
            rows["targets"].append(_number(row[t], target_column, place))
            rows["reference"].append(_number(row[r], reference_column, place) if r is not None else math.nan)
            rows["places"].append(place)
    except csv.Error as error:
        raise DataError(where(path, reader.line_num), f"expected well-formed CSV, got {error}") from None
    if not rows["smiles"]:
        raise DataError(path, "expected data rows after the header, got none")
    return Molecules(tuple(rows["smiles"]), tuple(rows["tokens"]), np.asarray(rows["targets"]),
                     np.asarray(rows["reference"]) if r is not None else None, tuple(rows["places"]))


def concatenate(parts: Sequence[Molecules]) -> Molecules:
    """The molecules of several files, in order; a reference column is kept only if every file has it."""
    reference = None if any(p.reference is None for p in parts) else np.concatenate([p.reference for p in parts])
    return Molecules(sum((p.smiles for p in parts), ()), sum((p.tokens for p in parts), ()),
                     np.concatenate([p.targets for p in parts]), reference, sum((p.places for p in parts), ()))


def load(data_dir: str | pathlib.Path, smiles_column: str = "smiles", target_column: str = "expt",
         reference_column: str = "") -> tuple[Molecules, dict[str, np.ndarray]]:
    """Reads a CSV file or a folder as the module docstring says.

    Returns:
      ``(molecules, given)``: ``given`` maps the split names the folder fixed (``train``, ``test``, maybe ``val``) to
      int64 row indices into ``molecules``; it is empty for a single CSV, which the caller splits.

    Raises:
      MissingPath: no such path, or a folder with neither one CSV file nor train.csv and test.csv.
    """
    path = pathlib.Path(data_dir)
    if not path.exists():
        raise MissingPath(path, "expected a CSV file or a folder of CSV files, found nothing")
    columns = (smiles_column, target_column, reference_column)
    if path.is_file():
        return read_csv(path, *columns), {}
    if (path / "train.csv").is_file() and (path / "test.csv").is_file():
        names = [n for n in SPLIT_NAMES if (path / GIVEN_FILES[n]).is_file()]
        parts = [read_csv(path / GIVEN_FILES[n], *columns) for n in names]
        ends = np.cumsum([len(p) for p in parts])
        given = {n: np.arange(end - len(p), end) for n, p, end in zip(names, parts, ends)}
        return concatenate(parts), given
    found = sorted(path.glob("*.csv"))
    if len(found) != 1:
        raise MissingPath(path, f"expected a folder with one CSV file, or with train.csv and test.csv, got "
                                f"{len(found)} CSV files ({', '.join(p.name for p in found) or 'none'})")
    return read_csv(found[0], *columns), {}


def infer_task_type(targets: np.ndarray) -> str:
    """``"classification"`` when every target is 0 or 1, else ``"regression"``."""
    return "classification" if np.isin(targets, (0.0, 1.0)).all() else "regression"


def _cutoffs(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    fractions = np.asarray(fractions, np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be 3 non-negative shares summing to 1, got {fractions}")
    # deepchem's RandomSplitter cuts at int(frac * n), so the test split takes the rounding remainder.
    return int(fractions[0] * n), int((fractions[0] + fractions[1]) * n)


def random_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded shuffle cut into train / val / test (MoleculeNet's random split).

    Returns:
      ``{"train": int64[n_train], "val": ..., "test": ...}`` sorted row indices in ``range(n)``, disjoint.
    """
    train_end, val_end = _cutoffs(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    return {name: np.sort(rows) for name, rows in zip(SPLIT_NAMES, np.split(order, [train_end, val_end]))}


def _rdkit_chem():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise ConfigError("--split", "expected RDKit for the scaffold split (pip install 'medjax[chem]'), got no "
                                     "rdkit module") from None
    RDLogger.DisableLog("rdApp.*")  # parse failures are reported as DataErrors naming the line instead
    return Chem


def parse_smiles(smiles: str):
    """The RDKit molecule of ``smiles``, or None when RDKit cannot parse it."""
    return _rdkit_chem().MolFromSmiles(smiles)


def drop_unparsable(molecules: Molecules, given: dict[str, np.ndarray]
                    ) -> tuple[Molecules, dict[str, np.ndarray], list[str]]:
    """The molecules RDKit can parse, ``given``'s row indices renumbered to them, and the places (``file:line``) of
    those dropped, as Chemprop and DeepChem drop them."""
    keep = np.array([parse_smiles(smiles) is not None for smiles in molecules.smiles], bool)
    if keep.all():
        return molecules, given, []
    new_index = np.cumsum(keep) - 1
    renumbered = {name: new_index[rows[keep[rows]]] for name, rows in given.items()}
    dropped = [place for place, kept in zip(molecules.places, keep) if not kept]
    return subset(molecules, np.flatnonzero(keep)), renumbered, dropped


def parse_all(molecules: Molecules) -> list:
    """RDKit molecules of every SMILES; raises DataError naming file:line for one RDKit cannot parse."""
    chem = _rdkit_chem()
    parsed = []
    for smiles, place in zip(molecules.smiles, molecules.places):
        mol = chem.MolFromSmiles(smiles)
        if mol is None:
            raise DataError(place, f"expected a SMILES that RDKit can parse, got {smiles!r}")
        parsed.append(mol)
    return parsed


def scaffolds(molecules: Molecules) -> list[str]:
    """The Bemis–Murcko scaffold SMILES of each molecule ("" for an acyclic one), as deepchem computes it."""
    _rdkit_chem()
    from rdkit.Chem.Scaffolds.MurckoScaffold import MurckoScaffoldSmiles

    return [MurckoScaffoldSmiles(mol=mol, includeChirality=False) for mol in parse_all(molecules)]


def scaffold_split(keys: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """deepchem's ScaffoldSplitter on precomputed scaffold keys: whole groups, largest first, to train, val, test.

    Args:
      keys: the scaffold of each of the n molecules (`scaffolds`); equal keys always land in the same split.
      fractions: the target shares; a group that would overfill train goes to val, then to test.

    Returns:
      ``{"train": int64[...], "val": ..., "test": ...}`` sorted row indices, disjoint, covering ``range(n)``.
    """
    train_end, val_end = _cutoffs(len(keys), fractions)
    groups: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    ordered = sorted(groups.values(), key=lambda rows: (len(rows), rows[0]), reverse=True)
    parts: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for rows in ordered:
        if len(parts["train"]) + len(rows) <= train_end:
            parts["train"] += rows
        elif len(parts["train"]) + len(parts["val"]) + len(rows) <= val_end:
            parts["val"] += rows
        else:
            parts["test"] += rows
    return {name: np.asarray(sorted(rows), np.int64) for name, rows in parts.items()}


def split(molecules: Molecules, method: str, fractions: Sequence[float] = (0.8, 0.1, 0.1),
          seed: int = 0) -> dict[str, np.ndarray]:
    """``random`` (seeded) or ``scaffold`` (deterministic) split of all the molecules."""
    if method == "random":
        return random_split(len(molecules), fractions, seed)
    if method == "scaffold":
        return scaffold_split(scaffolds(molecules), fractions)
    raise ConfigError("--split", f"expected random or scaffold, got {method!r}")


def subset(molecules: Molecules, rows: np.ndarray) -> Molecules:
    """The molecules at ``rows``, in that order."""
    reference = None if molecules.reference is None else molecules.reference[rows]
    return Molecules(tuple(molecules.smiles[i] for i in rows), tuple(molecules.tokens[i] for i in rows),
                     molecules.targets[rows], reference, tuple(molecules.places[i] for i in rows))


def complete_given(molecules: Molecules, given: dict[str, np.ndarray], method: str, val_fraction: float,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """A folder's given splits, with validation carved out of train (``val_fraction`` of it) when it has none."""
    if "val" in given:
        return dict(given)
    train = given["train"]
    carved = split(subset(molecules, train), method, (1.0 - val_fraction, val_fraction, 0.0), seed)
    # A scaffold group that would overfill val lands in "test" of the carve: it stays in training.
    keep = np.sort(np.concatenate([carved["train"], carved["test"]]))
    return {"train": train[keep], "val": train[carved["val"]], "test": given["test"]}
