"""The molecule CSV reader (errors name file and line), the folder rules, and the random and scaffold splits."""

import sys

import numpy as np
import pytest

from conftest import data_dir
from medjax.data import molecules
from medjax.errors import ConfigError, DataError, MissingPath


def write(path, text):
    path.write_text(text)
    return path


def test_reads_smiles_targets_and_the_reference_column(tmp_path):
    path = write(tmp_path / "m.csv", 'name,smiles,expt,calc\n"a, b",CCO,-5.0,-4.5\n\nc,c1ccccc1,-0.9,-1.25\n')
    data = molecules.read_csv(path, "smiles", "expt", "calc")
    assert data.smiles == ("CCO", "c1ccccc1")
    assert data.tokens[1] == ("c", "1", "c", "c", "c", "c", "c", "1")
    np.testing.assert_array_equal(data.targets, [-5.0, -0.9])
    np.testing.assert_array_equal(data.reference, [-4.5, -1.25])
    assert data.places == (f"{path}:2", f"{path}:4")  # the blank line 3 is skipped, and counted
    assert molecules.read_csv(path, "smiles", "expt", "absent").reference is None


@pytest.mark.parametrize("text, line, message", [
    ("smiles,value\nCCO,1\n", 1, "expected a column 'expt', got columns 'smiles', 'value'"),
    ("smiles,expt\nCCO,1\n ,2\n", 3, "expected a SMILES in column 'smiles', got an empty field"),
    ("smiles,expt\nCCO,1\nCC,2\nCCC,abc\n", 4, "expected a number in column 'expt', got 'abc'"),
    ("smiles,expt\nCCO,1\nCC,nan\n", 3, "expected a number in column 'expt', got 'nan'"),
    ("smiles,expt\nCCO,1,2\n", 2, "expected 2 fields (smiles,expt), got 3"),
])
def test_reader_errors_name_the_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as error:
        molecules.read_csv(path, "smiles", "expt")
    assert str(error.value) == f"{path}:{line}: {message}"


def test_an_unparsable_smiles_under_rdkit_names_its_line(tmp_path):
    pytest.importorskip("rdkit")
    path = write(tmp_path / "m.csv", "smiles,expt\nCCO,1\nC1CC,2\n")  # ring 1 never closes
    with pytest.raises(DataError, match=rf"^{path}:3: expected a SMILES that RDKit can parse, got 'C1CC'$"):
        molecules.parse_all(molecules.read_csv(path, "smiles", "expt"))


def test_folder_rules(tmp_path):
    rows = "smiles,expt\n" + "".join(f"{'C' * (i + 1)},{i}\n" for i in range(20))
    single = tmp_path / "single"
    single.mkdir()
    write(single / "any-name.csv", rows)
    data, given = molecules.load(single, "smiles", "expt")
    assert len(data) == 20 and given == {}
    assert len(molecules.load(single / "any-name.csv", "smiles", "expt")[0]) == 20  # a CSV file itself

    fixed = tmp_path / "fixed"
    fixed.mkdir()
    write(fixed / "train.csv", rows)
    write(fixed / "test.csv", "smiles,expt\nO,1\nN,2\n")
    data, given = molecules.load(fixed, "smiles", "expt")
    assert {k: v.tolist() for k, v in given.items()} == {"train": list(range(20)), "test": [20, 21]}
    parts = molecules.complete_given(data, given, "random", 0.25, seed=3)
    assert len(parts["val"]) == 5 and len(parts["train"]) == 15 and parts["test"].tolist() == [20, 21]
    assert sorted(np.concatenate([parts["train"], parts["val"]]).tolist()) == list(range(20))
    again = molecules.complete_given(data, given, "random", 0.25, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)

    write(fixed / "valid.csv", "smiles,expt\nS,3\n")
    data, given = molecules.load(fixed, "smiles", "expt")
    assert given["val"].tolist() == [20] and given["test"].tolist() == [21, 22]
    assert data.smiles[20:] == ("S", "O", "N")
    assert molecules.complete_given(data, given, "random", 0.25)["val"].tolist() == [20]

    write(single / "other.csv", rows)
    with pytest.raises(MissingPath, match="got 2 CSV files \\(any-name.csv, other.csv\\)"):
        molecules.load(single, "smiles", "expt")
    with pytest.raises(MissingPath):
        molecules.load(tmp_path / "nowhere", "smiles", "expt")


def test_random_split_is_seeded_disjoint_and_cut_as_deepchem_cuts():
    parts = molecules.random_split(642, (0.8, 0.1, 0.1), seed=0)
    # int(0.8 * 642) = 513 and int(0.9 * 642) = 577: 513 / 64 / 65.
    assert [len(parts[k]) for k in ("train", "val", "test")] == [513, 64, 65]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(642))
    same, other = molecules.random_split(642, seed=0), molecules.random_split(642, seed=1)
    assert all(np.array_equal(parts[k], same[k]) for k in parts)
    assert not np.array_equal(parts["test"], other["test"])


def test_task_type_is_classification_only_for_zero_one_targets():
    assert molecules.infer_task_type(np.array([0.0, 1.0, 1.0])) == "classification"
    assert molecules.infer_task_type(np.array([0.0, 1.0, 2.0])) == "regression"
    assert molecules.infer_task_type(np.array([-3.5, 1.0])) == "regression"


def test_scaffold_split_of_a_hand_made_list():
    pytest.importorskip("rdkit")
    smiles = ["Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1", "CC1CCCCC1", "OC1CCCCC1", "CCO", "CCC", "Cc1ccncc1"]
    data = molecules.Molecules(tuple(smiles), ((),) * 8, np.zeros(8), None, tuple(f"f:{i}" for i in range(8)))
    keys = molecules.scaffolds(data)
    assert keys == ["c1ccccc1"] * 3 + ["C1CCCCC1"] * 2 + [""] * 2 + ["c1ccncc1"]
    # Cut-offs int(0.5 * 8) = 4, int(0.75 * 8) = 6. Groups by size, ties by later first row: benzene (3) to train;
    # acyclic (2, first row 5) overfills train, fits val; cyclohexane (2, row 3) overfills both, to test;
    # pyridine (1) still fits train.
    parts = molecules.scaffold_split(keys, (0.5, 0.25, 0.25))
    assert {k: v.tolist() for k, v in parts.items()} == {"train": [0, 1, 2, 7], "val": [5, 6], "test": [3, 4]}


def test_scaffold_split_of_freesolv_keeps_every_scaffold_on_one_side():
    pytest.importorskip("rdkit")
    data, _ = molecules.load(data_dir("freesolv"), "smiles", "expt")
    keys = np.array(molecules.scaffolds(data))
    parts = molecules.split(data, "scaffold")
    sides = [set(keys[parts[name]]) for name in ("train", "val", "test")]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sum(len(p) for p in parts.values()) == 642 and len(parts["train"]) <= 513


def test_scaffold_split_without_rdkit_says_how_to_install_it(tmp_path, monkeypatch):
    data = molecules.read_csv(write(tmp_path / "m.csv", "smiles,expt\nCCO,1\n"), "smiles", "expt")
    monkeypatch.setitem(sys.modules, "rdkit", None)  # makes `import rdkit` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'medjax\[chem\]'"):
        molecules.split(data, "scaffold")
