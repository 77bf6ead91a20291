"""The transformer encoder–decoder: decoding with the key/value cache equals recomputing the whole prefix."""


import jax
import jax.numpy as jnp
import numpy as np

from medjax.nn import decoding
from medjax.nn.transformer_seq2seq import TransformerSeq2Seq

MODEL = TransformerSeq2Seq(vocab=13, width=16, heads=2, layers=2, max_len=8)
APPLY = jax.jit(MODEL.apply, static_argnames=("method",))
SRC = jnp.array([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0]])


def test_cached_steps_equal_teacher_forcing_and_padding_does_not_leak():
    tgt = jnp.array([[1, 5, 4, 9], [1, 8, 9, 10]])
    variables = MODEL.init(jax.random.key(0), SRC, SRC > 0, tgt)
    full = APPLY(variables, SRC, SRC > 0, tgt)
    state = APPLY(variables, SRC, SRC > 0, method=MODEL.start)
    for t in range(tgt.shape[1]):
        logits, state = APPLY(variables, state, tgt[:, t], method=MODEL.decode_step)
        np.testing.assert_allclose(logits, full[:, t], rtol=1e-4, atol=1e-5)
    # The causal mask: a later target token changes no earlier logit.
    changed = APPLY(variables, SRC, SRC > 0, tgt.at[:, 3].set(11))
    np.testing.assert_allclose(changed[:, :3], full[:, :3], rtol=1e-5, atol=1e-6)
    # A padded source token changes nothing.
    other = APPLY(variables, SRC.at[1, 3].set(12), SRC > 0, tgt)
    np.testing.assert_allclose(other, full, rtol=1e-5, atol=1e-6)


def step(variables, state, token):
    logits, state = MODEL.apply(variables, state, token, method=MODEL.decode_step)
    return jax.nn.log_softmax(logits), state


def test_cached_greedy_equals_greedy_by_full_recomputation():
    variables = MODEL.init(jax.random.key(1), SRC, SRC > 0, SRC)
    state = APPLY(variables, SRC, SRC > 0, method=MODEL.start)
    cached = decoding.greedy(step, variables, state, jnp.ones(2, jnp.int32), 6, eos=2)
    prefix = jnp.ones((2, 1), jnp.int32)
    for _ in range(6):
        logits = APPLY(variables, SRC, SRC > 0, prefix)[:, -1]
        prefix = jnp.concatenate([prefix, jnp.argmax(logits, -1)[:, None].astype(jnp.int32)], axis=1)
    expected = np.asarray(prefix[:, 1:])
    for row in expected:  # greedy pads after EOS
        if 2 in list(row):
            row[list(row).index(2) + 1:] = 0
    np.testing.assert_array_equal(cached, expected)
    beam, _ = decoding.beam_search(step, variables, decoding.repeat_beams(state, 1), jnp.ones(2, jnp.int32), 6,
                                   beam=1, eos=2)
    np.testing.assert_array_equal(beam, cached)
