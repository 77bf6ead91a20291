"""The abstracts CSV reader (every rejected input names file and line) and the split's properties."""

import numpy as np
import pytest

from medjax.data import abstracts

LABELS = "condition_label,condition_name\n1,neoplasms\n2,digestive\n3,nervous\n"
HEADER = "condition_label,medical_abstract\n"


def write(tmp_path, text, name="docs.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_labels_multiline_quotes_and_maps_ids_to_indices(tmp_path):
    names = abstracts.read_label_names(write(tmp_path, LABELS, "labels.csv"))
    assert names == {1: "neoplasms", 2: "digestive", 3: "nervous"}
    docs = HEADER + '3,"A tumour, ""quoted"",\nover two lines."\n\n1,Plain text.\n'
    corpus = abstracts.read_abstracts(write(tmp_path, docs), names)
    assert corpus.texts == ('A tumour, "quoted",\nover two lines.', "Plain text.")
    assert corpus.labels.tolist() == [2, 0] and corpus.labels.dtype == np.int32
    assert corpus.class_names == ("neoplasms", "digestive", "nervous")
    assert corpus.subset([1]).texts == ("Plain text.",)


@pytest.mark.parametrize(
    "body, message",
    [
        ("", r"docs.csv: empty file"),
        (HEADER, r"docs.csv: expected data rows after the header"),
        ("label,text\n1,x\n", r"docs.csv:1: header is 'label,text'"),
        (HEADER + "1,ok\n2,a,b\n", r"docs.csv:3: 3 fields; expected 2"),
        (HEADER + '1,"multi\nline"\n7,x\n', r"docs.csv:4: unknown label 7; expected one of \[1, 2, 3\]"),
        (HEADER + "one,x\n", r"docs.csv:2: label 'one' is not an integer"),
        (HEADER + "1,x\n2,  \n", r"docs.csv:3: expected an abstract, got an empty field"),
        (HEADER + '1,"unclosed\n', r"docs.csv:2: malformed CSV"),
    ],
)
def test_rejected_abstracts(tmp_path, body, message):
    names = {1: "a", 2: "b", 3: "c"}
    with pytest.raises(ValueError, match=message):
        abstracts.read_abstracts(write(tmp_path, body), names)


@pytest.mark.parametrize(
    "body, message",
    [
        ("condition_label,condition_name\n1,a\n1,b\n", r"labels.csv:3: label 1 listed twice"),
        ("condition_label,condition_name\n1,\n", r"labels.csv:2: label 1 has an empty name"),
        ("condition_label\n1\n", r"labels.csv:1: header is 'condition_label'"),
    ],
)
def test_rejected_label_files(tmp_path, body, message):
    with pytest.raises(ValueError, match=message):
        abstracts.read_label_names(write(tmp_path, body, "labels.csv"))


def test_missing_folder_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="medical_tc_labels.csv: expected the medical-abstracts-tc folder"):
        abstracts.load(tmp_path)


def synthetic_corpus(seed=0, n=600, classes=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int32)
    texts = [f"doc {i}" for i in range(n)]
    # 30 texts repeated with a different label, as in the real file.
    for i in range(30):
        texts[n - 1 - i] = texts[i]
        labels[n - 1 - i] = (labels[i] + 1) % classes
    return abstracts.Abstracts(tuple(texts), labels, tuple(f"c{k}" for k in range(classes)))


def check_split(corpus, parts, fractions):
    rows = np.concatenate(list(parts.values()))
    assert sorted(rows.tolist()) == list(range(len(corpus)))  # a partition of the rows
    texts = {name: {corpus.texts[i] for i in part} for name, part in parts.items()}
    assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"] and not texts["val"] & texts["test"]
    totals = np.bincount(corpus.labels, minlength=len(corpus.class_names))
    for (name, counts), share in zip(abstracts.class_counts(corpus, parts).items(), fractions):
        # Stratified: every class within 2 documents of its share (duplicate groups are indivisible).
        np.testing.assert_allclose(counts, share * totals, atol=2, err_msg=name)


def test_split_is_a_stratified_partition_with_duplicates_on_one_side():
    corpus = synthetic_corpus()
    check_split(corpus, abstracts.split(corpus, (0.7, 0.1, 0.2), seed=3), (0.7, 0.1, 0.2))


def test_split_is_deterministic_per_seed():
    corpus = synthetic_corpus()
    first, again, other = (abstracts.split(corpus, seed=s) for s in (5, 5, 6))
    for name in abstracts.SPLIT_NAMES:
        np.testing.assert_array_equal(first[name], again[name])
    assert any(not np.array_equal(first[n], other[n]) for n in abstracts.SPLIT_NAMES)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="summing to 1"):
        abstracts.split(synthetic_corpus(), (0.8, 0.3, 0.1))


@pytest.mark.data
def test_real_corpus_and_its_split(abstracts_dir):
    corpus = abstracts.load(abstracts_dir)
    assert len(corpus) == 2888
    assert np.bincount(corpus.labels).tolist() == [633, 299, 385, 610, 961]  # as the data README states
    assert len(set(corpus.texts)) == 2770
    assert corpus.class_names[0] == "neoplasms" and corpus.class_names[4] == "general pathological conditions"
    parts = abstracts.split(corpus, seed=0)
    check_split(corpus, parts, (0.8, 0.1, 0.1))
    assert {name: len(rows) for name, rows in parts.items()} == {"train": 2311, "val": 289, "test": 288}
