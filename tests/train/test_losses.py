"""Losses against PyTorch's and hand-computed values, masks included."""

import jax.numpy as jnp
import numpy as np
import pytest

from medjax.train import losses

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 4)).astype(np.float32)
LABELS = np.array([0, 3, 1, 2, 2, 0], np.int32)
MASK = np.array([True, True, False, True, False, True])


def test_softmax_cross_entropy_hand_computed():
    logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
    value = losses.softmax_cross_entropy(logits, jnp.array([0, 0]), where=jnp.array([True, False]))
    np.testing.assert_allclose(value, np.log1p(np.exp(-2.0)), rtol=1e-6)


def test_softmax_cross_entropy_matches_torch_on_valid_rows():
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(torch.tensor(LOGITS[MASK]), torch.tensor(LABELS[MASK]).long())
    got = losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), where=jnp.asarray(MASK))
    np.testing.assert_allclose(got, expected.item(), rtol=1e-6)
    unmasked = torch.nn.functional.cross_entropy(torch.tensor(LOGITS), torch.tensor(LABELS).long())
    got = losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
    np.testing.assert_allclose(got, unmasked.item(), rtol=1e-6)


def test_softmax_cross_entropy_token_mask():
    """Per-token labels [batch, time] with a token mask: the mean over valid tokens only."""
    logits = RNG.normal(size=(2, 3, 5)).astype(np.float32)
    labels = RNG.integers(0, 5, (2, 3)).astype(np.int32)
    mask = np.array([[True, True, False], [True, False, False]])
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_token = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    got = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), where=jnp.asarray(mask))
    np.testing.assert_allclose(got, per_token[mask].mean(), rtol=1e-6)


def test_sigmoid_cross_entropy_matches_torch_with_example_mask():
    torch = pytest.importorskip("torch")
    targets = RNG.integers(0, 2, LOGITS.shape).astype(np.int32)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(LOGITS[MASK]), torch.tensor(targets[MASK]).float()
    )
    got = losses.sigmoid_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(targets), where=jnp.asarray(MASK))
    np.testing.assert_allclose(got, expected.item(), rtol=1e-6)


def test_mse_hand_computed():
    predictions = jnp.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    targets = jnp.array([[1.0, 0.0], [0.0, 4.0], [9.0, 9.0]])
    # Valid rows 0 and 1: squared errors 0, 4, 9, 0.
    np.testing.assert_allclose(losses.mse(predictions, targets, where=jnp.array([True, True, False])), 13.0 / 4)


def test_nothing_valid_gives_zero_not_nan():
    value = losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), where=jnp.zeros(6, bool))
    assert float(value) == 0.0


def test_bad_inputs_raise_naming_shapes_and_dtypes():
    with pytest.raises(TypeError, match="integer class indices; got dtype float32"):
        losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS, jnp.float32))
    with pytest.raises(ValueError, match=r"logits \(6, 4\), labels \(5,\)"):
        losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS[:5]))
    expected = r"where has shape \(5,\); expected a prefix of the per-entry loss shape \(6,\)"
    with pytest.raises(ValueError, match=expected):
        losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), where=jnp.asarray(MASK[:5]))
    with pytest.raises(ValueError, match="same shape"):
        losses.sigmoid_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
