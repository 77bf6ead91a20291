"""SentencePiece subwords: trained from given sentences, saved, reloaded identically, decoded back to the text."""

import pytest

from medjax.data import subwords
from medjax.errors import MissingPath

SENTENCES = ["the patient has a fever and a cough", "wash your hands often", "the fever lasted three days",
             "le patient a de la fièvre et une toux",
             "lavez-vous souvent les mains", "la fièvre a duré trois jours"] * 5


def test_train_save_load_round_trip(tmp_path):
    sp = subwords.train(SENTENCES, tmp_path / "work" / "subwords", vocab_size=60)
    ids = subwords.encode(sp, ["the patient has a fever"])
    assert ids[0][-1] == subwords.EOS and subwords.UNK not in ids[0]
    again = subwords.load(tmp_path / "work" / "subwords.model")
    assert subwords.encode(again, ["wash your hands"]) == subwords.encode(sp, ["wash your hands"])
    assert subwords.decode(again, [[subwords.BOS] + ids[0] + [subwords.PAD, 7]]) == ["the patient has a fever"]
    assert sp.pad_id() == subwords.PAD and sp.bos_id() == subwords.BOS


def test_missing_model_is_a_one_line_error(tmp_path):
    with pytest.raises(MissingPath, match="subwords.model: expected the subword model"):
        subwords.load(tmp_path / "subwords.model")
