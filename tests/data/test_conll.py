"""The CoNLL reader on every accepted format and every rejected input, and on the real NCBI-disease files."""

import pytest

from medjax.data.conll import Sentence, read_conll, tag_names, to_iob2
from seqeval.metrics.sequence_labeling import get_entities


def write(tmp_path, text, name="data.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


IOB2 = "Familial\tB-Disease\nbreast\tI-Disease\ncancer\tI-Disease\nin\tO\nmen\tO\n\nATM\tO\nloss\tB-Disease\n"
EXPECTED = [
    Sentence(("Familial", "breast", "cancer", "in", "men"), ("B-Disease", "I-Disease", "I-Disease", "O", "O")),
    Sentence(("ATM", "loss"), ("O", "B-Disease")),
]


def test_reads_iob2_with_tabs(tmp_path):
    assert read_conll(write(tmp_path, IOB2)) == EXPECTED


def test_reads_single_space_separator_crlf_and_extra_blank_lines(tmp_path):
    text = "\r\n\r\n" + IOB2.replace("\t", " ").replace("\n", "\r\n").replace("\r\n\r\n", "\r\n  \r\n\r\n") + "\r\n\r\n"
    assert read_conll(write(tmp_path, text)) == EXPECTED


def test_tab_separated_tokens_may_hold_spaces(tmp_path):
    sentences = read_conll(write(tmp_path, "type 2\tB-Disease\ndiabetes\tI-Disease\n"))
    assert sentences == [Sentence(("type 2", "diabetes"), ("B-Disease", "I-Disease"))]


def test_iob1_is_normalised_to_iob2(tmp_path):
    # IOB1: I- opens an entity after O; B- only splits two adjacent entities of one type.
    text = "a\tI-Dis\nb\tI-Dis\nc\tB-Dis\nd\tO\ne\tI-Chem\nf\tI-Dis\n"
    (sentence,) = read_conll(write(tmp_path, text))
    assert sentence.tags == ("B-Dis", "I-Dis", "B-Dis", "O", "B-Chem", "B-Dis")


def test_bioes_is_normalised_to_iob2(tmp_path):
    text = "a\tB-Dis\nb\tI-Dis\nc\tE-Dis\nd\tS-Dis\ne\tO\nf\tS-Chem\ng\tB-Dis\nh\tE-Dis\n"
    (sentence,) = read_conll(write(tmp_path, text))
    assert sentence.tags == ("B-Dis", "I-Dis", "I-Dis", "B-Dis", "O", "B-Chem", "B-Dis", "I-Dis")


@pytest.mark.parametrize(
    "tags",
    [["I-A", "I-A", "O", "I-B", "B-B", "I-B"], ["B-A", "E-A", "S-A", "I-A", "E-A", "E-A"], ["S-A", "I-B", "E-B", "B-A"]],
)
def test_normalisation_keeps_the_entities(tags):
    # Scoring a file before or after normalisation must give the same entities.
    assert get_entities(to_iob2(tags)) == get_entities(tags)


def test_docstart_lines_separate_documents(tmp_path):
    text = "-DOCSTART-\tO\n\nNone\tO\n-DOCSTART-\tO\nFever\tB-Dis\n"
    assert read_conll(write(tmp_path, text)) == [Sentence(("None",), ("O",)), Sentence(("Fever",), ("B-Dis",))]


def test_tag_names_lists_b_and_i_of_every_type():
    sentences = [Sentence(("a", "b"), ("B-Dis", "O")), Sentence(("c",), ("B-Chem",))]
    assert tag_names(sentences) == ["O", "B-Chem", "I-Chem", "B-Dis", "I-Dis"]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("a\tO\nb\tO\textra\n", 2, "expected 2 columns"),
        ("a\tO\n\nlonely\n", 3, "expected 2 columns"),
        ("a b c\n", 1, "expected 2 columns"),
        ("\tO\n", 1, "expected 2 columns"),
        ("a\tO\nb\tX-Dis\n", 2, "unknown tag 'X-Dis'"),
        ("a\tB-\n", 1, "unknown tag 'B-'"),
        ("a\tB\n", 1, "unknown tag 'B'"),
        ("a\to\n", 1, "unknown tag 'o'"),
    ],
)
def test_malformed_lines_and_unknown_tags_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        read_conll(path)
    assert f"{path}:{line}:" in str(error.value)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_files_are_rejected(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="expected sentences") as error:
        read_conll(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_conll(tmp_path / "missing.tsv")


@pytest.mark.data
def test_ncbi_disease_counts_match_its_readme(ncbi_dir):
    # Sentence, token and mention counts from the data set's README.
    expected = {"train": (5424, 135701, 5134), "devel": (923, 23969, 787), "test": (940, 24497, 960)}
    for split, (n_sentences, n_tokens, n_mentions) in expected.items():
        sentences = read_conll(ncbi_dir / f"{split}.tsv")
        assert len(sentences) == n_sentences
        assert sum(len(s.tokens) for s in sentences) == n_tokens
        assert sum(len(get_entities(list(s.tags))) for s in sentences) == n_mentions
        assert tag_names(sentences) == ["O", "B-Disease", "I-Disease"]
