"""The CRF's forward algorithm and Viterbi decoding against brute-force enumeration of every tag path."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn.crf import CRF, constrain, crf_log_likelihood, iob2_allowed, viterbi_decode

K = 3


def path_score(emissions, path, transitions, start, end):
    """s(y) for one sequence's real tokens, written out term by term (NumPy float64)."""
    score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
    return score + sum(transitions[a, b] for a, b in zip(path[:-1], path[1:]))


def brute_force(emissions, transitions, start, end):
    """(log Z, best path, best score) over all K**n paths of one unpadded sequence."""
    paths = list(itertools.product(range(emissions.shape[1]), repeat=emissions.shape[0]))
    scores = np.array([path_score(emissions, p, transitions, start, end) for p in paths])
    log_z = np.log(np.sum(np.exp(scores - scores.max()))) + scores.max()
    return log_z, paths[int(np.argmax(scores))], scores.max()


def random_crf(seed, batch=5, time=4):
    rng = np.random.default_rng(seed)
    emissions = rng.normal(size=(batch, time, K)) * 2
    tags = rng.integers(0, K, size=(batch, time))
    transitions, start, end = rng.normal(size=(K, K)), rng.normal(size=K), rng.normal(size=K)
    return emissions, tags, transitions, start, end


def as_jax(*arrays):
    return [jnp.asarray(a, jnp.float32 if np.asarray(a).dtype.kind == "f" else None) for a in arrays]


# Prefix masks of every length 0..4, and masks with holes and leading padding (skipped steps anywhere).
MASKS = np.array(
    [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 1]],
    bool,
)


@pytest.mark.parametrize("seed", range(3))
def test_log_likelihood_and_viterbi_match_brute_force(seed):
    emissions, tags, transitions, start, end = random_crf(seed, batch=len(MASKS))
    mask = MASKS
    args = as_jax(emissions, tags, mask, transitions, start, end)
    ll = np.asarray(jax.jit(crf_log_likelihood)(*args))
    best, best_score = jax.jit(viterbi_decode)(args[0], *args[2:])
    best, best_score = np.asarray(best), np.asarray(best_score)
    for b in range(len(mask)):
        steps = np.flatnonzero(mask[b])
        if steps.size == 0:
            assert ll[b] == 0 and best_score[b] == 0 and np.all(best[b] == -1)
            continue
        e = emissions[b, steps]
        log_z, path, score = brute_force(e, transitions, start, end)
        gold = path_score(e, tags[b, steps], transitions, start, end)
        np.testing.assert_allclose(ll[b], gold - log_z, rtol=1e-5, atol=1e-5)
        assert tuple(best[b, steps]) == path
        assert np.all(best[b, ~mask[b]] == -1)
        np.testing.assert_allclose(best_score[b], score, rtol=1e-5, atol=1e-5)


def test_probabilities_of_all_paths_sum_to_one():
    emissions, _, transitions, start, end = random_crf(7, batch=1, time=3)
    paths = np.array(list(itertools.product(range(K), repeat=3)))
    n = len(paths)
    args = as_jax(np.repeat(emissions, n, 0), paths, np.ones((n, 3), bool), transitions, start, end)
    np.testing.assert_allclose(np.exp(np.asarray(crf_log_likelihood(*args))).sum(), 1.0, rtol=1e-5)


def test_padding_never_changes_a_result():
    emissions, tags, transitions, start, end = random_crf(3, batch=4, time=4)
    mask = MASKS[:4]
    # Append 3 padded steps holding garbage emissions and tags.
    rng = np.random.default_rng(0)
    padded_emissions = np.concatenate([emissions, rng.normal(size=(4, 3, K)) * 50], axis=1)
    padded_tags = np.concatenate([tags, rng.integers(0, K, size=(4, 3))], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((4, 3), bool)], axis=1)
    short = as_jax(emissions, tags, mask, transitions, start, end)
    long = as_jax(padded_emissions, padded_tags, padded_mask, transitions, start, end)
    np.testing.assert_allclose(crf_log_likelihood(*long), crf_log_likelihood(*short), rtol=1e-6, atol=1e-6)
    long_best, long_score = viterbi_decode(long[0], *long[2:])
    short_best, short_score = viterbi_decode(short[0], *short[2:])
    np.testing.assert_array_equal(np.asarray(long_best)[:, :4], short_best)
    np.testing.assert_allclose(long_score, short_score, rtol=1e-6)


def test_gradients_are_finite_and_match_finite_differences():
    emissions, tags, transitions, start, end = random_crf(5, batch=len(MASKS))
    args = as_jax(emissions, tags, MASKS, transitions, start, end)

    def loss(transitions, emissions):
        return -crf_log_likelihood(emissions, args[1], args[2], transitions, args[4], args[5]).sum()

    grad_t, grad_e = jax.grad(loss, argnums=(0, 1))(args[3], args[0])
    assert np.all(np.isfinite(grad_t)) and np.all(np.isfinite(grad_e))
    # Padded steps get no gradient; a central difference checks one transition entry.
    np.testing.assert_array_equal(np.asarray(grad_e)[~MASKS], 0.0)
    eps = 1e-2
    bump = jnp.zeros((K, K)).at[0, 2].set(eps)
    numeric = (loss(args[3] + bump, args[0]) - loss(args[3] - bump, args[0])) / (2 * eps)
    np.testing.assert_allclose(grad_t[0, 2], numeric, rtol=2e-2, atol=2e-3)


def test_linen_wrapper_uses_its_parameters():
    emissions, tags, transitions, start, end = random_crf(1)
    mask = np.ones(tags.shape, bool)
    crf = CRF(num_tags=K)
    variables = crf.init(jax.random.key(0), jnp.asarray(emissions), jnp.asarray(tags), jnp.asarray(mask))
    assert {k: v.shape for k, v in variables["params"].items()} == {"transitions": (K, K), "start": (K,), "end": (K,)}
    params = {"transitions": jnp.asarray(transitions), "start": jnp.asarray(start), "end": jnp.asarray(end)}
    args = as_jax(emissions, tags, mask)
    np.testing.assert_allclose(
        crf.apply({"params": params}, *args), crf_log_likelihood(*args, *params.values()), rtol=1e-6
    )
    decoded, _ = crf.apply({"params": params}, args[0], args[2], method="decode")
    np.testing.assert_array_equal(decoded, viterbi_decode(args[0], args[2], *params.values())[0])


def test_rejects_mismatched_shapes():
    emissions, tags, transitions, start, end = as_jax(*random_crf(0)[:2], *random_crf(0)[2:])
    mask = jnp.ones(tags.shape, bool)
    with pytest.raises(ValueError, match=r"emissions must be f32\[batch, time, tags\]"):
        crf_log_likelihood(emissions[0], tags, mask, transitions, start, end)
    with pytest.raises(ValueError, match=r"mask must be bool\[batch, time\]"):
        viterbi_decode(emissions, mask[:, :2], transitions, start, end)
    with pytest.raises(ValueError, match=r"transitions must be f32\[tags, tags\] = \(3, 3\)"):
        viterbi_decode(emissions, mask, transitions[:2], start, end)
    with pytest.raises(ValueError, match=r"tags must be int\[batch, time\]"):
        crf_log_likelihood(emissions, tags[:, :2], mask, transitions, start, end)


def test_iob2_constraints_by_hand():
    transitions, start = iob2_allowed(["O", "B-Dis", "I-Dis", "B-Gene", "I-Gene"])
    assert start.tolist() == [True, True, False, True, False]
    # Rows: from O, B-Dis, I-Dis, B-Gene, I-Gene; columns: to the same tags.
    assert transitions.astype(int).tolist() == [[1, 1, 0, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0],
                                                [1, 1, 0, 1, 1], [1, 1, 0, 1, 1]]


@pytest.mark.parametrize("seed", range(2))
def test_constrained_viterbi_is_the_best_valid_path_by_brute_force(seed):
    tags = ["O", "B-Disease", "I-Disease"]
    emissions, _, transitions, start, end = random_crf(seed, batch=len(MASKS))
    emissions[..., 2] += 3.0  # make I-Disease tempting everywhere, so the constraint has work to do
    allowed = iob2_allowed(tags)
    scores = constrain({"transitions": jnp.asarray(transitions, jnp.float32), "start": jnp.asarray(start, jnp.float32),
                        "end": jnp.asarray(end, jnp.float32)}, allowed)
    best, _ = jax.jit(viterbi_decode)(jnp.asarray(emissions, jnp.float32), jnp.asarray(MASKS), **scores)
    best = np.asarray(best)
    for b in range(len(MASKS)):
        steps = np.flatnonzero(MASKS[b])
        if steps.size == 0:
            continue
        e = emissions[b, steps]
        valid = [p for p in itertools.product(range(3), repeat=len(steps))
                 if allowed[1][p[0]] and all(allowed[0][i, j] for i, j in zip(p[:-1], p[1:]))]
        want = max(valid, key=lambda p: path_score(e, p, transitions, start, end))
        assert tuple(best[b, steps]) == want
