"""SMILES strings to atom-level tokens, with the regular expression of the molecular-transformer literature.

Schwaller et al. (2019, "Molecular Transformer", ACS Cent. Sci. 5:1572) split a SMILES into chemically meaningful
tokens: a bracket atom (``[nH]``, ``[C@@H]``, ``[O-]``) is one token, so are the two-letter organic atoms ``Br`` and
``Cl``, a two-digit ring bond ``%10`` and every bond, branch or ring symbol. Character-level models would otherwise
have to learn that ``C`` followed by ``l`` is chlorine rather than carbon.

The regex alone would silently skip what it does not cover (a space, a stray ``X``); `tokenize_smiles` checks that the
tokens join back to the whole string and otherwise names the file, line and character.

Example:
  >>> tokenize_smiles("C[C@@H](Cl)c1cc[nH]c1")
  ['C', '[C@@H]', '(', 'Cl', ')', 'c', '1', 'c', 'c', '[nH]', 'c', '1']
  >>> tokenize_smiles("CXC", place="mols.csv:7")
  DataError: mols.csv:7: expected a SMILES of characters the atom-level tokenizer covers, got 'X' at position 2 ...
"""

from __future__ import annotations

import re

from medjax.errors import DataError

# Schwaller et al. 2019, verbatim: bracket atoms first, then the two-letter atoms before their one-letter prefixes
# (``Br?`` matches ``B`` or ``Br``, ``Cl?`` ``C`` or ``Cl``), then the aromatic atoms, bonds and ring closures.
SMILES_PATTERN = (r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}"
                  r"|[0-9])")
_SMILES_RE = re.compile(SMILES_PATTERN)


def tokenize_smiles(smiles: str, place: str | None = None) -> list[str]:
    """Splits one SMILES string into atom-level tokens.

    Args:
      smiles: a SMILES string, e.g. ``"CC(=O)Oc1ccccc1C(=O)O"`` (aspirin).
      place: where the string came from (``"file.csv:12"``), for the error message.

    Returns:
      The n tokens in order; ``"".join(tokens) == smiles``.

    Raises:
      DataError: at ``place``, naming the first character no token covers and its position (1-based), e.g. a
        space, a lower-case ``l`` on its own, or an unclosed bracket ``[nH``.
    """
    if not isinstance(smiles, str):
        raise TypeError(f"tokenize_smiles expects a str, got {type(smiles).__name__}")
    tokens, position = [], 0
    for match in _SMILES_RE.finditer(smiles):
        if match.start() != position:
            break
        tokens.append(match.group())
        position = match.end()
    if position != len(smiles):
        char = smiles[position]
        raise DataError(place, f"expected a SMILES of characters the atom-level tokenizer covers, got {char!r} at "
                               f"position {position + 1} of {smiles!r}")
    return tokens
