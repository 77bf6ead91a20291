"""Sequence taggers for named-entity recognition: word + character features, then a BiLSTM or a transformer encoder,
then per-token tag scores, decoded token by token (softmax) or jointly by a CRF.

The recipe is Lample et al. 2016 ("Neural Architectures for Named Entity Recognition") with the character CNN of
Ma & Hovy 2016: a word is its embedding, a max-pooled CNN over its characters (which carries the spelling of rare and
unknown words) and, when words are lower-cased, a small embedding of its case pattern; dropout on those features and on
the encoder's outputs.

Every tagger returns a dict: ``{"emissions": f32[batch, time, tags]}``, plus ``"crf": {"transitions", "start",
"end"}`` (the CRF's scores, see `medjax.nn.crf`) when ``crf=True``, so a loss can take the CRF log-likelihood and a
predictor can run Viterbi without calling the model twice. Emissions on padded steps are meaningless; emissions on real
steps never depend on padding.

Example:
  >>> tagger = BiLSTMTagger(num_tags=3, vocab_size=100, crf=True)
  >>> words, mask = jnp.ones((2, 7), jnp.int32), jnp.arange(7)[None] < jnp.array([[7], [4]])
  >>> variables = tagger.init(jax.random.key(0), words, mask)
  >>> out = tagger.apply(variables, words, mask)
  >>> out["emissions"].shape, sorted(out["crf"])
  ((2, 7, 3), ['end', 'start', 'transitions'])
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.nn.checks import check_array
from medjax.nn.crf import CRF
from medjax.nn.encoder import TransformerEncoder
from medjax.nn.recurrent import LSTM

# Character ids: 0 is padding (as in `medjax.data.vocab.char_ids`, UTF-8 bytes + 1); word id 1 is <unk>.
CHAR_PAD_ID = 0
UNK_ID = 1


def _check_words(words: jax.Array, mask: jax.Array, chars, case) -> None:
    check_array(words, "words", rank=2, dtype_kind="iu")
    check_array(mask, "mask", shape=words.shape, dtype_kind="b", hint="the padding mask is True on real tokens")
    if chars is not None:
        check_array(chars, "chars", rank=3, dtype_kind="iu")
        if chars.shape[:2] != words.shape:
            raise ValueError(f"chars must be int[batch, time, chars] with (batch, time) = {words.shape}, got {chars.shape}")
    if case is not None:
        check_array(case, "case", shape=words.shape, dtype_kind="iu")


class CharCNN(nn.Module):
    """A word's spelling as a vector: character embeddings, a 1-D convolution, max over the word's real characters.

    Attributes:
      features: output width (convolution filters).
      embed_dim: character embedding width.
      kernel_size: convolution width in characters.
      vocab_size: number of character ids (257 for UTF-8 bytes + padding).
    """

    features: int = 50
    embed_dim: int = 25
    kernel_size: int = 3
    vocab_size: int = 257

    @nn.compact
    def __call__(self, chars: jax.Array) -> jax.Array:
        """chars: int[batch, time, length] (0 = padding) -> f32[batch, time, features]; zeros for an empty word."""
        batch, time, length = chars.shape
        present = chars != CHAR_PAD_ID
        x = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(chars.reshape(batch * time, length))
        # Padding characters enter the convolution as zero vectors, so a word's features do not depend on how many
        # padding slots follow it.
        x = jnp.where(present.reshape(batch * time, length, 1), x, 0.0)
        x = nn.Conv(self.features, (self.kernel_size,), padding="SAME", name="conv")(x)
        x = jnp.where(present.reshape(batch * time, length, 1), x, -jnp.inf).max(axis=1)
        any_char = present.any(axis=-1).reshape(batch * time, 1)
        return jnp.where(any_char, x, 0.0).reshape(batch, time, self.features)


class WordFeatures(nn.Module):
    """Per-token input features: word embedding, optional character CNN, optional case-pattern embedding.

    Attributes:
      vocab_size: word ids (0 = padding, 1 = <unk>).
      embed_dim: word embedding width.
      char_features: width of the character CNN; 0 turns it off.
      num_cases: number of case-pattern ids; 0 turns the case embedding off.
      case_dim: case embedding width.
      dropout: dropout rate on the concatenated features (Lample et al.: 0.5).
      word_dropout: in training, the probability that a real word is replaced by <unk>, so the <unk> embedding
        (all the model has for unseen test words) is trained alongside the character features.
    """

    vocab_size: int
    embed_dim: int = 100
    char_features: int = 50
    num_cases: int = 0
    case_dim: int = 8
    dropout: float = 0.5
    word_dropout: float = 0.0

    @nn.compact
    def __call__(self, words, mask, chars=None, case=None, train: bool = False) -> jax.Array:
        """f32[batch, time, features] from words int[batch, time], chars int[batch, time, length], case int[batch, time]."""
        if train and self.word_dropout > 0:
            drop = jax.random.bernoulli(self.make_rng("dropout"), self.word_dropout, words.shape) & mask
            words = jnp.where(drop, UNK_ID, words)
        parts = [nn.Embed(self.vocab_size, self.embed_dim, name="word_embed")(words)]
        if self.char_features:
            if chars is None:
                raise ValueError("char_features > 0 needs chars: int[batch, time, length]")
            parts.append(CharCNN(self.char_features, name="chars")(chars))
        if self.num_cases:
            if case is None:
                raise ValueError("num_cases > 0 needs case: int[batch, time]")
            parts.append(nn.Embed(self.num_cases, self.case_dim, name="case_embed")(case))
        x = jnp.concatenate(parts, axis=-1)
        return nn.Dropout(self.dropout)(x, deterministic=not train)


def _tag_scores(x: jax.Array, num_tags: int, crf: bool, dropout: float, train: bool) -> dict:
    """Dropout, a Dense layer to ``num_tags`` emissions and, with ``crf``, the CRF's scores."""
    x = nn.Dropout(dropout)(x, deterministic=not train)
    outputs = {"emissions": nn.Dense(num_tags, name="emissions")(x)}
    if crf:
        outputs["crf"] = CRF(num_tags, name="crf").scores()
    return outputs


class BiLSTMTagger(nn.Module):
    """Word features -> bidirectional LSTM -> per-token tag scores (softmax tagger, or BiLSTM-CRF with ``crf=True``).

    Attributes:
      num_tags: K, the number of tags.
      vocab_size, embed_dim, char_features, num_cases, word_dropout: see `WordFeatures`.
      hidden: LSTM hidden size of each direction (outputs are 2 * hidden wide).
      num_layers: stacked BiLSTM layers.
      dropout: on the input features, between LSTM layers and on the BiLSTM outputs.
      crf: score tag paths with a CRF instead of independent softmaxes.
    """

    num_tags: int
    vocab_size: int
    embed_dim: int = 100
    char_features: int = 50
    num_cases: int = 0
    hidden: int = 100
    num_layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.0
    crf: bool = False

    @nn.compact
    def __call__(self, words, mask, chars=None, case=None, train: bool = False) -> dict:
        """Tags a batch of sentences.

        Args:
          words: int[batch, time] word ids (0 on padding).
          mask: bool[batch, time], True on real tokens.
          chars: int[batch, time, length] character ids, needed when ``char_features > 0``.
          case: int[batch, time] case-pattern ids, needed when ``num_cases > 0``.
          train: dropout on.

        Returns:
          ``{"emissions": f32[batch, time, num_tags]}`` (+ ``"crf"`` scores when ``crf``).
        """
        _check_words(words, mask, chars, case)
        x = WordFeatures(
            self.vocab_size, self.embed_dim, self.char_features, self.num_cases,
            dropout=self.dropout, word_dropout=self.word_dropout, name="features",
        )(words, mask, chars, case, train)
        x, _ = LSTM(self.hidden, self.num_layers, bidirectional=True, dropout=self.dropout, name="bilstm")(
            x, mask, train=train
        )
        return _tag_scores(x, self.num_tags, self.crf, self.dropout, train)


class TransformerTagger(nn.Module):
    """Word features -> Dense to ``width`` -> pre-LayerNorm transformer encoder -> per-token tag scores.

    Attributes:
      num_tags, vocab_size, embed_dim, char_features, num_cases, word_dropout, crf: as in `BiLSTMTagger`.
      width: the encoder's model width.
      num_layers, num_heads, mlp_dim: the encoder's depth, heads and MLP width.
      dropout: on the input features and the tag scores' input.
      attention_dropout: the encoder's dropout (attention weights, MLP and residual branches).
      positions: ``"sinusoidal"`` or ``"learned"`` (see `medjax.nn.encoder.TransformerEncoder`).
      max_length: the longest sentence, for learned positions.
    """

    num_tags: int
    vocab_size: int
    embed_dim: int = 100
    char_features: int = 50
    num_cases: int = 0
    width: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 256
    dropout: float = 0.5
    attention_dropout: float = 0.1
    word_dropout: float = 0.0
    positions: str = "sinusoidal"
    max_length: int = 512
    crf: bool = False

    @nn.compact
    def __call__(self, words, mask, chars=None, case=None, train: bool = False) -> dict:
        """Same arguments and outputs as `BiLSTMTagger.__call__`."""
        _check_words(words, mask, chars, case)
        x = WordFeatures(
            self.vocab_size, self.embed_dim, self.char_features, self.num_cases,
            dropout=self.dropout, word_dropout=self.word_dropout, name="features",
        )(words, mask, chars, case, train)
        x = nn.Dense(self.width, name="project")(x)
        x = TransformerEncoder(
            self.num_layers, self.num_heads, self.mlp_dim, self.attention_dropout,
            positions=self.positions, max_length=self.max_length, name="encoder",
        )(x, mask, train=train)
        return _tag_scores(x, self.num_tags, self.crf, self.dropout, train)
