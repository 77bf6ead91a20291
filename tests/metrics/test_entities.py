"""Entity-level P/R/F1: hand-computed values, seqeval's default mode on hand-made and random tag sequences, and the
input checks that entity_prf adds to seqeval."""

import warnings

import numpy as np
import pytest
import seqeval.metrics as seqeval_metrics

from medjax.metrics.entities import entity_prf


def seqeval_prf(true_tags, pred_tags):
    with warnings.catch_warnings():
        # With its default zero_division="warn", seqeval warns on zero denominators and returns 0, as entity_prf does.
        warnings.simplefilter("ignore")
        return {
            "precision": seqeval_metrics.precision_score(true_tags, pred_tags),
            "recall": seqeval_metrics.recall_score(true_tags, pred_tags),
            "f1": seqeval_metrics.f1_score(true_tags, pred_tags),
        }


def assert_matches_seqeval(true_tags, pred_tags):
    ours = entity_prf(true_tags, pred_tags)
    theirs = seqeval_prf(true_tags, pred_tags)
    for key in ("precision", "recall", "f1"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=0, atol=1e-12, err_msg=key)


HAND_MADE = [
    # seqeval's docstring example: one of two entities right.
    ([["O", "O", "B-MISC", "I-MISC", "B-MISC", "O", "O"], ["B-PER", "I-PER", "O"]],
     [["O", "O", "B-MISC", "I-MISC", "B-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]),
    # IOB1 quirks: I- after O opens an entity; I- after another type opens one; B- splits adjacent entities.
    ([["I-Dis", "I-Dis", "O", "I-Dis", "B-Dis", "I-Chem", "I-Chem"]],
     [["B-Dis", "I-Dis", "O", "B-Dis", "B-Dis", "B-Chem", "I-Chem"]]),
    # BIOES: E- and S- close an entity; I- after E- opens one.
    ([["B-A", "E-A", "S-A", "I-A", "E-A", "O", "E-A"]],
     [["B-A", "I-A", "B-A", "B-A", "I-A", "O", "B-A"]]),
    # An entity running to the end of a sentence does not join the next sentence's first entity.
    ([["O", "B-A"], ["I-A", "O"]], [["O", "B-A"], ["B-A", "O"]]),
    # Nothing predicted (precision 0 by convention), nothing true (recall 0), nothing at all.
    ([["B-A", "O"]], [["O", "O"]]),
    ([["O", "O"]], [["B-A", "O"]]),
    ([["O", "O"]], [["O", "O"]]),
]


@pytest.mark.parametrize("true_tags, pred_tags", HAND_MADE)
def test_hand_made_sequences_match_seqeval(true_tags, pred_tags):
    assert_matches_seqeval(true_tags, pred_tags)


@pytest.mark.parametrize(
    "true_tags, pred_tags, expected",
    [
        # True: Dis(0,1), Dis(3,3). Predicted: Dis(0,1), Dis(3,4). One of two right on each side: P = R = F1 = 1/2.
        ([["B-Dis", "I-Dis", "O", "B-Dis", "O"]], [["B-Dis", "I-Dis", "O", "B-Dis", "I-Dis"]], (0.5, 0.5, 0.5)),
        # True: A(0,0), A(1,1) (B- splits them). Predicted: A(0,0), A(2,2). 1 of 2 each way: 1/2, 1/2, 1/2.
        ([["B-A", "B-A", "O"]], [["B-A", "O", "B-A"]], (0.5, 0.5, 0.5)),
        # True: A(0,1), B(3,3). Predicted: A(0,1). P = 1/1, R = 1/2, F1 = 2 * 1 * 1/2 / (3/2) = 2/3.
        ([["B-A", "I-A", "O", "B-B"]], [["B-A", "I-A", "O", "O"]], (1.0, 0.5, 2 / 3)),
        # A wrong type with the right boundaries does not count: True A(0,1); predicted B(0,1). All 0.
        ([["B-A", "I-A"]], [["B-B", "I-B"]], (0.0, 0.0, 0.0)),
        # IOB1 read leniently: I-Dis after O opens Dis(0,1) and Dis(3,3), the same entities as the IOB2 guess: all 1.
        ([["I-Dis", "I-Dis", "O", "I-Dis"]], [["B-Dis", "I-Dis", "O", "B-Dis"]], (1.0, 1.0, 1.0)),
        # Micro average over sentences: sentence 1 has 1 of 1 right, sentence 2 predicts 2 where 1 is true
        # (A(0,1) vs A(0,0), A(1,1)): correct 1, predicted 3, true 2 -> P 1/3, R 1/2, F1 2/5.
        ([["B-A"], ["B-A", "I-A"]], [["B-A"], ["B-A", "B-A"]], (1 / 3, 0.5, 0.4)),
        # No sentences at all: every ratio has a zero denominator.
        ([], [], (0.0, 0.0, 0.0)),
    ],
)
def test_hand_computed_values(true_tags, pred_tags, expected):
    result = entity_prf(true_tags, pred_tags)
    assert list(result) == ["precision", "recall", "f1"]
    np.testing.assert_allclose([result[k] for k in ("precision", "recall", "f1")], expected, rtol=0, atol=1e-12)


def test_zero_denominators_give_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert entity_prf([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        assert entity_prf([["B-A", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_tuples_and_arrays_of_tags_are_sentences():
    # seqeval itself reads only lists of lists; a tuple per sentence (as conll.Sentence.tags) must score the same.
    true_tags = [("B-A", "I-A", "O"), ("O", "B-B")]
    pred_tags = [np.array(["B-A", "I-A", "O"]), ("B-B", "B-B")]
    assert entity_prf(true_tags, pred_tags) == entity_prf([list(s) for s in true_tags], [list(s) for s in pred_tags])
    # True A(0,1), B(1,1); predicted A(0,1), B(0,0), B(1,1): correct 2, predicted 3, true 2 -> 2/3, 1, 4/5.
    np.testing.assert_allclose(list(entity_prf(true_tags, pred_tags).values()), [2 / 3, 1.0, 0.8], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_match_seqeval(seed):
    rng = np.random.default_rng(seed)
    # Every prefix of every scheme and two types, so the random tags are full of ill-formed IOB2.
    vocab = ["O"] * 4 + [f"{p}-{t}" for p in "BIES" for t in ("Dis", "Chem")]
    lengths = rng.integers(0, 12, size=40)
    true_tags = [list(rng.choice(vocab, size=n)) for n in lengths]
    # Predictions: the truth with about a third of its tags changed, so the scores are neither 0 nor 1.
    pred_tags = [[rng.choice(vocab) if rng.random() < 0.3 else tag for tag in sentence] for sentence in true_tags]
    assert_matches_seqeval(true_tags, pred_tags)


def test_rejects_unknown_tags_and_mismatched_lengths():
    with pytest.raises(ValueError, match="unknown tag 'X-Dis'"):
        entity_prf([["X-Dis"]], [["O"]])
    with pytest.raises(ValueError, match="unknown tag 'B-'"):
        entity_prf([["B-"]], [["O"]])
    with pytest.raises(ValueError, match="unknown tag 'O-Dis'"):
        entity_prf([["O"]], [["O-Dis"]])
    with pytest.raises(ValueError, match="sentence 1: 2 true tags but 1 predicted"):
        entity_prf([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="1 sentences but pred_tags has 2"):
        entity_prf([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="scheme must be one of"):
        entity_prf([["O"]], [["O"]], scheme="IOE2")
