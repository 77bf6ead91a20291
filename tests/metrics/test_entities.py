"""Entity-level P/R/F1 against seqeval's default mode, on hand-made and random tag sequences."""

import warnings

import numpy as np
import pytest

seqeval_metrics = pytest.importorskip("seqeval.metrics")
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

from medjax.metrics.entities import entity_counts, entity_prf, get_entities


def seqeval_prf(true_tags, pred_tags):
    with warnings.catch_warnings():
        # seqeval warns on zero denominators and returns 0, as entity_prf does.
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


def test_hand_computed_values():
    # True: Dis(0,1), Dis(3,3). Predicted: Dis(0,1), Dis(3,4). One of two right on each side.
    result = entity_prf([["B-Dis", "I-Dis", "O", "B-Dis", "O"]], [["B-Dis", "I-Dis", "O", "B-Dis", "I-Dis"]])
    assert result == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert entity_counts([["B-A", "B-A", "O"]], [["B-A", "O", "B-A"]]) == (1, 2, 2)


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
    for sentence in true_tags:
        assert get_entities(sentence) == seqeval_entities(sentence)


def test_rejects_unknown_tags_and_mismatched_lengths():
    with pytest.raises(ValueError, match="unknown tag 'X-Dis'"):
        entity_prf([["X-Dis"]], [["O"]])
    with pytest.raises(ValueError, match="unknown tag 'B-'"):
        entity_prf([["B-"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1: 2 true tags but 1 predicted"):
        entity_prf([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="1 sentences but pred_tags has 2"):
        entity_prf([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="scheme must be one of"):
        entity_prf([["O"]], [["O"]], scheme="IOE2")
