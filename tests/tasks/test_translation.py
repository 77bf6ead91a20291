"""The translation task: a tiny synthetic TMX (word-for-word English-French) learnt through the CLI in seconds,
`medjax translate` on text and on stdin, a loaded run translating its test split without the data, and one-line errors
for a TMX without the requested language."""

import hashlib
import io
import json

import numpy as np

import medjax
from medjax import cli
from medjax.tasks import translation

WORDS = ["fever", "cough", "pain", "mask", "hands", "water", "rest", "doctor"]
FRENCH = ["fièvre", "toux", "douleur", "masque", "mains", "eau", "repos", "médecin"]
TINY = ["--model", "transformer", "--embed-dim", "32", "--num-heads", "2", "--num-layers", "1", "--vocab-size", "60",
        "--max-length", "12", "--batch-size", "16", "--eval-batch-size", "16", "--beam", "2", "--epochs", "20",
        "--lr", "3e-3", "--no-progress", "--log-every", "0", "--no-tensorboard"]


def write_tmx(path, languages=("en", "fr"), documents=4, per_document=12):
    """``documents`` documents of short sentences ("the fever and the cough" / "la fièvre et la toux")."""
    rng = np.random.default_rng(0)
    units = []
    for d in range(documents):
        for s in range(per_document):
            a, b = rng.choice(len(WORDS), 2, replace=False)
            text = {"en": f"the {WORDS[a]} and the {WORDS[b]}", "fr": f"la {FRENCH[a]} et la {FRENCH[b]}"}
            tuvs = "".join(f'<tuv xml:lang="{lang}"><seg>{text.get(lang, text["en"])}</seg></tuv>'
                           for lang in languages)
            units.append(f'<tu tuid="DOC_{d}:{s + 1}">{tuvs}</tu>')
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header/><body>\n'
                    + "\n".join(units) + "\n</body></tmx>\n", encoding="utf-8")
    return path


def test_train_then_translate_text_and_stdin(tmp_path, capsys, monkeypatch):
    data = write_tmx(tmp_path / "tiny.tmx", documents=6, per_document=40)
    workdir = tmp_path / "run"
    assert cli.main(["train", "translation", "--data-dir", str(data), "--workdir", str(workdir), *TINY]) == 0
    results = json.loads((workdir / "results.json").read_text())
    assert results["select_metric"] == "bleu" and {"test_bleu", "test_chrf", "val_bleu"} <= set(results)
    assert results["test_bleu"] > 50, results  # beam search on test; 100 on this machine's run
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["describe"]["signatures"]["bleu"].startswith("nrefs:1")
    assert not (workdir / "subwords.model").exists()  # the subword model lives in meta.json
    capsys.readouterr()

    sentences = ["the fever and the cough", "the doctor and the water"]
    assert cli.main(["translate", "--workdir", str(workdir), *sentences]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0] == "la fièvre et la toux", out

    monkeypatch.setattr("sys.stdin", io.StringIO("the pain and the mask\n\nthe rest\n"))
    assert cli.main(["translate", "--workdir", str(workdir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1] == ""


def digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_loaded_run_translates_its_test_split_without_the_data(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    data = write_tmx(tmp_path / "data" / "tiny.tmx", documents=6, per_document=10)
    workdir = tmp_path / "run"
    one_epoch = [*TINY[:TINY.index("--epochs")], "--epochs", "1", *TINY[TINY.index("--epochs") + 2:]]
    assert cli.main(["train", "translation", "--data-dir", str(data), "--workdir", str(workdir), *one_epoch]) == 0
    test = translation.split_pairs(translation.Config(data_dir=str(data)))["test"]
    with np.load(workdir / "predictions_test.npz") as arrays:
        expected = dict(arrays)
    before = digests(workdir)
    (tmp_path / "data").rename(tmp_path / "moved")

    run = medjax.load(workdir)
    tokens = run.predict_split(run.module.encode(run.config, run.meta, list(test.source)))["tokens"]
    rows = expected["index"] - expected["index"].min()  # the test pairs come last in the references
    np.testing.assert_array_equal(tokens[rows], expected["tokens"])
    out = run.predict(list(test.source))["translation"]
    assert [out[i] for i in rows] == translation._sentences(translation.subword_model(run.meta["subwords"]),
                                                            expected["tokens"])
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(workdir), *test.source]) == 0
    assert [json.loads(line)["translation"] for line in capsys.readouterr().out.splitlines()] == out
    assert cli.main(["translate", "--workdir", str(workdir), *test.source[:3]]) == 0
    assert capsys.readouterr().out.splitlines() == out[:3]
    assert digests(workdir) == before


def test_a_stale_subword_file_in_the_work_folder_is_ignored(tmp_path):
    """A failed run once left subwords.model behind, and the next run reused it whatever --vocab-size said."""
    data = write_tmx(tmp_path / "tiny.tmx", documents=6, per_document=10)
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "subwords.model").write_bytes(b"stale")
    small = translation.build_task(translation.Config(data_dir=str(data), workdir=str(workdir), vocab_size=30))
    large = translation.build_task(translation.Config(data_dir=str(data), workdir=str(workdir), vocab_size=50))
    assert small.meta["vocab_size"] == 30 and large.meta["vocab_size"] > 30
    assert sorted(p.name for p in workdir.iterdir()) == ["subwords.model"]
    again = translation.build_task(translation.Config(data_dir=str(data), workdir=str(workdir)), small.meta)
    assert again.meta == small.meta
    np.testing.assert_array_equal(again.splits["test"].src[0], small.splits["test"].src[0])


def test_batches_shift_the_target_and_pad_each_side_to_its_bucket():
    split = translation.PairSplit((np.array([5, 6, 2], np.int32),), (np.array([7, 8, 9], np.int32),),
                                  np.array([0], np.int32), (4, 8), beam=True)
    batch = next(split.batches(1))
    assert batch["src"].shape == (1, 4) and batch["tgt_in"].shape == (1, 4)
    assert batch["tgt_in"].tolist() == [[1, 7, 8, 9]] and batch["tgt_out"].tolist() == [[7, 8, 9, 2]]
    assert batch["tgt_mask"].all() and batch["beam"].tolist() == [True]


def test_tmx_without_the_target_language_is_one_line_naming_the_file(tmp_path, capsys):
    data = write_tmx(tmp_path / "en_only.tmx", languages=("en", "es"))
    assert cli.main(["train", "translation", "--data-dir", str(data), "--workdir", str(tmp_path / "w"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medjax: error: ") and str(data) in err and "'fr'" in err and err.count("\n") == 1
    assert cli.main(["translate", "--workdir", str(tmp_path / "nothing"), "hello"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_a_folder_of_plain_files_reads_as_blocks_of_documents(tmp_path):
    (tmp_path / "corpus.en").write_text("".join(f"the {w}\n" for w in WORDS * 15), encoding="utf-8")
    (tmp_path / "corpus.fr").write_text("".join(f"la {w}\n" for w in FRENCH * 15), encoding="utf-8")
    pairs = translation.read_pairs(translation.Config(data_dir=str(tmp_path)))
    assert len(pairs) == 120 and pairs.target[1] == "la toux" and len(set(pairs.documents)) == 3
