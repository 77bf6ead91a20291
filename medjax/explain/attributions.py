"""Attributions as pure functions of a model's forward pass: which inputs made it score a class.

Each method takes ``forward(x) -> logits: f32[batch, classes]`` (a model's ``apply`` with its variables bound, in
inference mode), a batch ``x: f32[batch, ...]`` (images, ECG windows, embeddings) and ``target: int[batch]`` (the
class to explain), and returns ``f32[batch, ...]`` shaped like ``x``. They are written with `jax.grad`, `vmap` and
`lax.map` and can be jitted whole (``jax.jit(integrated_gradients, static_argnums=0)``). The methods and their
references:

- `vanilla_gradients` (saliency, Simonyan et al. 2014) and `gradient_x_input` (Shrikumar et al. 2016);
- `integrated_gradients` (Sundararajan et al. 2017) with Gauss–Legendre or trapezoid steps, and its completeness gap
  ``Σ attributions − (f(x) − f(baseline))`` for every example;
- `smoothgrad` (Smilkov et al. 2017), the mean gradient over Gaussian-noised copies;
- `occlusion` (Zeiler & Fergus 2014): the score's drop when a window is replaced by a baseline, spread over the
  window and averaged over the windows covering each input, as Captum's ``Occlusion`` does.

`tests/explain/test_attributions.py` holds them to Captum on the PyTorch twins with copied weights, to finite
differences and to the completeness property. Grad-CAM and attention rollout, which need a model's insides, are in
`medjax.explain.internals`.

Example:
  >>> forward = lambda x: model.apply(variables, x)
  >>> maps, gap = integrated_gradients(forward, images, labels, steps=32)
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Forward = Callable[[jax.Array], jax.Array]


def _class_score(forward: Forward, x: jax.Array, target: jax.Array) -> jax.Array:
    """Σ_b logits[b, target_b]: its gradient is each example's own class-score gradient (examples independent)."""
    logits = forward(x)
    return jnp.take_along_axis(logits, target[:, None], axis=1).sum()


def vanilla_gradients(forward: Forward, x: jax.Array, target: jax.Array) -> jax.Array:
    """∂ logit_target / ∂x: f32 like ``x``."""
    return jax.grad(_class_score, argnums=1)(forward, x, target)


def gradient_x_input(forward: Forward, x: jax.Array, target: jax.Array) -> jax.Array:
    """x ⊙ ∂ logit_target / ∂x: f32 like ``x``."""
    return x * vanilla_gradients(forward, x, target)


def _path_points(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Points α ∈ [0, 1] on the straight path and their quadrature weights (Captum's conventions)."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if method == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return alphas, weights
    raise ValueError(f"method: expected 'gausslegendre' or 'riemann_trapezoid', got {method!r}")


def integrated_gradients(forward: Forward, x: jax.Array, target: jax.Array, baseline: jax.Array | None = None,
                         steps: int = 50, method: str = "gausslegendre") -> tuple[jax.Array, jax.Array]:
    """(x − x') ⊙ ∫₀¹ ∂f(x' + α(x − x'))/∂x dα, by quadrature over ``steps`` points of the path.

    Args:
      forward, x, target: as in the module's docstring.
      baseline: x', the reference input (zeros when None), shaped like ``x``.
      steps: quadrature points; the gradients at each are computed for the whole batch in one pass (`lax.map`
        over the points keeps memory at one batch).
      method: ``"gausslegendre"`` (Captum's default) or ``"riemann_trapezoid"``.

    Returns:
      ``(attributions f32 like x, gap f32[batch])``: the completeness gap Σ attributions − (f(x) − f(x')) of each
      example, which falls with ``steps``.
    """
    baseline = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(baseline, x.shape)
    alphas, weights = (jnp.asarray(a, x.dtype) for a in _path_points(steps, method))
    delta = x - baseline

    def weighted_gradient(point):
        alpha, weight = point
        return weight * vanilla_gradients(forward, baseline + alpha * delta, target)

    total = jax.lax.map(weighted_gradient, (alphas, weights)).sum(axis=0)
    attributions = delta * total

    def score(inputs):
        return jnp.take_along_axis(forward(inputs), target[:, None], axis=1)[:, 0]

    summed = attributions.reshape(x.shape[0], -1).sum(axis=1)
    return attributions, summed - (score(x) - score(baseline))


def smoothgrad(forward: Forward, x: jax.Array, target: jax.Array, key: jax.Array, samples: int = 25,
               noise: float = 0.15) -> jax.Array:
    """The mean of ∂ logit_target / ∂x over ``samples`` copies of ``x`` plus N(0, σ²) noise, σ = ``noise`` × (max −
    min) of each example (Smilkov et al.'s 10-20% noise level)."""
    axes = tuple(range(1, x.ndim))
    spread = (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True)) * noise

    def noisy_gradient(sample_key):
        return vanilla_gradients(forward, x + spread * jax.random.normal(sample_key, x.shape, x.dtype), target)

    return jax.lax.map(noisy_gradient, jax.random.split(key, samples)).mean(axis=0)


def occlusion(forward: Forward, x: jax.Array, target: jax.Array, window: Sequence[int], strides: Sequence[int],
              baseline: float = 0.0) -> jax.Array:
    """Occlusion over windows of the non-batch axes: the drop f(x) − f(x with the window set to ``baseline``),
    added to every input of the window, divided by how many windows cover each input.

    Args:
      forward, x, target: as in the module's docstring.
      window: the occluded window's size along each non-batch axis of ``x`` (e.g. ``(4, 4, 1)`` for NHWC images:
        a 4×4 patch of one channel; ``(4, 4, C)`` for all channels).
      strides: the step between windows along each non-batch axis.
      baseline: the value an occluded input takes.

    Returns:
      f32 like ``x``; inputs no window covers get 0.
    """
    shape = x.shape[1:]
    if len(window) != len(shape) or len(strides) != len(shape):
        raise ValueError(f"occlusion: expected window and strides for each of the {len(shape)} non-batch axes "
                         f"{shape}, got {tuple(window)} and {tuple(strides)}")
    starts = np.stack(np.meshgrid(*[np.arange(0, n - w + 1, s) for n, w, s in zip(shape, window, strides)],
                                  indexing="ij"), axis=-1).reshape(-1, len(shape))
    grids = np.indices(shape)
    masks = np.stack([np.all([(g >= a) & (g < a + w) for g, a, w in zip(grids, start, window)], axis=0)
                      for start in starts]).astype(np.float32)  # [windows, *shape]
    masks = jnp.asarray(masks, x.dtype)

    def score(inputs):
        return jnp.take_along_axis(forward(inputs), target[:, None], axis=1)[:, 0]

    reference = score(x)

    def drop(mask):
        mask = mask[None]
        occluded = x * (1 - mask) + baseline * mask
        return (reference - score(occluded))[:, None] * mask.reshape(1, -1)

    summed = jax.lax.map(drop, masks).sum(axis=0).reshape(x.shape)
    coverage = masks.sum(axis=0)
    return summed / jnp.maximum(coverage, 1.0)[None]


METHODS = {"saliency": vanilla_gradients, "gradient_x_input": gradient_x_input,
           "integrated_gradients": integrated_gradients, "smoothgrad": smoothgrad, "occlusion": occlusion}
