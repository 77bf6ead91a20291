"""Parallel text for translation: TMX 1.4 translation memories, plain line-aligned files, and a split by document.

`read_tmx` reads any language pair of a TMX file (``<tu tuid>``/``<tuv xml:lang>``/``<seg>``; region subtags such as
``es-419`` are matched exactly, case-insensitively; XML entities are decoded by the parser). `read_plain` reads a
source file and a target file of one sentence a line. `split_by_document` holds out whole documents (the ``tuid``
prefix before ``:`` in TICO-19, ``PubMed_8:12`` -> ``PubMed_8``), seeded, so no document is on two sides.
Every user mistake is a one-line `DataError` naming the file (and line where there is one).

Example:
  >>> pairs = read_tmx("../shared/data/tico19-en-fr/all.en-fr.tmx", "en", "fr")
  >>> len(pairs), pairs.documents[0]           # (3071, 'CMU_1')
  >>> train, valid, test = split_by_document(pairs, (0.8, 0.1, 0.1), seed=0)
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ElementTree
from typing import Sequence

import numpy as np

from medjax.data.files import read_text
from medjax.errors import DataError, MissingPath, where

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Aligned sentence pairs.

    Attributes:
      source, target: the sentences, one per pair.
      documents: the document each pair comes from (TMX ``tuid`` prefix; the file name for plain text).
      places: ``file:line`` of each pair, for messages.
    """

    source: tuple[str, ...]
    target: tuple[str, ...]
    documents: tuple[str, ...]
    places: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.source)

    def subset(self, rows: Sequence[int]) -> "Pairs":
        return Pairs(*(tuple(field[i] for i in rows) for field in
                       (self.source, self.target, self.documents, self.places)))


def _document(tuid: str | None, index: int) -> str:
    if not tuid:
        return f"tu{index}"
    return tuid.rsplit(":", 1)[0] if ":" in tuid else tuid


def _normal(text: str) -> str:
    return " ".join(text.split())


def read_tmx(path: str | os.PathLike, source: str, target: str) -> Pairs:
    """The ``source``-``target`` pairs of a TMX file, in file order.

    Args:
      path: a ``.tmx`` file (TMX 1.4, UTF-8).
      source, target: language codes as written in ``xml:lang`` (``en``, ``fr``, ``es-419``); matched
        case-insensitively. Units lacking either language are skipped; a file with none is an error.

    Raises:
      MissingPath: no such file. DataError: malformed XML (with its line), no unit holds both languages (naming
        the languages found), a ``<tuv>`` without ``<seg>``, or an empty segment (with the unit's line).
    """
    path = str(path)
    if not os.path.isfile(path):
        raise MissingPath(path, "expected a TMX file, got no such file")
    want = source.lower(), target.lower()
    src, tgt, docs, places, found = [], [], [], [], set()
    try:
        # iterparse gives no line numbers per element; the parser's position at each unit's end tag gives them.
        parser = ElementTree.XMLPullParser(events=("end",))
        with open(path, "rb") as handle:
            line_no = 0
            for raw in handle:
                line_no += 1
                parser.feed(raw)
                for _, element in parser.read_events():
                    if element.tag != "tu":
                        continue
                    segments = {}
                    for tuv in element.iter("tuv"):
                        lang = (tuv.get(XML_LANG) or tuv.get("lang") or "").lower()
                        found.add(lang)
                        seg = tuv.find("seg")
                        if lang not in want:
                            continue
                        if seg is None:
                            raise DataError(where(path, line_no),
                                            f"expected a <seg> in the <tuv xml:lang=\"{lang}\"> of unit "
                                            f"{element.get('tuid')!r}, got none")
                        text = _normal("".join(seg.itertext()))
                        if not text:
                            raise DataError(where(path, line_no),
                                            f"expected text in the {lang} <seg> of unit {element.get('tuid')!r}, "
                                            "got an empty segment")
                        segments[lang] = text
                    if want[0] in segments and want[1] in segments:
                        src.append(segments[want[0]])
                        tgt.append(segments[want[1]])
                        docs.append(_document(element.get("tuid"), len(docs)))
                        places.append(where(path, line_no))
                    element.clear()
            parser.close()
    except ElementTree.ParseError as error:
        line = error.position[0] if getattr(error, "position", None) else None
        message = str(error).split(":")[0]
        raise DataError(where(path, line), f"expected well-formed XML, got {message}") from None
    if not src:
        langs = ", ".join(sorted(found)) or "none"
        raise DataError(path, f"expected units in both {source!r} and {target!r}, got languages: {langs}")
    return Pairs(tuple(src), tuple(tgt), tuple(docs), tuple(places))


def _lines(path: str) -> list[str]:
    """The file's lines as UTF-8 (a byte-order mark dropped); bytes that are not UTF-8 name their line and column."""
    if not os.path.isfile(path):
        raise MissingPath(path, "expected a text file of one sentence a line, got no such file")
    return read_text(path, "a text file of one sentence a line").splitlines()


def read_plain(source_path: str | os.PathLike, target_path: str | os.PathLike) -> Pairs:
    """Line-aligned parallel files: line i of the source translates to line i of the target.

    Raises:
      DataError: files of different lengths (naming the first line present in one only), or an empty line.
    """
    source_path, target_path = str(source_path), str(target_path)
    src, tgt = _lines(source_path), _lines(target_path)
    if len(src) != len(tgt):
        shorter, longer = (source_path, target_path) if len(src) < len(tgt) else (target_path, source_path)
        first = min(len(src), len(tgt)) + 1
        fewer, more = sorted((len(src), len(tgt)))
        raise DataError(where(longer, first), f"expected as many lines as {shorter} ({fewer}), got {more}")
    for number, (a, b) in enumerate(zip(src, tgt), 1):
        for text, path in ((a, source_path), (b, target_path)):
            if not text.strip():
                raise DataError(where(path, number), "expected a sentence, got an empty line")
    doc = os.path.basename(source_path)
    return Pairs(tuple(map(_normal, src)), tuple(map(_normal, tgt)), (doc,) * len(src),
                 tuple(where(source_path, i) for i in range(1, len(src) + 1)))


def split_by_document(pairs: Pairs, fractions: Sequence[float], seed: int) -> list[Pairs]:
    """Whole documents to each split, shuffled by ``seed``, filled greedily toward each split's share of pairs.

    Args:
      pairs: all pairs.
      fractions: shares of pairs, e.g. ``(0.8, 0.1, 0.1)``; each split gets at least one document.

    Returns:
      One `Pairs` per fraction; their documents are disjoint and cover all pairs.
    """
    names = sorted(set(pairs.documents))
    if len(names) < len(fractions):
        raise DataError(pairs.places[0].rsplit(":", 1)[0],
                        f"expected at least {len(fractions)} documents to split by document, got {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    sizes = {name: 0 for name in names}
    for doc in pairs.documents:
        sizes[doc] += 1
    goals = np.asarray(fractions, float) / np.sum(fractions) * len(pairs)
    chosen: list[list[str]] = [[] for _ in fractions]
    filled = np.zeros(len(fractions))
    shuffled = [names[i] for i in order]
    # The held-out splits first, one document each at least, then the rest toward the largest deficit.
    for k in range(len(fractions)):
        chosen[k].append(shuffled[k])
        filled[k] += sizes[shuffled[k]]
    for name in shuffled[len(fractions):]:
        k = int(np.argmax(goals - filled))
        chosen[k].append(name)
        filled[k] += sizes[name]
    rows = []
    for docs in chosen:
        wanted = set(docs)
        rows.append(pairs.subset([i for i, d in enumerate(pairs.documents) if d in wanted]))
    return rows
