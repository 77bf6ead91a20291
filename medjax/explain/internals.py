"""Explanations from a model's insides, without editing the model: Grad-CAM and attention maps / rollout.

- `grad_cam` (Selvaraju et al. 2017): ReLU(Σ_c mean_{h,w}(∂y/∂A_c) · A_c) over the activations A of one layer,
  upsampled to the input. The layer's output A is read and its gradient taken through Flax's method interception
  (`flax.linen.intercept_methods`): the interceptor adds a zero perturbation δ to that layer's output, so
  ∂y/∂δ = ∂y/∂A, and the model's code is untouched. `last_spatial_layer` finds the layer Grad-CAM uses by default
  (the last convolution the model calls), through ``capture_intermediates``.
- `attention_maps` reads the weights every attention layer sows (``"intermediates"``/``"attention_weights"``) and
  `attention_rollout` (Abnar & Zuidema 2020) multiplies the head-averaged, residual-corrected maps of the layers.

Example:
  >>> layer = last_spatial_layer(model, variables, images)               # e.g. "conv2" in the tutorial CNN
  >>> heat = grad_cam(model, variables, (images,), labels, layer, size=(28, 28))   # f32[batch, 28, 28]
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.errors import UserError


def _path(module: nn.Module) -> str:
    return "/".join(module.path)


def last_spatial_layer(model: nn.Module, variables: Any, *inputs: Any, **kwargs) -> str:
    """The path (``"backbone/conv2"``) of the last convolution the model calls (medjax's `Conv2D` / `Conv1D` or
    Flax's ``nn.Conv``), found with ``capture_intermediates``: the layer Grad-CAM explains by default. ``inputs`` and
    ``kwargs`` are what ``model.apply`` takes after the variables.

    Raises:
      medjax.errors.UserError: the model has no convolution (Grad-CAM does not apply).
    """
    from medjax.nn.conv import Conv2D
    from medjax.nn.conv1d import Conv1D

    def is_convolution(module, method_name):
        return method_name == "__call__" and isinstance(module, (Conv2D, Conv1D, nn.Conv))

    _, state = model.apply(variables, *inputs, capture_intermediates=is_convolution, mutable=["intermediates"],
                           **kwargs)
    found = []

    def visit(tree, prefix):
        for name, value in tree.items():
            if name == "__call__":
                found.append("/".join(prefix))
            elif isinstance(value, dict):
                visit(value, prefix + [name])

    visit(dict(state.get("intermediates", {})), [])
    if not found:
        raise UserError(None, "Grad-CAM needs a convolutional layer; this model has none: use --method saliency, "
                              "integrated_gradients, smoothgrad or occlusion")
    return found[-1]


def grad_cam(model: nn.Module, variables: Any, inputs: tuple, target: jax.Array, layer: str,
             size: tuple[int, ...] | None = None, **kwargs) -> jax.Array:
    """Grad-CAM of ``target`` at ``layer``.

    Args:
      model: the Linen model, called as ``model.apply(variables, *inputs, **kwargs)`` -> logits f32[batch, classes].
      variables: its variables.
      inputs: the positional inputs of ``apply`` after the variables (images, a batch dict, ...).
      target: int[batch] classes to explain.
      layer: the module path whose output is explained (`last_spatial_layer`).
      size: resize the maps to this spatial size (bilinear), as Grad-CAM overlays are drawn; None keeps the
        layer's.

    Returns:
      f32[batch, *spatial]: non-negative class-activation maps.
    """
    def run(delta):
        captured = {}

        def perturb(next_fun, args, call_kwargs, context):
            out = next_fun(*args, **call_kwargs)
            if context.method_name == "__call__" and _path(context.module) == layer:
                captured["activation"] = out
                out = out + delta
            return out

        with nn.intercept_methods(perturb):
            logits = model.apply(variables, *inputs, **kwargs)
        if "activation" not in captured:
            raise UserError(None, f"Grad-CAM: the model has no layer {layer!r}")
        score = jnp.take_along_axis(logits, target[:, None], axis=1).sum()
        return score, captured["activation"]

    shape = jax.eval_shape(lambda: run(0.0)[1]).shape
    grads, activation = jax.grad(run, has_aux=True)(jnp.zeros(shape, jnp.float32))
    spatial = tuple(range(1, activation.ndim - 1))
    weights = grads.mean(axis=spatial, keepdims=True)
    cam = jax.nn.relu((weights * activation).sum(axis=-1))
    if size is not None:
        cam = jax.image.resize(cam, (cam.shape[0], *size), method="bilinear")
    return cam


def attention_maps(model: nn.Module, variables: Any, *args, **kwargs) -> list[jax.Array]:
    """Every sown attention weight array, in call order: each f32[batch, (heads,) time, time], rows summing to 1."""
    _, state = model.apply(variables, *args, mutable=["intermediates"], **kwargs)
    maps = []

    def visit(tree):
        for name, value in tree.items():
            if name == "attention_weights":
                maps.extend(value)
            elif isinstance(value, dict):
                visit(value)

    visit(dict(state.get("intermediates", {})))
    if not maps:
        raise UserError(None, "this model sows no attention weights: attention maps need an attention model")
    return maps


def attention_rollout(maps: list[jax.Array]) -> jax.Array:
    """Attention rollout: Π_layers normalise(0.5·mean_heads(A) + 0.5·I), the first layer rightmost.

    Returns:
      f32[batch, time, time]: row i is how much each input position flows into position i's output.
    """
    rolled = None
    for weights in maps:
        averaged = weights.mean(axis=1) if weights.ndim == 4 else weights
        eye = jnp.eye(averaged.shape[-1], dtype=averaged.dtype)[None]
        corrected = 0.5 * averaged + 0.5 * eye
        corrected = corrected / corrected.sum(axis=-1, keepdims=True)
        rolled = corrected if rolled is None else corrected @ rolled
    return rolled
