"""The explicit data-parallel steps (shard_map with psum, pmap) against the jit + NamedSharding step on 8 fake CPU
devices: the same parameters and metrics after several steps, padding rows spread unevenly over the devices."""

import jax
import numpy as np
import pytest

from medjax.train import batching, data_parallel, optim, sharding, steps
from medjax.train.config import TrainConfig
from medjax.train.state import init_train_state


@pytest.fixture(scope="module")
def setting(tiny_task):
    task = tiny_task()  # no batch norm, no dropout: the three forms must agree to rounding
    batches = [batching.pad_batch(b, 16) for b in task.splits["train"].batches(12)][:3]  # 12 real rows of 16
    tx = optim.make_optimizer(TrainConfig(optimizer="sgd", lr=0.1), total_steps=10)
    state = init_train_state(task.model, tx, batches[0], jax.random.PRNGKey(0))
    return task, batches, state


def run(step, state, batches, rng, prepare):
    history = []
    for batch in batches:
        state, metrics = step(state, prepare(batch), rng)
        history.append(jax.device_get(metrics))
    return jax.device_get(state.params), history


def test_shard_map_and_pmap_steps_equal_the_named_sharding_step(setting):
    task, batches, state = setting
    mesh = sharding.make_mesh(8)
    rng = jax.random.PRNGKey(1)
    copy = lambda: jax.tree_util.tree_map(np.array, jax.device_get(state))  # every step donates its state

    def named(s, b, r):
        return steps.train_step(s, b, r, task.loss)

    expected, expected_metrics = run(named, sharding.replicate(copy(), mesh), batches, rng,
                                     lambda b: sharding.shard_batch(b, mesh))
    explicit = data_parallel.shard_map_train_step(mesh, task.loss)
    got, got_metrics = run(explicit, sharding.replicate(copy(), mesh), batches, rng,
                           lambda b: sharding.shard_batch(b, mesh))
    pmapped = data_parallel.pmap_train_step(task.loss, devices=jax.devices()[:8])
    via_pmap, pmap_metrics = run(pmapped, data_parallel.replicate_for_pmap(copy(), 8), batches,
                                 data_parallel.replicate_for_pmap(rng, 8), lambda b: data_parallel.split_for_pmap(b, 8))
    via_pmap = jax.tree_util.tree_map(lambda leaf: leaf[0], via_pmap)
    for params in (got, via_pmap):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params, expected)
    for want, shard, pm in zip(expected_metrics, got_metrics, pmap_metrics):
        assert shard["loss"].value() == pytest.approx(want["loss"].value(), rel=1e-5)
        assert float(pm["loss"].total[0]) / float(pm["loss"].count[0]) == pytest.approx(want["loss"].value(), rel=1e-5)
        assert float(shard["loss"].count) == 12.0  # the padding rows counted nowhere
        assert float(shard["task"]["correct"].total) == float(want["task"]["correct"].total)
        assert float(shard["grad_norm"]) == pytest.approx(float(want["grad_norm"]), rel=1e-5)
