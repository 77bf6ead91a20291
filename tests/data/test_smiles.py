"""The atom-level SMILES tokenizer against hand-tokenised strings, and its file:line error for a character it lacks."""

import pytest

from medjax.data import molecules
from medjax.data.smiles import tokenize_smiles
from medjax.errors import DataError

HAND_TOKENISED = {
    # Bracket atoms with hydrogens, chirality and charges are one token each; Cl is chlorine, not C + l.
    "C[C@@H](Cl)c1cc[nH]c1": ["C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "[nH]", "c", "1"],
    "BrCC(Br)=O": ["Br", "C", "C", "(", "Br", ")", "=", "O"],
    "C%10CCCCCCCCC%10": ["C", "%10", "C", "C", "C", "C", "C", "C", "C", "C", "C", "%10"],
    "[NH4+].[Cl-]": ["[NH4+]", ".", "[Cl-]"],
    "CC(=O)[O-]": ["C", "C", "(", "=", "O", ")", "[O-]"],
    "C/C=C\\C#N": ["C", "/", "C", "=", "C", "\\", "C", "#", "N"],
    "[2H]OB(O)c1ccsc1": ["[2H]", "O", "B", "(", "O", ")", "c", "1", "c", "c", "s", "c", "1"],
    "F[P-](F)(F)(F)(F)F": ["F", "[P-]", "(", "F", ")", "(", "F", ")", "(", "F", ")", "(", "F", ")", "F"],
}


@pytest.mark.parametrize("smiles", sorted(HAND_TOKENISED))
def test_tokens_match_the_hand_tokenised_form_and_join_back(smiles):
    tokens = tokenize_smiles(smiles)
    assert tokens == HAND_TOKENISED[smiles]
    assert "".join(tokens) == smiles


@pytest.mark.parametrize("smiles, char, position", [("CC X", " ", 3), ("CCL", "L", 3), ("C[nH", "[", 2),
                                                     ("Cc1ccccc1&", "&", 10)])
def test_a_character_the_regex_lacks_names_the_place_and_the_character(smiles, char, position):
    with pytest.raises(DataError) as error:
        tokenize_smiles(smiles, place="mols.csv:7")
    assert str(error.value).startswith("mols.csv:7: ")
    assert f"got {char!r} at position {position} of {smiles!r}" in str(error.value)


def test_the_csv_reader_names_the_file_and_line_of_an_untokenisable_smiles(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smiles,expt\nCCO,1.0\nCCO,2.0\nC C,3.0\n")
    with pytest.raises(DataError, match=rf"^{path}:4: .*got ' ' at position 2"):
        molecules.read_csv(path, "smiles", "expt")
