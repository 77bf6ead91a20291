"""DP-SGD: per-example clipping, Gaussian noise, Poisson sampling with fixed shapes, and its privacy accounting.

The step (`dp_train_step`) takes each example's gradient alone (`jax.vmap` of `jax.grad`), scales it to an L2 norm of
at most ``clip``, sums the real rows, adds Gaussian noise of standard deviation ``noise_multiplier * clip`` and
divides by the expected batch size (Abadi et al. 2016). Batches are Poisson samples: every example joins each step
independently with probability ``q = batch_size / N``; a sample is padded (masked) to a fixed ``max_batch`` so the step
compiles once. ``max_batch`` is chosen so that the chance of any step's sample being larger, over the whole run, is
at most ``delta / 100`` (the binomial tail, exactly); such a sample would be cut to a random subset, and that chance is
spent from delta: the run is ``(epsilon, delta)``-DP with the Poisson-subsampled Gaussian accounted at
``delta - P(any cut)`` by the RDP accountant of Google's ``dp_accounting`` (Mironov 2017). The noise multiplier is
calibrated so that the whole run spends the ``epsilon`` asked for, and each epoch's spent epsilon is logged.

Example:
  >>> plan = DPPlan.for_run(num_examples=546, batch_size=64, epochs=15, epsilon=8.0, delta=1e-5, clip=1.0)
  >>> plan.noise_multiplier, plan.epsilon_after(plan.steps_per_epoch)   # sigma, epsilon spent by epoch 1
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from medjax.errors import ConfigError
from medjax.train import batching
from medjax.train.state import TrainState
from medjax.train.per_example import per_example_losses_and_grads
from medjax.train.steps import apply_update, step_rngs
from medjax.train.task import LossFn, Split

def _event(plan: "DPPlan", noise_multiplier: float, steps: int):
    import dp_accounting

    one = dp_accounting.PoissonSampledDpEvent(plan.sampling_probability,
                                              dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(one, steps)


def _epsilon(plan: "DPPlan", noise_multiplier: float, steps: int) -> float:
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant()
    accountant.compose(_event(plan, noise_multiplier, steps))
    return float(accountant.get_epsilon(plan.delta - plan.cut_probability))


def _quiet_accountant():
    # The RDP accountant logs a warning for every fractional order whose series it skips (harmless, and it
    # would flood a run's output).
    logging.getLogger("absl").setLevel(logging.ERROR)


@dataclasses.dataclass(frozen=True)
class DPPlan:
    """The privacy parameters of one run.

    Attributes:
      num_examples: N, the training examples.
      sampling_probability: q, each example's chance of joining a step.
      max_batch: the fixed (padded) batch size; larger samples are truncated.
      steps_per_epoch: round(1 / q) steps make an epoch (each example is seen once in expectation).
      epochs: the run's epochs.
      delta: the target delta.
      clip: the per-example L2 bound C.
      noise_multiplier: sigma; the noise has standard deviation sigma * C.
      cut_probability: the chance that some step of the run samples more than ``max_batch`` examples.
    """

    num_examples: int
    sampling_probability: float
    max_batch: int
    steps_per_epoch: int
    epochs: int
    delta: float
    clip: float
    noise_multiplier: float = 0.0
    cut_probability: float = 0.0

    @classmethod
    def for_run(cls, num_examples: int, batch_size: int, epochs: int, epsilon: float, delta: float,
                clip: float, multiple: int = 1) -> "DPPlan":
        """The plan whose noise multiplier spends exactly ``(epsilon, delta)`` over the run (PLD accounting);
        ``max_batch`` is rounded up to a ``multiple`` (the devices the batch is split over)."""
        if not 0 < delta < 1 / num_examples:
            raise ConfigError("--dp-delta", f"expected 0 < delta < 1/{num_examples} (the training examples: a "
                                            f"delta of 1/N allows one example to leak outright), got {delta:g}")
        if batch_size >= num_examples:
            raise ConfigError("--batch-size", f"expected fewer than the {num_examples} training examples for "
                                              f"Poisson sampling, got {batch_size}")
        from scipy.stats import binom

        _quiet_accountant()
        q = batch_size / num_examples
        steps_per_epoch = max(1, round(1 / q))
        steps = steps_per_epoch * epochs
        # The smallest padded size (a multiple of the devices) whose tail, over all steps, is within delta / 100.
        max_batch = multiple * math.ceil(batch_size / multiple)
        while max_batch < num_examples and steps * binom.sf(max_batch, num_examples, q) > delta / 100:
            max_batch += multiple
        cut = min(1.0, steps * float(binom.sf(max_batch, num_examples, q)))
        plan = cls(num_examples, q, max_batch, steps_per_epoch, epochs, delta, clip, 0.0, cut)
        import dp_accounting
        from dp_accounting import rdp

        sigma = dp_accounting.calibrate_dp_mechanism(
            rdp.RdpAccountant, lambda s: _event(plan, s, steps), epsilon, delta - cut,
            bracket_interval=dp_accounting.LowerEndpointAndGuess(0.3, 2.0), tol=1e-3)
        return dataclasses.replace(plan, noise_multiplier=float(sigma))

    def epsilon_after(self, steps: int) -> float:
        """The epsilon spent after ``steps`` steps of this plan."""
        return _epsilon(self, self.noise_multiplier, steps) if steps else 0.0


def poisson_batches(split: Split, plan: DPPlan, seed: int, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    """The epoch's ``plan.steps_per_epoch`` Poisson-sampled batches, each padded (``example_mask``) to ``max_batch``.

    The samples depend only on ``(seed, epoch)``, so a resumed run draws the same ones.
    """
    rng = np.random.default_rng([seed, epoch, 7])
    for _ in range(plan.steps_per_epoch):
        chosen = np.flatnonzero(rng.random(len(split)) < plan.sampling_probability)
        if len(chosen) > plan.max_batch:
            chosen = np.sort(rng.choice(chosen, plan.max_batch, replace=False))
        if len(chosen) == 0:  # nothing sampled: one row, masked out, keeps the shape
            batch = next(split.batches(1, np.zeros(1, np.int64)))
            batch["example_mask"] = np.zeros(1, bool)
        else:
            batch = next(split.batches(len(chosen), chosen))
        yield batching.pad_batch(batch, plan.max_batch)


def clip_per_example(grads: Any, clip: float, mask: jax.Array) -> tuple[Any, jax.Array]:
    """Each example's gradient scaled to an L2 norm of at most ``clip``, padding rows zeroed.

    Args:
      grads: a pytree whose leaves have a leading batch axis B.
      clip: the bound C.
      mask: bool[B], False on padding rows.

    Returns:
      ``(clipped, norms)``: the clipped pytree and f32[B] the norms before clipping.
    """
    leaves = jax.tree_util.tree_leaves(grads)
    norms = jnp.sqrt(sum(jnp.sum(jnp.square(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in leaves))
    scale = jnp.where(mask, jnp.minimum(1.0, clip / jnp.maximum(norms, 1e-12)), 0.0)
    clipped = jax.tree_util.tree_map(lambda leaf: leaf * scale.reshape((-1,) + (1,) * (leaf.ndim - 1)), grads)
    return clipped, norms


def noised_mean(clipped: Any, key: jax.Array, clip: float, noise_multiplier: float, expected_batch: float) -> Any:
    """``(sum over examples + N(0, (sigma C)^2)) / expected batch``, leaf by leaf."""
    leaves, tree = jax.tree_util.tree_flatten(clipped)
    keys = jax.random.split(key, len(leaves))
    noisy = [(jnp.sum(leaf, axis=0) + noise_multiplier * clip * jax.random.normal(k, leaf.shape[1:], leaf.dtype))
             / expected_batch for leaf, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, noisy)


@functools.partial(jax.jit, static_argnames=("loss_fn", "rng_streams", "plan"), donate_argnames=("state",))
def dp_train_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, loss_fn: LossFn,
                  rng_streams: tuple[str, ...], plan: DPPlan) -> tuple[TrainState, dict[str, Any]]:
    """One DP-SGD step on a Poisson-sampled, padded batch; metrics as `medjax.train.steps.train_step`'s."""
    keys = step_rngs(rng, state.step, (*rng_streams, "dp_noise"))
    mask = batch["example_mask"]
    losses, grads, metrics = per_example_losses_and_grads(state, batch, loss_fn, rng, rng_streams)
    clipped, _ = clip_per_example(grads, plan.clip, mask)
    expected = plan.sampling_probability * plan.num_examples
    noisy = noised_mean(clipped, keys["dp_noise"], plan.clip, plan.noise_multiplier, expected)
    examples = jnp.sum(mask)
    loss = jnp.sum(jnp.where(mask, losses, 0.0)) / jnp.maximum(examples, 1)
    metrics = jax.tree_util.tree_map(lambda leaf: jnp.sum(leaf, axis=0), metrics)
    # Collections (batch statistics) would mix examples: DP runs keep them as initialised (see `check_model`).
    return apply_update(state, loss, noisy, metrics, state.collections, examples)


def check_model(state: TrainState) -> None:
    """DP-SGD bounds each example's influence only if no state mixes examples: batch norm's statistics would."""
    if state.collections:
        raise ConfigError("--dp-epsilon", f"expected a model without batch statistics (they mix examples and are not "
                                          f"private), got collections {sorted(state.collections)}; use a model "
                                          f"without batch norm (e.g. --model cnn)")
