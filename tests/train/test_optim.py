"""Optimizers against torch.optim, schedules against their formulas, clipping against a hand-computed update."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from medjax.train import optim
from medjax.errors import ConfigError
from medjax.train.config import TrainConfig


def lr_at(config, total_steps, steps):
    schedule = optim.make_schedule(config, total_steps)
    return [float(schedule(s)) for s in steps]


def test_constant_and_cosine_schedules():
    assert lr_at(TrainConfig(lr=0.3), 10, [0, 5, 10]) == pytest.approx([0.3] * 3)
    steps = [0, 25, 50, 100]
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * s / 100)) for s in steps]
    assert lr_at(TrainConfig(lr=0.2, schedule="cosine"), 100, steps) == pytest.approx(expected, abs=1e-7)


def test_multistep_schedule_decays_at_fractions_of_training():
    config = TrainConfig(lr=1.0, schedule="multistep", milestones=(0.5, 0.75), decay_factor=0.1)
    got = lr_at(config, 100, [0, 49, 50, 74, 75, 99])
    assert got == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    # Two milestones on the same step both apply.
    same_step = TrainConfig(lr=1.0, schedule="multistep", milestones=(0.5, 0.5), decay_factor=0.5)
    assert lr_at(same_step, 10, [4, 5]) == pytest.approx([1.0, 0.25])


def test_unknown_names_and_bad_values_raise_with_the_valid_choices():
    # The config refuses them when it is built, naming the flag and the valid names.
    with pytest.raises(ConfigError, match="--optimizer: expected one of adam, adamw, sgd, got 'adamax'"):
        TrainConfig(optimizer="adamax")
    with pytest.raises(ConfigError, match="--schedule: expected one of constant, cosine, multistep, got 'linear'"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="--clip-norm: expected a number >= 0, got -1.0"):
        TrainConfig(clip_norm=-1.0)
    with pytest.raises(ConfigError, match="--lr: expected a number > 0, got 0.0"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match=r"milestones are fractions of training in \(0, 1\]; got \(50.0,\)"):
        optim.make_schedule(TrainConfig(schedule="multistep", milestones=(50,)), 10)


def test_clipping_by_global_norm():
    params = {"a": jnp.zeros(2), "b": jnp.zeros(())}
    grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array(4.0)}  # global norm 5
    for clip_norm, scale in ((1.0, 1 / 5), (0.0, 1.0), (10.0, 1.0)):
        tx = optim.make_optimizer(TrainConfig(optimizer="sgd", lr=1.0, momentum=0.0, clip_norm=clip_norm), 10)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates["a"], -scale * grads["a"], rtol=1e-6)
        np.testing.assert_allclose(updates["b"], -scale * grads["b"], rtol=1e-6)


def test_current_lr_is_the_rate_of_the_step_just_taken():
    config = TrainConfig(optimizer="sgd", lr=1.0, schedule="multistep", milestones=(0.5,), decay_factor=0.1)
    tx = optim.make_optimizer(config, 4)
    params = jnp.zeros(3)
    state = tx.init(params)
    rates = []
    for _ in range(4):
        _, state = tx.update(jnp.ones(3), state, params)
        rates.append(float(optim.current_lr(state)))
    assert rates == pytest.approx([1.0, 1.0, 0.1, 0.1])


@pytest.mark.parametrize(
    "name, config, torch_optimizer",
    [
        (
            "sgd",
            dict(lr=0.1, momentum=0.9, weight_decay=0.01),
            lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
        ),
        ("adam", dict(lr=0.01, weight_decay=0.01), lambda t, p: t.optim.Adam(p, lr=0.01, weight_decay=0.01)),
        ("adamw", dict(lr=0.01, weight_decay=0.1), lambda t, p: t.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ],
)
def test_optimizers_match_torch(name, config, torch_optimizer):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    start = rng.normal(size=5).astype(np.float32)
    grads = rng.normal(size=(4, 5)).astype(np.float32)
    tx = optim.make_optimizer(TrainConfig(optimizer=name, **config), 4)
    params = jnp.asarray(start)
    state = tx.init(params)
    weight = torch.nn.Parameter(torch.tensor(start))
    opt = torch_optimizer(torch, [weight])
    for grad in grads:
        updates, state = tx.update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
        weight.grad = torch.tensor(grad)
        opt.step()
    np.testing.assert_allclose(params, weight.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_equal_settings_give_the_same_optimizer_object():
    # The train state holds the optimizer as a static field: the same object lets a second run reuse compiled steps.
    first = optim.make_optimizer(TrainConfig(lr=0.01, workdir="a", seed=1), 10)
    assert optim.make_optimizer(TrainConfig(lr=0.01, workdir="b", seed=2), 10) is first
    assert optim.make_optimizer(TrainConfig(lr=0.02), 10) is not first
    assert optim.make_optimizer(TrainConfig(lr=0.01), 11) is not first
