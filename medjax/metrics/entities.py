"""Entity-level precision, recall and F1 from seqeval's default (conlleval-compatible) mode, behind input checks.

An entity is a (type, first token, last token) chunk; a predicted entity counts only if a true entity has the same
type and the same boundaries. Counts are summed over all sentences and types (micro average), and a ratio with a zero
denominator is 0. seqeval's default chunker is lenient like conlleval: an I- after O or after another type opens an
entity, so IOB1, IOB2 and BIOES tags are all read without a scheme switch. For the entities themselves, use
``seqeval.metrics.sequence_labeling.get_entities``.

What is added here: one-line errors for malformed tags (seqeval only warns and reads them anyway) and for mismatched
sentence counts or lengths, any sequence of strings accepted per sentence, and 0s for no sentences at all.

Example:
  >>> entity_prf([["B-Dis", "I-Dis", "O"]], [["B-Dis", "O", "O"]])
  {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
"""

from __future__ import annotations

import re
from typing import Sequence


# Schemes whose tags the lenient chunker reads; seqeval's default mode decodes them all with one rule.
SCHEMES = ("IOB1", "IOB2", "BIOES")
# O, or a B-/I-/E-/S- prefix with an entity type; a bare prefix ("B") is read by seqeval as the type "_".
_TAG = re.compile(r"O|[BIES](?:-.+)?", re.DOTALL)


def entity_prf(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], scheme: str = "IOB2"
) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 over sentences: seqeval's ``precision_score``, ``recall_score``
    and ``f1_score`` in their default mode.

    Args:
      true_tags: the gold tags, one sequence of strings per sentence.
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
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"true_tags has {len(true_tags)} sentences but pred_tags has {len(pred_tags)}")
    # seqeval wants lists of lists exactly (a tuple per sentence is read as one long sentence).
    y_true, y_pred = [list(s) for s in true_tags], [list(s) for s in pred_tags]
    for index, (truth, guess) in enumerate(zip(y_true, y_pred)):
        if len(truth) != len(guess):
            raise ValueError(f"sentence {index}: {len(truth)} true tags but {len(guess)} predicted tags")
    for tag in {tag for sentences in (y_true, y_pred) for sentence in sentences for tag in sentence}:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise ValueError(f"unknown tag {tag!r}: expected O or one of B-/I-/E-/S- followed by an entity type")
    if not y_true:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # Imported here: seqeval imports scikit-learn (~2 s), which every `medjax` command would otherwise pay.
    from seqeval import metrics as seqeval

    return {
        "precision": float(seqeval.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(seqeval.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(seqeval.f1_score(y_true, y_pred, zero_division=0)),
    }
