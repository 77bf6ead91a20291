"""Tokenizer, vocabulary, character ids and padded batches, against hand-computed values."""

import doctest

import numpy as np
import pytest

from medjax.data import vocab as vocab_module
from medjax.data.vocab import (
    CHAR_VOCAB_SIZE,
    PAD_ID,
    UNK_ID,
    Vocabulary,
    bucket_length,
    char_ids,
    pad_batch,
    tokenize,
)


def test_docstring_example_runs():
    failures, _ = doctest.testmod(vocab_module)
    assert failures == 0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("age 39 +/- 5.3 yr", ["age", "39", "+", "/", "-", "5.3", "yr"]),
        ("(p less than 0.02).", ["(", "p", "less", "than", "0.02", ")", "."]),
        ("IL-6 rose 1,000-fold", ["IL", "-", "6", "rose", "1,000", "-", "fold"]),
        ("10% lidocaine", ["10", "%", "lidocaine"]),
        ("β-blockers", ["β", "-", "blockers"]),
        ("  \n\t ", []),
    ],
)
def test_tokenize(text, expected):
    assert tokenize(text) == expected


def test_tokenize_rejects_non_string():
    with pytest.raises(TypeError, match="expects a str, got list"):
        tokenize(["a", "b"])


def test_build_orders_by_count_then_alphabet_and_applies_min_count():
    docs = [["b", "a", "c"], ["a", "b", "d"], ["a"]]
    vocab = Vocabulary.build(docs, min_count=2)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b")
    assert vocab.encode(["a", "b", "c", "zzz"]).tolist() == [2, 3, UNK_ID, UNK_ID]
    assert vocab.encode(["a"]).dtype == np.int32
    assert vocab.decode([2, 3, PAD_ID, UNK_ID]) == ["a", "b", "<unk>"]


def test_lower_and_fold_digits_are_applied_at_build_and_lookup():
    docs = [["Aspirin", "100", "mg"], ["aspirin", "250", "MG"]]
    vocab = Vocabulary.build(docs, lower=True, fold_digits=True)
    # aspirin x2, mg x2, "000" x2: all tied at 2, alphabetical.
    assert vocab.tokens == ("<pad>", "<unk>", "000", "aspirin", "mg")
    assert vocab.encode(["ASPIRIN", "999", "Mg", "75"]).tolist() == [3, 2, 4, UNK_ID]
    plain = Vocabulary.build(docs)
    assert plain.encode(["ASPIRIN"]).tolist() == [UNK_ID]
    assert len(plain) == 2 + 6


def test_max_size_keeps_the_most_frequent():
    vocab = Vocabulary.build([["x", "x", "x", "y", "y", "z"]], max_size=4)
    assert vocab.tokens == ("<pad>", "<unk>", "x", "y")


def test_special_tokens_in_the_data_do_not_get_new_ids():
    vocab = Vocabulary.build([["<pad>", "<unk>", "a"]])
    assert vocab.tokens == ("<pad>", "<unk>", "a")


def test_json_round_trip():
    vocab = Vocabulary.build([["Cancer", "12", "cancer"]], lower=True, fold_digits=True)
    again = Vocabulary.from_json(vocab.to_json())
    assert again == vocab
    assert again.encode(["CANCER", "34"]).tolist() == vocab.encode(["CANCER", "34"]).tolist()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: Vocabulary.build([["a"]], min_count=0), ValueError, "min_count must be >= 1, got 0"),
        (lambda: Vocabulary.build([["a"]], max_size=1), ValueError, "max_size must be >= 2"),
        (lambda: Vocabulary.build(["a text, not tokens"]), TypeError, "got a str"),
        (lambda: Vocabulary(("a", "b")), ValueError, "starts with"),
        (lambda: Vocabulary(("<pad>", "<unk>", "a", "a")), ValueError, "duplicate tokens"),
        (lambda: Vocabulary.build([["a"]]).encode("a"), TypeError, "got a str"),
        (lambda: Vocabulary.from_json('{"tokens": ["<pad>", "<unk>"]}'), ValueError, "lacks keys"),
    ],
)
def test_rejected_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_char_ids_are_utf8_bytes_plus_one_truncated_and_padded():
    ids = char_ids(["Ab", "βx", "long"], max_word_len=3)
    assert ids.dtype == np.int32 and ids.shape == (3, 3)
    assert ids[0].tolist() == [ord("A") + 1, ord("b") + 1, 0]
    assert ids[1].tolist() == [0xCE + 1, 0xB2 + 1, ord("x") + 1]  # β is two UTF-8 bytes
    assert ids[2].tolist() == [ord("l") + 1, ord("o") + 1, ord("n") + 1]
    assert ids.max() < CHAR_VOCAB_SIZE
    with pytest.raises(ValueError, match="max_word_len must be >= 1"):
        char_ids(["a"], 0)


@pytest.mark.parametrize(
    "length, bucket, expected",
    [(1, 16, 16), (16, 16, 16), (17, 16, 32), (0, 8, 8), (5, (4, 8, 64), 8), (64, (64, 4), 64)],
)
def test_bucket_length(length, bucket, expected):
    assert bucket_length(length, bucket) == expected


def test_bucket_length_rejects_too_long_and_bad_bucket():
    with pytest.raises(ValueError, match="longer than the largest bucket 8"):
        bucket_length(9, (4, 8))
    with pytest.raises(ValueError, match="bucket must be >= 1"):
        bucket_length(3, 0)


def test_pad_batch_values_mask_and_bucket():
    ids, mask = pad_batch([np.array([5, 6, 7], np.int32), np.array([], np.int32), np.array([9], np.int32)], bucket=4)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [0, 0, 0, 0], [9, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert ids.dtype == np.int32 and mask.dtype == bool


def test_pad_batch_truncates_to_max_length():
    ids, mask = pad_batch([np.arange(1, 11), np.arange(1, 4)], bucket=8, max_length=6)
    assert ids.shape == (2, 6)
    np.testing.assert_array_equal(ids[0], [1, 2, 3, 4, 5, 6])
    assert mask.sum(axis=1).tolist() == [6, 3]


def test_pad_batch_of_character_ids():
    words = [char_ids(["ab", "c"], 4), char_ids(["d"], 4)]
    ids, mask = pad_batch(words, bucket=2)
    assert ids.shape == (2, 2, 4)
    np.testing.assert_array_equal(ids[1, 1], [0, 0, 0, 0])
    np.testing.assert_array_equal(ids[0], words[0])
    assert mask.tolist() == [[True, True], [True, False]]


def test_pad_batch_rejects_mismatched_shapes_and_empty_batch():
    with pytest.raises(ValueError, match=r"sequence 1 has shape \(2, 3\); expected \[length, \*\(4,\)\]"):
        pad_batch([np.zeros((2, 4), np.int32), np.zeros((2, 3), np.int32)])
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_batch([])
