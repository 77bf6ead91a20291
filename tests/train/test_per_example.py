"""Per-example gradients from one vmap equal a Python loop of single-example gradients."""

import jax
import numpy as np

from medjax.train import batching, optim
from medjax.train.config import TrainConfig
from medjax.train.per_example import per_example_grads
from medjax.train.state import init_train_state
from medjax.train.steps import loss_and_grads


def test_vmap_of_grad_equals_a_loop_of_single_examples(tiny_task):
    task = tiny_task(dropout=0.3)  # dropout: each example's key must be the one the loop uses
    batch = batching.pad_batch(next(task.splits["train"].batches(5)), 8)  # 5 real rows, 3 padding
    tx = optim.make_optimizer(TrainConfig(), total_steps=10)
    state = init_train_state(task.model, tx, batch, jax.random.PRNGKey(0))
    rng = jax.random.PRNGKey(4)
    grads = jax.jit(per_example_grads, static_argnums=2)(state, batch, task.loss, rng)
    single = jax.jit(loss_and_grads, static_argnums=3)
    for i in range(8):
        alone = {key: value[i:i + 1] for key, value in batch.items()}
        _, expected, _, _ = single(state, alone, jax.random.fold_in(rng, i), task.loss)
        jax.tree_util.tree_map(lambda g, e: np.testing.assert_allclose(g[i], e, rtol=1e-5, atol=1e-7), grads, expected)
    # Padding rows contribute nothing; the mean of the real rows' gradients is the batch gradient without dropout.
    assert all(np.all(leaf[5:] == 0) for leaf in jax.tree_util.tree_leaves(grads))
    plain = tiny_task()
    plain_state = init_train_state(plain.model, tx, batch, jax.random.PRNGKey(0))
    each = jax.jit(per_example_grads, static_argnums=2)(plain_state, batch, plain.loss, rng)
    _, whole, _, _ = single(plain_state, batch, rng, plain.loss)
    jax.tree_util.tree_map(lambda g, w: np.testing.assert_allclose(g[:5].mean(0), w, rtol=1e-5, atol=1e-7), each, whole)
