"""Entity-level precision, recall and F1, computed exactly as seqeval's default (conlleval-compatible) mode does.

An entity is a (type, first token, last token) chunk; a predicted entity counts only if a true entity has the same
type and the same boundaries. Counts are summed over all sentences and types (micro average), and a ratio with a zero
denominator is 0, as in seqeval (which also warns). The chunker is lenient like conlleval: an I- after O or after
another type opens an entity, so IOB1, IOB2 and BIOES tags are all read without a scheme switch.

Host-side NumPy/Python, on lists of tag strings.

Example:
  >>> entity_prf([["B-Dis", "I-Dis", "O"]], [["B-Dis", "O", "O"]])
  {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
"""

from __future__ import annotations

from typing import Sequence

# Schemes whose tags the lenient chunker reads; seqeval's default mode decodes them all with one rule.
SCHEMES = ("IOB1", "IOB2", "BIOES")
_PREFIXES = ("O", "B", "I", "E", "S")


def _prefix_and_type(tag: str) -> tuple[str, str]:
    # seqeval reads "B-PER" as ("B", "PER") and a bare prefix such as "B" or "O" with the type "_".
    prefix, entity_type = tag[:1], tag[2:] if tag[1:2] == "-" else ""
    malformed = len(tag) > 1 and (prefix == "O" or tag[1:2] != "-" or not entity_type)
    if prefix not in _PREFIXES or malformed:
        raise ValueError(f"unknown tag {tag!r}: expected O or one of B-/I-/E-/S- followed by an entity type")
    return prefix, entity_type or "_"


def _ends(prev_prefix: str, prefix: str, prev_type: str, entity_type: str) -> bool:
    """Whether an entity closes between the previous token and this one (seqeval's `end_of_chunk`)."""
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return prev_prefix != "O" and prev_type != entity_type


def _starts(prev_prefix: str, prefix: str, prev_type: str, entity_type: str) -> bool:
    """Whether an entity opens at this token (seqeval's `start_of_chunk`)."""
    if prefix in ("B", "S"):
        return True
    if prev_prefix in ("E", "S", "O") and prefix in ("E", "I"):
        return True
    return prefix != "O" and prev_type != entity_type


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence as ``(type, start, end)`` with ``end`` inclusive.

    Example:
      >>> get_entities(["B-PER", "I-PER", "O", "I-LOC"])
      [('PER', 0, 1), ('LOC', 3, 3)]
    """
    entities = []
    prev_prefix, prev_type, begin = "O", "_", 0
    # A trailing O closes an entity that runs to the end of the sentence.
    for i, tag in enumerate([*tags, "O"]):
        prefix, entity_type = _prefix_and_type(tag)
        if _ends(prev_prefix, prefix, prev_type, entity_type):
            entities.append((prev_type, begin, i - 1))
        if _starts(prev_prefix, prefix, prev_type, entity_type):
            begin = i
        prev_prefix, prev_type = prefix, entity_type
    return entities


def entity_counts(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> tuple[int, int, int]:
    """``(correct, predicted, true)`` entity counts summed over sentences; sums combine across batches or files.

    Raises:
      ValueError: the number of sentences, or the length of a sentence, differs between the two lists.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"true_tags has {len(true_tags)} sentences but pred_tags has {len(pred_tags)}")
    correct = predicted = true = 0
    for index, (truth, guess) in enumerate(zip(true_tags, pred_tags)):
        if len(truth) != len(guess):
            raise ValueError(f"sentence {index}: {len(truth)} true tags but {len(guess)} predicted tags")
        true_entities = set(get_entities(truth))
        pred_entities = set(get_entities(guess))
        correct += len(true_entities & pred_entities)
        predicted += len(pred_entities)
        true += len(true_entities)
    return correct, predicted, true


def prf_from_counts(correct: int, predicted: int, true: int) -> dict[str, float]:
    """Micro precision, recall and F1 from entity counts; 0 where a denominator is 0 (seqeval's default)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_prf(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], scheme: str = "IOB2"
) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 over sentences, equal to seqeval's default mode.

    Args:
      true_tags: the gold tags, one list of strings per sentence.
      pred_tags: the predicted tags, same number and lengths of sentences.
      scheme: the tagging scheme of both lists, one of ``SCHEMES``. Like seqeval's default (``mode=None``), the
        chunker is lenient and reads all three the same way; the argument documents the input and is checked.

    Returns:
      ``{"precision": float, "recall": float, "f1": float}``.

    Raises:
      ValueError: an unknown scheme or tag, or mismatched sentence counts or lengths.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return prf_from_counts(*entity_counts(true_tags, pred_tags))
