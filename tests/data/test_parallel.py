"""The TMX and plain parallel readers (entities, region codes, one-line errors with file and line) and the split by document."""

import pytest

from conftest import data_dir
from medjax.data import parallel
from medjax.errors import DataError

TMX = """<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4"><header srclang="en"/><body>
<tu tuid="PubMed_8:1">
<tuv xml:lang="en"><seg>Fever &amp; cough &lt;3 days</seg></tuv>
<tuv xml:lang="es-419"><seg>Fiebre &amp; tos</seg></tuv>
<tuv xml:lang="fr"><seg>Fièvre  et toux</seg></tuv>
</tu>
<tu tuid="PubMed_8:2">
<tuv xml:lang="en"><seg>Wash hands.</seg></tuv>
<tuv xml:lang="ES-419"><seg>Lávese las manos.</seg></tuv>
</tu>
<tu tuid="CMU_1:1">
<tuv xml:lang="en"><seg>Only English.</seg></tuv>
</tu>
</body></tmx>
"""


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tmx_reads_entities_region_codes_and_documents(tmp_path):
    path = write(tmp_path / "a.tmx", TMX)
    pairs = parallel.read_tmx(path, "en", "es-419")
    assert pairs.source == ("Fever & cough <3 days", "Wash hands.")
    assert pairs.target == ("Fiebre & tos", "Lávese las manos.")
    assert pairs.documents == ("PubMed_8", "PubMed_8")
    fr = parallel.read_tmx(path, "en", "fr")
    assert fr.target == ("Fièvre et toux",) and fr.places == (f"{path}:7",)


def test_tmx_without_the_language_names_the_languages_found(tmp_path):
    path = write(tmp_path / "a.tmx", TMX)
    with pytest.raises(DataError) as error:
        parallel.read_tmx(path, "en", "de")
    assert str(error.value) == f"{path}: expected units in both 'en' and 'de', got languages: en, es-419, fr"


def test_tmx_missing_seg_and_empty_seg_and_malformed_xml(tmp_path):
    path = write(tmp_path / "m.tmx", TMX.replace('<tuv xml:lang="fr"><seg>Fièvre  et toux</seg></tuv>',
                                                  '<tuv xml:lang="fr"></tuv>'))
    with pytest.raises(DataError, match=rf"^{path}:7: expected a <seg> in the <tuv xml:lang=\"fr\">"):
        parallel.read_tmx(path, "en", "fr")
    path = write(tmp_path / "e.tmx", TMX.replace("Wash hands.", " "))
    with pytest.raises(DataError, match=rf"^{path}:11: expected text in the en <seg>.*got an empty segment$"):
        parallel.read_tmx(path, "en", "es-419")
    path = write(tmp_path / "x.tmx", TMX.replace("</tu>\n<tu tuid=\"CMU_1:1\">", "</tuv>\n<tu tuid=\"CMU_1:1\">"))
    with pytest.raises(DataError, match=rf"^{path}:11: expected well-formed XML, got mismatched tag$"):
        parallel.read_tmx(path, "en", "fr")


def test_plain_files_and_their_errors(tmp_path):
    src = write(tmp_path / "s.en", "a b\nc\n")
    tgt = write(tmp_path / "t.fr", "x\ny  z\n")
    pairs = parallel.read_plain(src, tgt)
    assert pairs.target == ("x", "y z") and pairs.places == (f"{src}:1", f"{src}:2")
    write(tgt, "x\ny\nw\n")
    with pytest.raises(DataError) as error:
        parallel.read_plain(src, tgt)
    assert str(error.value) == f"{tgt}:3: expected as many lines as {src} (2), got 3"
    write(tgt, "x\n \n")
    with pytest.raises(DataError, match=rf"^{tgt}:2: expected a sentence, got an empty line$"):
        parallel.read_plain(src, tgt)


def test_split_by_document_is_seeded_disjoint_and_complete():
    docs = [f"D{i}" for i in range(10) for _ in range(i + 1)]
    pairs = parallel.Pairs(tuple(docs), tuple(docs), tuple(docs), tuple(f"f:{i}" for i in range(len(docs))))
    splits = parallel.split_by_document(pairs, (0.8, 0.1, 0.1), seed=3)
    sets = [set(s.documents) for s in splits]
    assert all(sets) and not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(s) for s in splits) == len(pairs)
    assert [s.documents for s in parallel.split_by_document(pairs, (0.8, 0.1, 0.1), seed=3)] == \
        [s.documents for s in splits]


@pytest.mark.data
def test_tico19_en_fr():
    pairs = parallel.read_tmx(data_dir("tico19-en-fr") / "all.en-fr.tmx", "en", "fr")
    assert len(pairs) == 3071 and len(set(pairs.documents)) == 31
    train, valid, test = parallel.split_by_document(pairs, (0.8, 0.1, 0.1), seed=0)
    assert not set(train.documents) & set(test.documents) and len(valid) and len(test)
