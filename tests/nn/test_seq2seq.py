"""Additive attention against its formula in NumPy, and the LSTM encoder–decoder's teacher forcing equal to step-by-step decoding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from medjax.nn import decoding
from medjax.nn.seq2seq import LSTMSeq2Seq, additive_attention


def test_additive_attention_weights_sum_to_one_over_the_unmasked_source():
    keys = jax.random.split(jax.random.key(0), 5)
    params = {"w_q": jax.random.normal(keys[0], (3, 4)), "w_k": jax.random.normal(keys[1], (5, 4)),
              "v": jax.random.normal(keys[2], (4,))}
    query, memory = jax.random.normal(keys[3], (2, 3)), jax.random.normal(keys[4], (2, 6, 5))
    mask = jnp.arange(6)[None] < jnp.array([[6], [3]])
    context, weights = additive_attention(params, query, memory, mask)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(weights)[1, 3:] == 0)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    e = np.tanh((np.asarray(query) @ p["w_q"])[1] + np.asarray(memory)[1, :3] @ p["w_k"]) @ p["v"]
    alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    np.testing.assert_allclose(weights[1, :3], alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context[1], alpha @ np.asarray(memory)[1, :3], rtol=1e-5, atol=1e-6)


def test_teacher_forcing_equals_step_by_step_decoding():
    model = LSTMSeq2Seq(vocab=11, embed=8, hidden=16)
    src = jnp.array([[3, 4, 5, 0], [6, 7, 0, 0]])
    mask = src > 0
    tgt = jnp.array([[1, 5, 4], [1, 8, 9]])
    variables = model.init(jax.random.key(0), src, mask, tgt)
    logits = model.apply(variables, src, mask, tgt)
    state = model.apply(variables, src, mask, method=model.start)
    for t in range(3):
        step, state = model.apply(variables, state, tgt[:, t], method=model.decode_step)
        np.testing.assert_allclose(step, logits[:, t], rtol=1e-5, atol=1e-6)


def lstm_step(model, variables, state, token):
    logits, state = model.apply(variables, state, token, method=model.decode_step)
    return jax.nn.log_softmax(logits), state


def test_greedy_and_beam_one_agree_on_the_lstm_model():

    model = LSTMSeq2Seq(vocab=11, embed=8, hidden=16)
    src = jnp.array([[3, 4, 5, 0], [6, 7, 0, 0]])
    mask = src > 0
    variables = model.init(jax.random.key(1), src, mask, src[:, :2])
    state = model.apply(variables, src, mask, method=model.start)
    step = functools.partial(lstm_step, model)
    bos = jnp.ones(2, jnp.int32)
    greedy = decoding.greedy(step, variables, state, bos, 5, eos=2)
    beam, _ = decoding.beam_search(step, variables, decoding.repeat_beams(state, 1), bos, 5, beam=1, eos=2)
    np.testing.assert_array_equal(beam, greedy)
