"""The model-randomisation sanity check (Adebayo et al. 2018): re-initialised weights must change the maps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from medjax.explain import attributions
from medjax.explain.sanity import randomized_variables, rank_correlations
from medjax.nn.conv import TutorialCNN


def _trained_cnn():
    """The tutorial CNN trained to tell images with a bright top-left square (class 1) from noise (class 0)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.5, (64, 16, 16, 1)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    x[y == 1, 2:7, 2:7] += 0.5
    model = TutorialCNN(num_classes=2, features=(8, 16), dense=32)
    variables = model.init(jax.random.key(0), x[:1])
    tx = optax.adam(3e-3)
    opt = tx.init(variables["params"])

    @jax.jit
    def step(params, opt):
        def loss(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = jax.grad(loss)(params)
        updates, opt = tx.update(grads, opt)
        return optax.apply_updates(params, updates), opt

    params = variables["params"]
    for _ in range(150):
        params, opt = step(params, opt)
    return model, {"params": params}, jnp.asarray(x[y == 1][:8]), jnp.ones(8, jnp.int32)


def test_rank_correlation_by_hand():
    assert rank_correlations([[1.0, 2.0, 3.0]], [[10.0, 20.0, 30.0]])[0] == 1.0
    assert rank_correlations([[1.0, 2.0, 3.0]], [[-3.0, -2.0, -1.0]])[0] == -1.0  # of absolute values


def test_randomising_the_weights_breaks_saliency_and_weakens_integrated_gradients():
    model, trained, x, target = _trained_cnn()
    random = randomized_variables(model, trained, jax.random.key(7), x[:1])
    assert np.all(np.asarray(jax.nn.softmax(model.apply(trained, x))[:, 1]) > 0.9)  # it learned the square

    def maps(variables):
        forward = lambda images: model.apply(variables, images)  # noqa: E731
        return (attributions.vanilla_gradients(forward, x, target),
                attributions.integrated_gradients(forward, x, target, steps=16)[0])

    (s_trained, ig_trained), (s_random, ig_random) = maps(trained), maps(random)
    assert np.allclose(rank_correlations(s_trained, s_trained), 1.0)
    saliency_rho, ig_rho = rank_correlations(s_trained, s_random), rank_correlations(ig_trained, ig_random)
    # Saliency fails to survive randomisation, as it should; integrated gradients, multiplied by the input, keep
    # part of the input's structure (Adebayo et al.'s finding for input-multiplied methods): still correlated.
    assert saliency_rho.mean() < 0.2 and saliency_rho.mean() < ig_rho.mean() < 0.9, (saliency_rho, ig_rho)
    # The trained model's integrated gradients sit on the evidence: the 5x5 square (10% of the pixels) holds
    # more than a third of the attribution mass; the random model's do not.
    share = lambda m: float(np.abs(m)[:, 2:7, 2:7].sum() / np.abs(m).sum())  # noqa: E731
    assert share(ig_trained) > 0.33 > share(ig_random), (share(ig_trained), share(ig_random))
