"""A reader for CoNLL-style named-entity files: one ``token<TAB>tag`` per line, a blank line between sentences.

The tags may follow IOB1, IOB2 or BIOES (any entity types, even mixed in one file); `read_conll` returns them in IOB2,
the form the taggers are trained on. The conversion uses the same chunk boundaries as seqeval's default
(conlleval-style) chunker, so a file scores the same before and after normalisation.

Example:
  >>> sentences = read_conll("ncbi-disease/train.tsv")
  >>> sentences[0].tokens[:3], sentences[0].tags[:3]
  (('Identification', 'of', 'APC2'), ('O', 'O', 'O'))
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterable, Sequence

from medjax.data.files import read_text
from medjax.errors import DataError, where

# The prefixes of the schemes accepted on input; E- and S- (BIOES) are folded into B-/I- (IOB2).
PREFIXES = ("B", "I", "E", "S")
# A CoNLL-2003 document separator; it is not a token of any sentence.
DOCSTART = "-DOCSTART-"


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One sentence: its tokens and their IOB2 tags (same length), and the line of the file it starts on."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    line: int = dataclasses.field(default=0, compare=False)


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-Disease" -> ("B", "Disease")``, ``"O" -> ("O", "")``; raises ValueError on anything else."""
    if tag == "O":
        return "O", ""
    prefix, sep, entity_type = tag.partition("-")
    if sep != "-" or prefix not in PREFIXES or not entity_type:
        raise ValueError(f"unknown tag {tag!r}: expected 'O' or one of B-/I-/E-/S- followed by an entity type")
    return prefix, entity_type


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Rewrites one sentence's IOB1, IOB2 or BIOES tags as IOB2.

    A tag opens a new entity when seqeval's default chunker would start one there: on B-/S-, on a change of type,
    and on I-/E- after O, E- or S-. Every other entity tag continues the open entity (I-).

    Args:
      tags: the tags of one sentence, e.g. ``["I-Dis", "I-Dis", "O"]`` (IOB1) or ``["B-Dis", "E-Dis", "S-Dis"]``.

    Returns:
      The IOB2 tags, e.g. ``["B-Dis", "I-Dis", "O"]`` and ``["B-Dis", "I-Dis", "B-Dis"]``.

    Raises:
      ValueError: a tag is not O nor B-/I-/E-/S- with a type.
    """
    result = []
    prev_prefix, prev_type = "O", ""
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix == "O":
            result.append("O")
        else:
            continues = prev_prefix in ("B", "I") and prefix in ("I", "E") and entity_type == prev_type
            result.append(("I-" if continues else "B-") + entity_type)
        prev_prefix, prev_type = prefix, entity_type
    return result


def _parse_line(line: str, place: str) -> tuple[str, str]:
    # A TAB separates the columns when there is one (tokens may then hold spaces); otherwise a single space does.
    columns = line.split("\t") if "\t" in line else line.split(" ")
    if len(columns) != 2 or not columns[0]:
        raise DataError(place, f"expected 2 columns 'token<TAB>tag' (or 'token tag'), got {len(columns)}: {line!r}")
    token, tag = columns
    try:
        split_tag(tag)
    except ValueError as error:
        raise DataError(place, str(error)) from None
    return token, tag


def parse_conll(lines: Iterable[str], source: str = "<lines>") -> list[Sentence]:
    """Parses CoNLL lines (see `read_conll`); ``source`` names the input in error messages."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def close() -> None:
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(to_iob2(tags)), start))
        tokens.clear()
        tags.clear()

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            close()
            continue
        token, tag = _parse_line(line, where(source, number))
        if token == DOCSTART:
            close()
            continue
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    close()
    if not sentences:
        raise DataError(source, "expected sentences (token<TAB>tag lines), got an empty file or only blank lines")
    return sentences


def read_conll(path: str | pathlib.Path) -> list[Sentence]:
    """Reads a CoNLL/IOB file into sentences with IOB2 tags.

    Format: one ``token<TAB>tag`` (or ``token tag``) per line; blank lines separate sentences; ``-DOCSTART-`` lines
    are skipped. Tags are O, B-X, I-X, E-X or S-X for any type X, in IOB1, IOB2 or BIOES.

    Args:
      path: the file to read.

    Returns:
      The sentences in file order, tags normalised to IOB2.

    Raises:
      medjax.errors.MissingPath: the file does not exist.
      medjax.errors.DataError: bytes that are not UTF-8, a line without exactly two columns, an unknown tag, or a
        file with no sentence; the message names the file and the line.
    """
    return parse_conll(read_text(path, "a CoNLL file").split("\n"), source=str(path))


def tag_names(sentences: Iterable[Sentence]) -> list[str]:
    """The IOB2 tag set of some sentences: ``"O"`` first (id 0), then B- and I- of each entity type, types sorted.

    Both B- and I- are listed for every type seen, so a split whose I- tags never occur in training still encodes.

    Example:
      >>> tag_names([Sentence(("a", "b"), ("B-Dis", "O"))])
      ['O', 'B-Dis', 'I-Dis']
    """
    types = sorted({tag[2:] for sentence in sentences for tag in sentence.tags if tag != "O"})
    return ["O"] + [f"{prefix}-{entity_type}" for entity_type in types for prefix in ("B", "I")]
