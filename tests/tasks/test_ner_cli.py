"""The NER task: taggers ignore padding, batches cover every sentence once in few shapes, the loss and scores count
only real tokens, and `medjax train ner` / `evaluate` run end to end on real NCBI-disease data."""

import json

import jax
import numpy as np
import pytest

from medjax.data.conll import Sentence, read_conll
from medjax.data.vocab import Vocabulary
from medjax.errors import ConfigError, DataError
from medjax.metrics.entities import entity_prf
from medjax.nn.taggers import BiLSTMTagger, TransformerTagger
from medjax.tasks import ner

TAGS = ["O", "B-Dis", "I-Dis"]


def tiny(cls, **kw):
    sizes = {"embed_dim": 8, "char_features": 6, "num_cases": len(ner.CASES), "dropout": 0.0}
    if cls is BiLSTMTagger:
        sizes["hidden"] = 5
    else:
        sizes.update(width=8, num_layers=1, num_heads=2, mlp_dim=16)
    return cls(num_tags=3, vocab_size=20, crf=True, **sizes, **kw)


def random_inputs(seed, batch=3, time=6, chars=4):
    rng = np.random.default_rng(seed)
    lengths = np.array([6, 4, 1])
    mask = np.arange(time)[None] < lengths[:, None]
    words = np.where(mask, rng.integers(2, 20, (batch, time)), 0).astype(np.int32)
    char_ids = np.where(mask[..., None], rng.integers(1, 257, (batch, time, chars)), 0).astype(np.int32)
    char_ids[:, :, -1] = 0  # every word shorter than its slots
    case = np.where(mask, rng.integers(1, len(ner.CASES), (batch, time)), 0).astype(np.int32)
    return words, mask, char_ids, case


@pytest.mark.parametrize("cls", [BiLSTMTagger, TransformerTagger])
def test_padding_never_changes_emissions_or_decoded_tags(cls):
    words, mask, chars, case = random_inputs(0)
    model = tiny(cls)
    variables = model.init(jax.random.key(0), words, mask, chars, case)
    apply = jax.jit(model.apply)
    short = apply(variables, words, mask, chars, case)
    # Five more padded steps, two more padded character slots, and garbage ids under the padding.
    grow = lambda a, n, fill: np.concatenate([a, np.full(a.shape[:1] + (n,) + a.shape[2:], fill, a.dtype)], axis=1)
    long_words, long_mask, long_case = grow(words, 5, 7), grow(mask, 5, False), grow(case, 5, 3)
    long_chars = np.concatenate([grow(chars, 5, 0), np.zeros(chars.shape[:1] + (11, 2), np.int32)], axis=2)
    long = apply(variables, long_words, long_mask, long_chars, long_case)
    real = mask
    np.testing.assert_allclose(np.asarray(long["emissions"])[:, :6][real], np.asarray(short["emissions"])[real],
                               rtol=1e-5, atol=1e-5)
    tags_short = ner.predict(short, {"mask": mask, "tags": np.zeros_like(words), "index": np.arange(3)})
    tags_long = ner.predict(long, {"mask": long_mask, "tags": np.zeros_like(long_words), "index": np.arange(3)})
    np.testing.assert_array_equal(tags_short["pred_tags"], np.asarray(tags_long["pred_tags"])[:, :6])
    assert np.all(np.asarray(tags_long["pred_tags"])[:, 6:] == -1)
    assert np.all(np.asarray(tags_short["pred_tags"])[~mask] == -1)


def test_tagger_rejects_bad_inputs():
    words, mask, chars, case = random_inputs(0)
    model = tiny(BiLSTMTagger)
    with pytest.raises(TypeError, match="mask: expected bool array"):
        model.init(jax.random.key(0), words, mask.astype(np.int32), chars, case)
    with pytest.raises(ValueError, match=r"chars must be int\[batch, time, chars\]"):
        model.init(jax.random.key(0), words, mask, chars[:, :2], case)
    with pytest.raises(ValueError, match="char_features > 0 needs chars"):
        model.init(jax.random.key(0), words, mask, None, case)


def make_split(lengths, sort_chunk=2):
    config = ner.Config(sort_chunk=sort_chunk, max_word_len=5)
    sentences = [Sentence(tuple(f"w{i}_{j}" for j in range(n)), ("B-Dis",) + ("O",) * (n - 1)) for i, n in
                 enumerate(lengths)]
    vocab = Vocabulary.build(s.tokens for s in sentences)
    return ner.encode_split(sentences, vocab, TAGS, config, (4, 8, 16), "train.tsv")


def test_batches_cover_every_sentence_once_in_bucket_shapes():
    # Mostly short sentences and a few long ones, shuffled: in the given order most batches hold a long one.
    lengths = np.random.default_rng(0).permutation([3] * 17 + [14] * 6)
    split = make_split(lengths, sort_chunk=3)
    order = np.random.default_rng(1).permutation(len(lengths))
    batches = list(split.batches(4, order))
    seen = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(len(lengths)))
    assert [len(b["index"]) for b in batches].count(4) == len(batches) - 1  # only one short batch
    for batch in batches:
        assert batch["words"].shape[1] in (4, 8, 16)
        assert batch["chars"].shape == batch["words"].shape + (5,)
        np.testing.assert_array_equal(batch["mask"].sum(axis=1), lengths[batch["index"]])
        np.testing.assert_array_equal(batch["case"] > 0, batch["mask"])
    # Sorting within chunks of 3 batches: less padding than batching in the shuffled order itself.
    padded = sum(b["mask"].size for b in batches)
    unsorted = sum(b["mask"].size for b in make_split(lengths, sort_chunk=0).batches(4, order))
    assert padded < unsorted


def test_loss_ignores_padding_rows_and_tokens():
    words, mask, chars, case = random_inputs(2)
    tags = np.where(mask, np.random.default_rng(3).integers(0, 3, words.shape), 0).astype(np.int32)
    model = tiny(BiLSTMTagger)
    crf_outputs = model.apply(model.init(jax.random.key(0), words, mask, chars, case), words, mask, chars, case)
    # Without its "crf" entry the same outputs take the softmax (per-token cross-entropy) loss.
    for outputs in (crf_outputs, {"emissions": crf_outputs["emissions"]}):
        batch = {"mask": mask, "tags": tags, "example_mask": np.array([True, True, False])}
        loss, _ = ner.loss(outputs, batch)
        # The same two sentences alone, and with garbage tags under the padding: the same loss.
        first_two = {"mask": mask[:2], "tags": tags[:2], "example_mask": np.array([True, True])}
        alone, _ = ner.loss(jax.tree.map(lambda a: a[:2] if a.ndim == 3 else a, outputs), first_two)
        np.testing.assert_allclose(loss, alone, rtol=1e-6)
        garbage = dict(batch, tags=np.where(mask, tags, 2).astype(np.int32))
        np.testing.assert_allclose(ner.loss(outputs, garbage)[0], loss, rtol=1e-6)
    # The softmax loss by hand: the mean of -log p(tag) over the 6 + 4 real tokens of the two kept sentences.
    emissions = np.asarray(crf_outputs["emissions"], np.float64)
    log_p = emissions - np.log(np.exp(emissions).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, tags[..., None], -1)[..., 0]
    np.testing.assert_allclose(loss, nll[:2][mask[:2]].mean(), rtol=1e-5)


def test_score_equals_entity_prf_on_the_tag_strings():
    labels = np.array([[1, 2, 0, -1], [0, 1, -1, -1]])
    pred = np.array([[1, 0, 0, -1], [0, 1, -1, -1]])
    got = ner.score_tags({"pred_tags": pred, "gold_tags": labels}, TAGS)
    want = entity_prf([["B-Dis", "I-Dis", "O"], ["O", "B-Dis"]], [["B-Dis", "O", "O"], ["O", "B-Dis"]])
    assert {k: got[k] for k in want} == want
    assert got["token_accuracy"] == pytest.approx(4 / 5)


def test_case_patterns():
    words = ["cancer", "BRCA1", "Breast", "mRNA", "1994", "(", "DNA"]
    assert [ner.CASES[ner.case_pattern(w)] for w in words] == [
        "lower", "has_digit", "title", "mixed", "digits", "other", "upper"]


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="--model: expected one of bilstm, bilstm-crf, transformer, transformer-crf"):
        ner.Config(model="crf-only")


def test_a_tag_that_training_lacks_names_the_file_and_line():
    sentences = [Sentence(("a", "b"), ("B-Dis", "O"), line=1), Sentence(("c",), ("B-Chem",), line=4)]
    vocab = Vocabulary.build(s.tokens for s in sentences)
    with pytest.raises(DataError, match=r"^test.tsv:4: expected tags of the training split \(O, B-Dis, I-Dis\), "
                                        r"got B-Chem$"):
        ner.encode_split(sentences, vocab, TAGS, ner.Config(), (16,), "test.tsv")


def test_buckets_come_from_the_data_so_long_sentences_train(tmp_path):
    """A corpus in NCBI-disease's format with sentences of up to 225 tokens trains with the default options."""
    rng = np.random.default_rng(0)
    for name, lengths in (("train.tsv", (12, 154, 30)), ("devel.tsv", (225, 8)), ("test.tsv", (165, 20))):
        blocks = []
        for n in lengths:
            tags = rng.choice(["O", "O", "B-Disease", "I-Disease"], n)
            blocks.append("".join(f"w{rng.integers(50)}\t{t}\n" for t in tags))
        (tmp_path / name).write_text("\n".join(blocks))
    config = ner.Config(data_dir=str(tmp_path), workdir=str(tmp_path / "run"), epochs=1, batch_size=4,
                        eval_batch_size=4, embed_dim=8, hidden=8, char_features=0, case_feature=False,
                        sort_chunk=0, progress=False, log_every=0, num_devices=1)
    task = ner.build_task(config)
    assert task.describe["buckets"] == [16, 32, 64, 128, 256]
    from medjax.train import loop

    results = loop.train(task, config, "ner")
    assert 0.0 <= results["test_f1"] <= 1.0
    with np.load(tmp_path / "run" / "predictions_test.npz") as saved:
        assert (saved["gold_tags"] >= 0).sum() == 185


@pytest.mark.data
def test_cli_train_and_evaluate_on_ncbi(ncbi_dir, tmp_path, medjax_command, readme):
    from medjax.tasks import evaluate_workdir

    assert "medjax train ner --data-dir ../shared/data/ncbi-disease --model bilstm-crf --workdir runs/ner" in readme
    workdir = tmp_path / "run"
    args = ["train", "ner", "--data-dir", str(ncbi_dir), "--workdir", str(workdir), "--model", "bilstm-crf",
            "--limit", "64", "--epochs", "2", "--batch-size", "16", "--eval-batch-size", "32", "--embed-dim", "16",
            "--hidden", "16", "--char-features", "8", "--lr", "1e-2", "--no-progress",
            "--buckets", "128"]  # one padded length: one compilation per step function
    medjax_command(args)
    config = json.loads((workdir / "config.json").read_text())
    assert config["task"] == "ner" and config["config"]["model"] == "bilstm-crf"
    epochs = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2
    results = json.loads((workdir / "results.json").read_text())
    for key in ("test_f1", "test_precision", "test_recall"):
        assert 0.0 <= results[key] <= 1.0
    # Two epochs on 96 sentences already find some diseases: the scores are not all zero.
    assert results["test_token_accuracy"] > 0.8
    saved = json.loads((workdir / "meta.json").read_text())
    assert saved["tags"] == ["O", "B-Disease", "I-Disease"] and not (workdir / "vocab.json").exists()
    # `medjax evaluate` rebuilds the task from the work folder and reproduces the test scores of the best epoch.
    assert "test_f1" in medjax_command(["evaluate", "--workdir", workdir]).stdout
    again = evaluate_workdir(workdir)
    assert {k: again[k] for k in ("test_f1", "test_token_accuracy")} == {
        k: results[k] for k in ("test_f1", "test_token_accuracy")}
    predictions = np.load(workdir / "predictions_test.npz")
    test_tokens = sum(len(s.tokens) for s in read_conll(ncbi_dir / "test.tsv")[:64])
    assert (predictions["gold_tags"] >= 0).sum() == test_tokens
    np.testing.assert_array_equal(predictions["pred_tags"] >= 0, predictions["gold_tags"] >= 0)
    from medjax.train.plots import plot_workdir

    plot_workdir(workdir)
    assert (workdir / "learning_curves.png").stat().st_size > 0


def test_an_ensemble_votes_per_token():
    stacked = {"pred_tags": np.array([[[1, 2, 0, -1]], [[1, 0, 0, -1]], [[0, 2, 2, -1]]]),
               "gold_tags": np.array([[[1, 2, 0, -1]]] * 3), "index": np.array([[5]] * 3)}
    combined = ner.vote(stacked)
    assert combined["pred_tags"].tolist() == [[1, 2, 0, -1]]  # 2 of 3 members per token; padding stays -1
    assert combined["index"].tolist() == [5]
