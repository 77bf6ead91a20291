"""Keyword extraction from a trained abstract classifier: `medjax keywords --workdir W "some abstract text"`.

Two rankings of a document's tokens:

- ``attention``: the attention weight each token *receives*, averaged over heads, over the (real) query tokens and over
  layers, read from the weights every `MultiHeadAttention` sows into ``("intermediates", "attention_weights")``.
  Needs a ``transformer`` or ``attention`` model.
- ``gradient``: gradient × input, ``|∂ logit_pred / ∂ e_t · e_t|`` for each token's embedding ``e_t`` (the first-order
  share of the predicted class's logit carried by the token; Shrikumar et al. 2016, Denil et al. 2014). Works for
  every model, the LSTM included.

A word that occurs several times keeps its highest score (a keyword is a word, not a position); tokens made only of
punctuation are never keywords and are left out.

Example:
  $ medjax keywords --workdir runs/textclf/transformer_s0 --top-k 5 --method gradient "Carcinoma of the ..."
  carcinoma	0.8123
  ...
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medjax.data.vocab import Vocabulary, tokenize
from medjax.errors import ConfigError, DataError, UserError
from medjax.explain import attributions
from medjax.explain.internals import attention_maps

METHODS = ("attention", "gradient")


# The classifier is a static argument (Linen modules hash by value): each model and input shape compiles once, far
# cheaper than running the model op by op.
@functools.partial(jax.jit, static_argnums=0)
def attention_scores(classifier: nn.Module, variables, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Attention received by each token: ``ids: int[batch, time]``, ``mask: bool[batch, time]`` -> ``f32[batch, time]``.

    The mean over layers, heads and real queries of ``weights[layer, batch, head, query, key]``; each real query's
    weights sum to 1 over the real keys, so each document's scores sum to 1 and padded keys score 0.
    """
    try:
        layers = attention_maps(classifier, variables, ids, mask)
    except UserError:
        raise ConfigError(
            "--method attention", f"{type(classifier).__name__} sows no attention weights: rank with "
            "method='gradient', or train a transformer or attention model"
        ) from None
    weights = jnp.stack(layers)  # [layer, batch, head, query, key]
    query_weight = mask.astype(weights.dtype)
    received = jnp.einsum("lbhqk,bq->bk", weights, query_weight)
    return received / (len(layers) * weights.shape[2] * jnp.maximum(query_weight.sum(axis=1, keepdims=True), 1.0))


@functools.partial(jax.jit, static_argnums=0)
def gradient_scores(classifier: nn.Module, variables, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Gradient × input of the predicted class's logit, summed over each token's embedding:
    ``int[batch, time]`` -> ``f32[batch, time]`` (its absolute value; 0 on padding)."""
    embeddings = classifier.apply(variables, ids, method="embed")

    def forward(e):
        return classifier.apply(variables, e, mask, method="classify")

    predicted = jnp.argmax(forward(embeddings), axis=-1)
    contributions = attributions.gradient_x_input(forward, embeddings, predicted)
    return jnp.where(mask, jnp.abs(contributions.sum(axis=-1)), 0.0)


SCORERS = {"attention": attention_scores, "gradient": gradient_scores}


def rank_tokens(tokens: Sequence[str], scores: np.ndarray, vocab: Vocabulary) -> list[tuple[str, float]]:
    """Tokens ordered by score, best first, one entry per word (its best occurrence), punctuation left out.

    Args:
      tokens: the n tokens of the document as written.
      scores: f32[n], one score per token.
      vocab: its `Vocabulary.normalize` decides which tokens are the same word.

    Returns:
      ``[(token as first written, score), ...]``; ties keep the document's order.
    """
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    best: dict[str, tuple[str, float]] = {}
    for token, score in zip(tokens, np.asarray(scores, np.float64)):
        if not any(ch.isalnum() for ch in token):
            continue
        word = vocab.normalize(token)
        if word not in best or score > best[word][1]:
            best[word] = (best.get(word, (token,))[0], float(score))
    return sorted(best.values(), key=lambda pair: -pair[1])


def keywords(classifier: nn.Module, variables, vocab: Vocabulary, text: str, method: str = "attention",
             max_length: int | None = None) -> list[tuple[str, float]]:
    """Ranks the words of ``text`` by ``method`` (``"attention"`` or ``"gradient"``) under a trained classifier.

    Args:
      classifier: an `LSTMTextClassifier` or `TransformerTextClassifier` (``embed`` / ``classify`` methods).
      variables: its variables (``{"params": ...}``).
      vocab: the vocabulary it was trained with.
      text: the document.
      method: one of `METHODS`.
      max_length: keep the first this many tokens, as in training; None keeps all.

    Returns:
      All of the document's words with their scores, best first (see `rank_tokens`).
    """
    if method not in SCORERS:
        raise ConfigError("--method", f"method must be one of {METHODS}, got {method!r}")
    tokens = tokenize(text)[:max_length]
    if not any(any(ch.isalnum() for ch in t) for t in tokens):
        raise DataError("TEXT", f"expected a text with words, got one with no word to rank: {text[:80]!r}")
    ids = jnp.asarray(vocab.encode(tokens))[None]
    mask = jnp.ones(ids.shape, bool)
    scores = SCORERS[method](classifier, variables, ids, mask)[0]
    return rank_tokens(tokens, np.asarray(scores), vocab)


@dataclasses.dataclass(frozen=True)
class TrainedClassifier:
    """A textclf run's classifier at its best epoch.

    Attributes:
      classifier: the inner Linen classifier (``embed`` / ``classify`` / ``__call__``).
      variables: ``{"params": ...}`` from the best checkpoint.
      vocab: the training split's vocabulary (rebuilt from the data, deterministically).
      config: the run's config.
      class_names: the class of each logit.
    """

    classifier: nn.Module
    variables: dict
    vocab: Vocabulary
    config: Any
    class_names: tuple[str, ...]


def restore_classifier(workdir: str | pathlib.Path) -> TrainedClassifier:
    """The classifier of a `medjax train textclf` run, from its work folder alone (`medjax.load`: no data)."""
    from medjax.run import load
    from medjax.tasks.common import vocabulary

    run = load(workdir)
    if run.task != "textclf":
        raise UserError(workdir, f"expected a textclf run, got a {run.task!r} run")
    return TrainedClassifier(run.model.module, {"params": run.variables["params"]["module"]}, vocabulary(run.meta),
                             run.config, tuple(run.meta["class_names"]))


def main(workdir: str | pathlib.Path, text: str, top_k: int = 10, method: str = "attention") -> list[tuple[str, float]]:
    """`medjax keywords`: prints the ``top_k`` words of ``text`` with their scores, one ``word<TAB>score`` per line.

    The predicted class goes to stderr, so stdout holds only the ranking.

    Returns:
      The printed ``[(word, score), ...]``.
    """
    if top_k < 1:
        raise ConfigError("--top-k", f"expected an integer >= 1, got {top_k}")
    run = restore_classifier(workdir)
    ranking = keywords(run.classifier, run.variables, run.vocab, text, method, run.config.max_length or None)[:top_k]
    ids = jnp.asarray(run.vocab.encode(tokenize(text)[: run.config.max_length or None]))[None]
    probs = jax.nn.softmax(jax.jit(run.classifier.apply)(run.variables, ids, jnp.ones(ids.shape, bool)))[0]
    label = int(jnp.argmax(probs))
    print(f"predicted: {run.class_names[label]} (p={float(probs[label]):.3f})", file=sys.stderr)
    for word, score in ranking:
        print(f"{word}\t{score:.4g}")
    return ranking
