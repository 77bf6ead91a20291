"""The jitted steps: every parameter moves, a tiny batch is overfit, seeds replay, nothing recompiles."""

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest

from medjax.train import batching, optim, steps
from medjax.train.config import TrainConfig
from medjax.train.state import init_train_state


def norm(tree):
    return np.sqrt(sum(np.sum(np.square(np.asarray(leaf, np.float64))) for leaf in jax.tree_util.tree_leaves(tree)))


def first_batch(task, size=8):
    return batching.pad_batch(next(task.splits["train"].batches(size)), size)


# One optimizer object and one task per model for the whole module: the jitted steps see the same static fields and
# loss, so their compilations are shared between tests.
TX = optim.make_optimizer(TrainConfig(lr=0.01), total_steps=100)


@pytest.fixture(scope="module")
def plain_task(tiny_task):
    return tiny_task()


@pytest.fixture(scope="module")
def bn_dropout_task(tiny_task):
    return tiny_task(batch_norm=True, dropout=0.2)


def fresh_state(task, seed=0, tx=TX):
    return init_train_state(task.model, tx, first_batch(task), jax.random.PRNGKey(seed))


def test_one_step_moves_every_parameter_and_the_batch_statistics(bn_dropout_task):
    task = bn_dropout_task
    batch = first_batch(task)
    state = fresh_state(task)
    assert set(state.collections["batch_stats"]["norm"]) == {"mean", "var"}
    before = jax.device_get((state.params, state.collections))

    # The reference gradient norm, from a separate value_and_grad of the same loss with the same dropout key.
    rng = jax.random.PRNGKey(7)

    def reference_loss(params):
        outputs, _ = state.apply_fn(
            {"params": params, **state.collections}, batch, train=True,
            rngs={"dropout": jax.random.fold_in(jax.random.fold_in(rng, 0), 0)}, mutable=["batch_stats"],
        )
        return task.loss(outputs, batch)[0]

    reference_loss_value, reference_grads = jax.jit(jax.value_and_grad(reference_loss))(state.params)
    reference_grad_norm = norm(reference_grads)

    state, metrics = steps.train_step(state, batch, rng, task.loss)
    after = jax.device_get((state.params, state.collections))
    changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), before, after)
    assert all(jax.tree_util.tree_leaves(changed)), changed
    assert int(state.step) == 1
    np.testing.assert_allclose(metrics["loss"].value(), reference_loss_value, rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], reference_grad_norm, rtol=1e-5)
    np.testing.assert_allclose(metrics["param_norm"], norm(after[0]), rtol=1e-6)
    assert float(metrics["lr"]) == pytest.approx(0.01)
    assert int(metrics["loss"].count) == 8
    assert float(metrics["task"]["correct"].count) == 8


def test_a_tiny_batch_is_overfit(plain_task):
    task = plain_task
    batch = first_batch(task)
    state = fresh_state(task, tx=optim.make_optimizer(TrainConfig(lr=0.05), total_steps=100))
    rng = jax.random.PRNGKey(0)
    for _ in range(60):
        state, metrics = steps.train_step(state, batch, rng, task.loss)
    assert metrics["loss"].value() < 0.02


def test_the_same_seed_replays_exactly_and_another_does_not(bn_dropout_task):
    task = bn_dropout_task
    batch = first_batch(task)

    def run(state, dropout_seed):
        for _ in range(3):
            state, _ = steps.train_step(state, batch, jax.random.PRNGKey(dropout_seed), task.loss)
        return jax.device_get(state.params)

    start = fresh_state(task, seed=0)
    np.testing.assert_array_equal(start.params["out"]["kernel"], fresh_state(task, seed=0).params["out"]["kernel"])
    assert not np.array_equal(start.params["out"]["kernel"], fresh_state(task, seed=1).params["out"]["kernel"])
    copies = [jax.tree_util.tree_map(jnp.copy, start) for _ in range(2)]  # train_step donates its state
    first, again, other_dropout = run(copies[0], 1), run(copies[1], 1), run(start, 2)
    jax.tree_util.tree_map(np.testing.assert_array_equal, first, again)
    assert not np.array_equal(first["out"]["kernel"], other_dropout["out"]["kernel"])


def test_steps_compile_once_for_same_shaped_batches(plain_task):
    task = plain_task

    # A loss function seen by no other test, so this test's compilations are its own.
    def loss(outputs, batch):
        return task.loss(outputs, batch)

    batches = list(batching.padded_batches(task.splits["train"], 8))  # the last one is padded: 44 = 5 * 8 + 4
    state = fresh_state(task)
    train_before, eval_before = steps.train_step._cache_size(), steps.eval_step._cache_size()
    rng = jax.random.PRNGKey(0)

    def predict(apply, variables, batch):
        return task.predict(apply, variables, batch)

    for batch in batches:
        state, _ = steps.train_step(state, batch, rng, loss)
        steps.eval_step(state, batch, predict)
    assert steps.train_step._cache_size() == train_before + 1
    assert steps.eval_step._cache_size() == eval_before + 1


def test_eval_step_predicts_in_inference_mode(bn_dropout_task):
    task = bn_dropout_task
    batch = first_batch(task)
    state = fresh_state(task)
    state, _ = steps.train_step(state, batch, jax.random.PRNGKey(0), task.loss)
    predictions = steps.eval_step(state, batch, task.predict)
    # Running statistics, no dropout: the same as a plain apply with train=False.
    logits = task.model.apply({"params": state.params, **state.collections}, batch, train=False)
    np.testing.assert_allclose(predictions["scores"], jax.nn.softmax(logits), rtol=1e-6)
    np.testing.assert_array_equal(predictions["labels"], batch["label"])


def test_train_state_without_batch_norm_has_no_collections(plain_task):
    state = fresh_state(plain_task)
    assert state.collections == {}
    assert set(state.variables) == {"params"}
    assert jnp.issubdtype(state.step.dtype, jnp.integer)


class CountingNoisyModel(nn.Module):
    """A model with a collection of its own (a call counter) and two random streams (dropout and input noise)."""

    @nn.compact
    def __call__(self, batch, train: bool = False):
        calls = self.variable("counters", "calls", lambda: jnp.zeros((), jnp.int32))
        x = batch["x"]
        if train:
            calls.value += 1
            x = x + 0.1 * jax.random.normal(self.make_rng("noise"), x.shape)
        x = nn.Dropout(0.5, deterministic=not train)(nn.Dense(8)(x))
        return nn.Dense(3)(x)


def test_the_state_keeps_any_collection_and_the_step_draws_every_named_stream(plain_task):
    batch = first_batch(plain_task)
    model = CountingNoisyModel()
    streams = ("dropout", "noise")
    state = init_train_state(model, TX, batch, jax.random.PRNGKey(0), streams)
    assert int(state.collections["counters"]["calls"]) == 0
    rng = jax.random.PRNGKey(3)
    expected_keys = steps.step_rngs(rng, state.step, streams)
    outputs, _ = model.apply(state.variables, batch, train=True, rngs=expected_keys, mutable=["counters"])
    reference = plain_task.loss(outputs, batch)[0]
    state, metrics = steps.train_step(state, batch, rng, plain_task.loss, streams)
    np.testing.assert_allclose(metrics["loss"].value(), reference, rtol=1e-6)
    state, _ = steps.train_step(state, batch, rng, plain_task.loss, streams)
    assert int(state.collections["counters"]["calls"]) == 2
    keys = steps.step_rngs(rng, jnp.int32(0), streams)
    assert not np.array_equal(jax.random.key_data(keys["dropout"]), jax.random.key_data(keys["noise"]))


def test_predict_may_run_the_model_again(plain_task):
    """The contract's predict gets ``apply`` and the variables: a decoder can call the model step by step."""
    batch = first_batch(plain_task)
    state = fresh_state(plain_task)

    def predict_twice(apply, variables, batch):
        first = apply(variables, batch, train=False)
        # A second call on an input built from the first call's output, as greedy decoding feeds its last token.
        shifted = {**batch, "x": batch["x"] + jnp.argmax(first, -1, keepdims=True).astype(jnp.float32)}
        return {"first": first, "second": apply(variables, shifted, train=False)}

    out = steps.eval_step(state, batch, predict_twice)
    again = plain_task.model.apply(state.variables, {**batch, "x": batch["x"] + np.argmax(out["first"], -1)[:, None]})
    np.testing.assert_allclose(out["second"], again, rtol=1e-6)
