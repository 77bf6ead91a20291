"""The textclf task: padding never changes a classifier's logits, the loss/score against NumPy and scikit-learn, and a
short `medjax train textclf` + `medjax keywords` run on the real abstracts."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from medjax.nn.text_classifiers import LSTMTextClassifier, TransformerTextClassifier, masked_max
from medjax.tasks import textclf

TINY = dict(vocab_size=30, num_classes=3, embed_dim=8)
CLASSIFIERS = {
    "lstm-mean": LSTMTextClassifier(**TINY, hidden=6, pooling="mean"),
    "lstm-last-2layers": LSTMTextClassifier(**TINY, hidden=6, num_layers=2, pooling="last"),
    "transformer-learned-2layers": TransformerTextClassifier(**TINY, num_layers=2, num_heads=2, mlp_dim=16,
                                                             positions="learned", max_length=16),
    "attention": TransformerTextClassifier(**TINY, num_layers=0, num_heads=2),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_padding_never_changes_the_logits(name):
    model = CLASSIFIERS[name]
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 30, 5), rng.integers(2, 30, 3)]
    short = np.zeros((2, 5), np.int32)
    for i, doc in enumerate(docs):
        short[i, : len(doc)] = doc
    short_mask = short > 0
    # Longer padding, filled with real-looking ids that the mask hides.
    long = rng.integers(2, 30, (2, 11)).astype(np.int32)
    long[:, :5] = short
    long_mask = np.zeros((2, 11), bool)
    long_mask[:, :5] = short_mask
    variables = jax.jit(model.init)(jax.random.key(0), jnp.asarray(long), jnp.asarray(long_mask))
    apply = jax.jit(model.apply)
    logits_short = apply(variables, jnp.asarray(short), jnp.asarray(short_mask))
    logits_long = apply(variables, jnp.asarray(long), jnp.asarray(long_mask))
    alone = apply(variables, jnp.asarray(docs[1][None], jnp.int32))  # no mask, no padding, no neighbour
    np.testing.assert_allclose(logits_long, logits_short, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits_short[1], alone[0], rtol=1e-5, atol=1e-6)
    assert logits_short.shape == (2, 3)


def test_last_pooling_reads_each_directions_final_state():
    model = LSTMTextClassifier(**TINY, hidden=6, pooling="last", dropout=0.0)
    ids = jnp.array([[3, 4, 5, 0], [6, 7, 8, 9]], jnp.int32)
    mask = ids > 0
    variables = jax.jit(model.init)(jax.random.key(1), ids, mask)
    outputs, _ = jax.jit(lambda v: model.apply(v, ids, mask, method=lambda m, i, k: m.lstm(m.embed(i), k)))(variables)
    # Forward half at the last real token, backward half at the first.
    lengths = np.array([3, 4])
    expected = np.concatenate([np.asarray(outputs)[np.arange(2), lengths - 1, :6], np.asarray(outputs)[:, 0, 6:]], 1)
    kernel, bias = (np.asarray(variables["params"]["head"][k]) for k in ("kernel", "bias"))
    np.testing.assert_allclose(jax.jit(model.apply)(variables, ids, mask), expected @ kernel + bias[None], rtol=1e-5)


def test_masked_max_against_numpy():
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], bool)
    expected = np.stack([x[0, :2].max(0), x[1, 3], np.zeros(2, np.float32)])
    np.testing.assert_array_equal(masked_max(jnp.asarray(x), jnp.asarray(mask)), expected)


@pytest.mark.parametrize(
    "ids, mask, error, message",
    [
        (np.zeros((2, 3), np.float32), None, TypeError, "ids: expected integer array"),
        (np.zeros((2, 3), np.int32), np.ones((2, 4), bool), ValueError, r"mask: expected bool array of shape \(2, 3\)"),
        (np.zeros((2, 3), np.int32), np.ones((2, 3), np.int32), TypeError, "mask: expected bool array"),
        (np.zeros(3, np.int32), None, ValueError, r"ids: expected integer array of rank 2 \[batch, time\]"),
    ],
)
def test_bad_inputs_are_named(ids, mask, error, message):
    model = CLASSIFIERS["attention"]
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 3), jnp.int32))
    with pytest.raises(error, match=message):
        model.apply(variables, ids, mask)


def test_loss_and_predict_ignore_padding_rows():
    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    batch = {"label": jnp.array([0, 1, 2]), "example_mask": jnp.array([True, True, False]), "index": jnp.arange(3)}
    loss, sums = textclf.loss(logits, batch)
    log_p = np.asarray(jax.nn.log_softmax(logits))
    assert float(loss) == pytest.approx(-(log_p[0, 0] + log_p[1, 1]) / 2, rel=1e-6)
    assert (float(sums["accuracy"].total), float(sums["accuracy"].count)) == (1.0, 2.0)
    predictions = textclf.inference(None, {})(lambda variables, batch, train: logits, None, batch)
    assert predictions["pred"].tolist() == [0, 2, 0] and predictions["labels"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(predictions["scores"].sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.data
def test_train_then_keywords_from_the_command_line(abstracts_dir, tmp_path, medjax_command, readme):
    assert ("medjax train textclf --data-dir ../shared/data/medical-abstracts-tc --model transformer --workdir "
            "runs/clf") in readme and 'medjax keywords --workdir runs/clf "abstract text"' in readme
    workdir = tmp_path / "run"
    argv = ["train", "textclf", "--workdir", str(workdir), "--data-dir", str(abstracts_dir), "--model",
            "transformer", "--limit", "40", "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "8",
            "--max-length", "48", "--buckets", "48", "--embed-dim", "16", "--hidden", "16", "--mlp-dim", "16",
            "--num-heads", "2", "--num-devices", "1", "--no-progress"]
    trained = medjax_command(argv)
    for name in ("config.json", "metrics.jsonl", "results.json", "predictions_test.npz", "checkpoints"):
        assert (workdir / name).exists(), name
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["task"] == "textclf" and saved["config"]["model"] == "transformer"
    assert saved["describe"]["split_sizes"] == {"train": 40, "val": 40, "test": 40}
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1

    # results.json: the model's and the baseline's figures on the same 40 test abstracts, as scikit-learn scores them.
    results = json.loads((workdir / "results.json").read_text())
    predictions = np.load(workdir / "predictions_test.npz")
    labels, pred = predictions["labels"], predictions["pred"]
    assert len(labels) == 40
    np.testing.assert_array_equal(pred, predictions["scores"].argmax(axis=1))
    assert results["test_accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert results["test_macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro", labels=range(5)))
    assert 0.0 <= results["test_baseline_macro_f1"] <= 1.0 and "val_baseline_accuracy" in results
    assert "TF-IDF + logistic regression baseline" in trained.stdout
    # The command line and the smoke config describe the same run.
    smoke = textclf.smoke_config(workdir=str(workdir), data_dir=str(abstracts_dir), model="transformer", num_devices=1)
    assert saved["config"] == json.loads(json.dumps(dataclasses.asdict(smoke)))

    for method in ("attention", "gradient"):
        captured = medjax_command(["keywords", "--workdir", workdir, "--top-k", "4", "--method", method,
                                   "Carcinoma of the colon with hepatic metastases: tumour resection and chemotherapy."])
        lines = captured.stdout.strip().splitlines()
        assert len(lines) == 4, captured.stdout
        scores = [float(line.split("\t")[1]) for line in lines]
        assert scores == sorted(scores, reverse=True)
        assert captured.stderr.splitlines()[-1].startswith("predicted: ")
