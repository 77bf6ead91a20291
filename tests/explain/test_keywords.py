"""Keyword ranking on tiny hand-set models whose answers are known, against NumPy versions of the formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.data.vocab import Vocabulary, tokenize
from medjax.nn.text_classifiers import LSTMTextClassifier, TransformerTextClassifier
from medjax.explain import keywords as kw

WORDS = ["the", "tumour", "grew", "in", "colon", "."]
VOCAB = Vocabulary(("<pad>", "<unk>", *WORDS), lower=True)
D = 2


def hand_set_attention_model(query_scale: float, attention_out: float, head: np.ndarray):
    """A one-head attention classifier (D=2) whose embeddings, projections and head are set by hand.

    Every word embeds to [0, 1] but "tumour", which embeds to [1, 0] (before the sqrt(D) scaling). Queries are the
    constant [query_scale, 0] and keys the embeddings, so every query's score for key t is query_scale * e_t[0] / sqrt(D).
    """
    model = TransformerTextClassifier(vocab_size=len(VOCAB), num_classes=head.shape[1], embed_dim=D, num_layers=0,
                                      num_heads=1, dropout=0.0)
    ids = jnp.zeros((1, 3), jnp.int32)
    params = jax.tree_util.tree_map(np.asarray, jax.jit(model.init)(jax.random.key(0), ids)["params"])
    table = np.tile([0.0, 1.0], (len(VOCAB), 1)).astype(np.float32)
    table[VOCAB.id("tumour")] = [1.0, 0.0]
    params["embedding"]["embedding"] = table
    attn = params["attention"]
    attn["query"] = {"kernel": np.zeros((D, D), np.float32), "bias": np.array([query_scale, 0.0], np.float32)}
    attn["key"] = {"kernel": np.eye(D, dtype=np.float32), "bias": np.zeros(D, np.float32)}
    attn["value"] = {"kernel": np.eye(D, dtype=np.float32), "bias": np.zeros(D, np.float32)}
    attn["out"] = {"kernel": attention_out * np.eye(D, dtype=np.float32), "bias": np.zeros(D, np.float32)}
    params["head"] = {"kernel": head.astype(np.float32), "bias": np.zeros(head.shape[1], np.float32)}
    return model, {"params": params}, table * np.sqrt(D)


def test_attention_scores_equal_the_softmax_formula_and_find_the_keyword():
    model, variables, table = hand_set_attention_model(query_scale=4.0, attention_out=1.0, head=np.eye(D))
    text = "The tumour grew in the colon."
    tokens = tokenize(text)
    ids = jnp.asarray(VOCAB.encode(tokens))[None]
    mask = jnp.ones(ids.shape, bool)
    scores = np.asarray(kw.attention_scores(model, variables, ids, mask))[0]

    keys = table[np.asarray(ids[0])]  # [T, D]
    logits = 4.0 * keys[:, 0] / np.sqrt(D)  # the same for every query
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert scores.sum() == pytest.approx(1.0, abs=1e-6)

    ranking = kw.rank_tokens(tokens, scores, VOCAB)
    assert ranking[0][0] == "tumour"
    assert [w for w, _ in ranking] == ["tumour", "The", "grew", "in", "colon"]  # "the" once, "." left out


def test_attention_scores_ignore_padding_and_average_over_real_queries():
    model = TransformerTextClassifier(vocab_size=len(VOCAB), num_classes=3, embed_dim=8, num_layers=2, num_heads=2,
                                      mlp_dim=16, dropout=0.0)
    ids = jnp.array([[2, 3, 4, 0, 0], [5, 6, 7, 2, 3]], jnp.int32)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    variables = jax.jit(model.init)(jax.random.key(1), ids, mask)
    scores = np.asarray(kw.attention_scores(model, variables, ids, mask))
    np.testing.assert_allclose(scores.sum(axis=1), [1.0, 1.0], rtol=1e-5)
    np.testing.assert_array_equal(scores[0, 3:], 0.0)
    # The same document alone, unpadded, gets the same scores.
    alone = np.asarray(kw.attention_scores(model, variables, ids[:1, :3], mask[:1, :3]))
    np.testing.assert_allclose(scores[0, :3], alone[0], rtol=1e-5)

    # NumPy reference: the mean over layers, heads and real queries of the sown weights.
    _, state = jax.jit(lambda v: model.apply(v, ids, mask, mutable=["intermediates"]))(variables)
    layers = [np.asarray(w[0]) for w in (state["intermediates"]["encoder"]["block_0"]["attention"]["attention_weights"],
                                         state["intermediates"]["encoder"]["block_1"]["attention"]["attention_weights"])]
    expected = np.stack(layers)[:, 0, :, :3, :].mean(axis=(0, 1, 2))
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5, atol=1e-7)


def test_gradient_times_input_of_a_linear_model():
    # With the attention output switched off the model is logits = W^T mean_t(e_t): the gradient of the predicted
    # logit with respect to e_t is W[:, pred] / T, so gradient x input is |W[:, pred] . e_t| / T.
    head = np.array([[3.0, 0.0], [0.5, 1.0]])
    model, variables, table = hand_set_attention_model(query_scale=0.0, attention_out=0.0, head=head)
    tokens = tokenize("the tumour grew in colon")
    ids = jnp.asarray(VOCAB.encode(tokens))[None]
    mask = jnp.ones(ids.shape, bool)
    scores = np.asarray(kw.gradient_scores(model, variables, ids, mask))[0]

    embeddings = table[np.asarray(ids[0])]
    logits = head.T @ embeddings.mean(axis=0)
    predicted = int(np.argmax(logits))
    expected = np.abs(embeddings @ head[:, predicted]) / len(tokens)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert kw.rank_tokens(tokens, scores, VOCAB)[0][0] == "tumour"


def test_gradient_scores_of_an_lstm_are_zero_on_padding_and_match_finite_differences():
    model = LSTMTextClassifier(vocab_size=len(VOCAB), num_classes=3, embed_dim=4, hidden=5, dropout=0.0)
    ids = jnp.array([[2, 3, 4, 5, 0, 0]], jnp.int32)
    mask = ids > 0
    variables = jax.jit(model.init)(jax.random.key(2), ids, mask)
    scores = np.asarray(kw.gradient_scores(model, variables, ids, mask))[0]
    np.testing.assert_array_equal(scores[4:], 0.0)

    # d/dε logit_pred(e + ε e_t ⊙ 1_t) at ε=0 is ∂logit/∂e_t · e_t: compare with a central difference.
    embeddings = model.apply(variables, ids, method="embed")
    classify = jax.jit(lambda e: model.apply(variables, e, mask, method="classify")[0])
    predicted = int(jnp.argmax(classify(embeddings)))
    eps = 1e-2
    for t in range(4):
        step = jnp.zeros_like(embeddings).at[0, t].set(embeddings[0, t]) * eps
        difference = (classify(embeddings + step)[predicted] - classify(embeddings - step)[predicted]) / (2 * eps)
        assert abs(float(difference)) == pytest.approx(scores[t], rel=2e-2, abs=1e-5)


def test_attention_ranking_of_an_lstm_is_refused_clearly():
    model = LSTMTextClassifier(vocab_size=len(VOCAB), num_classes=2, embed_dim=4, hidden=4)
    ids = jnp.array([[2, 3]], jnp.int32)
    variables = jax.jit(model.init)(jax.random.key(0), ids)
    with pytest.raises(ValueError, match="sows no attention weights: rank with method='gradient'"):
        kw.keywords(model, variables, VOCAB, "the tumour", method="attention")


def test_keywords_validates_method_and_text():
    model, variables, _ = hand_set_attention_model(1.0, 1.0, np.eye(D))
    with pytest.raises(ValueError, match="method must be one of"):
        kw.keywords(model, variables, VOCAB, "the tumour", method="tfidf")
    with pytest.raises(ValueError, match="no word to rank"):
        kw.keywords(model, variables, VOCAB, " ... !", method="gradient")
    ranking = kw.keywords(model, variables, VOCAB, "grew tumour grew", method="attention", max_length=2)
    assert [w for w, _ in ranking] == ["tumour", "grew"]


def test_rank_tokens_keeps_each_words_best_score():
    ranking = kw.rank_tokens(["Colon", "(", "colon", "the", "x"], np.array([0.1, 0.9, 0.5, 0.2, 0.2]), VOCAB)
    assert ranking == [("Colon", 0.5), ("the", 0.2), ("x", 0.2)]
    with pytest.raises(ValueError, match="2 tokens but 1 scores"):
        kw.rank_tokens(["a", "b"], np.zeros(1), VOCAB)
