"""Greedy and beam search on tiny hand-set models: beam 1 is greedy, and beam search finds the brute-force best."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn import decoding

PAD, BOS, EOS, A, B = range(5)


def bigram_step(table, state, last):
    """A decoder whose next-token distribution depends on the previous token only; ``state`` counts steps."""
    return jax.nn.log_softmax(table[last]), state + 1


def make_step(table):
    return functools.partial(bigram_step_with, jnp.asarray(table, jnp.float32))


def bigram_step_with(table, params, state, last):
    return bigram_step(table, state, last)


HAND = np.full((5, 5), -30.0)
HAND[BOS, [A, B, EOS]] = np.log([0.6, 0.39, 0.01])
HAND[A, [A, B, EOS]] = np.log([1 / 3, 1 / 3, 1 / 3])
HAND[B, [A, B, EOS]] = np.log([0.005, 0.005, 0.99])
HAND[EOS] = HAND[PAD] = 0.0


def brute_force(table, max_len, alpha):
    """Every sequence of at most ``max_len`` tokens that ends at EOS or at max_len, scored as beam search does."""
    log_probs = np.asarray(jax.nn.log_softmax(jnp.asarray(table, jnp.float32)))
    best = None
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(5), repeat=length):
            if EOS in seq[:-1] or (length < max_len and seq[-1] != EOS):
                continue
            score = sum(log_probs[prev, tok] for prev, tok in zip((BOS,) + seq[:-1], seq))
            ranked = score / ((5 + length) / 6) ** alpha
            if best is None or ranked > best[0]:
                best = ranked, seq, score
    return best


def test_beam_one_equals_greedy_on_a_random_model():
    table = np.asarray(jax.random.normal(jax.random.key(0), (5, 5))) * 2
    step = make_step(table)
    bos = jnp.full((4,), BOS, jnp.int32)
    greedy = decoding.greedy(step, None, jnp.zeros(4), bos, 6, eos=EOS)
    beam, _ = decoding.beam_search(step, None, decoding.repeat_beams(jnp.zeros(4), 1), bos, 6, beam=1, eos=EOS)
    np.testing.assert_array_equal(beam, greedy)


def test_greedy_stops_at_eos_and_pads_after():
    step = make_step(HAND)
    tokens = decoding.greedy(step, None, jnp.zeros(1), jnp.array([BOS]), 4, eos=EOS)
    assert tokens[0, 0] == A and tokens.shape == (1, 4)
    hand = HAND.copy()
    hand[BOS] = -30.0
    hand[BOS, EOS] = 0.0
    np.testing.assert_array_equal(decoding.greedy(make_step(hand), None, jnp.zeros(1), jnp.array([BOS]), 4, eos=EOS),
                                  [[EOS, PAD, PAD, PAD]])


def test_beam_two_beats_greedy_and_finds_the_brute_force_best():
    step = make_step(HAND)
    tokens, score = decoding.beam_search(step, None, decoding.repeat_beams(jnp.zeros(1), 2), jnp.array([BOS]), 3,
                                         beam=2, eos=EOS)
    _, seq, best = brute_force(HAND, 3, 0.0)
    assert seq == (B, EOS)
    np.testing.assert_array_equal(tokens[0], [B, EOS, PAD])
    np.testing.assert_allclose(score[0], best, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_full_beam_is_exact_with_a_length_penalty(alpha):
    table = np.asarray(jax.random.normal(jax.random.key(1), (5, 5))) * 1.5
    step = make_step(table)
    tokens, score = decoding.beam_search(step, None, decoding.repeat_beams(jnp.zeros(1), 125), jnp.array([BOS]), 3,
                                         beam=125, eos=EOS, alpha=alpha)
    _, seq, best = brute_force(table, 3, alpha)
    assert tuple(int(t) for t in tokens[0][:len(seq)]) == seq
    np.testing.assert_allclose(score[0], best, rtol=1e-5)
