"""Attributions against Captum on the PyTorch twin with copied weights, finite differences and completeness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.explain import attributions as attr
from medjax.explain.internals import attention_maps, attention_rollout, grad_cam, last_spatial_layer
from medjax.nn.conv import TutorialCNN
from medjax.nn.text_classifiers import TransformerTextClassifier


@pytest.fixture(scope="module")
def cnn():
    model = TutorialCNN(num_classes=3)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 1)), jnp.float32)
    target = jnp.array([0, 1, 2, 1])
    return model, variables, x, target


def _twin(variables):
    pytest.importorskip("torch")
    from benchmarks.twins import cnn as twin

    return twin.build({"channels": 1, "size": 16, "classes": 3}, jax.tree_util.tree_map(np.asarray, variables))


def _nchw(a):
    return np.asarray(a).transpose(0, 3, 1, 2)


@pytest.mark.torch
def test_saliency_integrated_gradients_and_occlusion_equal_captum(cnn):
    captum_attr = pytest.importorskip("captum.attr")
    import torch

    model, variables, x, target = cnn
    forward = lambda images: model.apply(variables, images)  # noqa: E731
    twin = _twin(variables)
    tx, tt = torch.tensor(_nchw(x)), torch.tensor(np.asarray(target))
    theirs = captum_attr.Saliency(twin).attribute(tx, target=tt, abs=False).numpy()
    np.testing.assert_allclose(_nchw(attr.vanilla_gradients(forward, x, target)), theirs, rtol=1e-4, atol=1e-6)
    ours, gap = attr.integrated_gradients(forward, x, target, steps=20)
    theirs, delta = captum_attr.IntegratedGradients(twin).attribute(tx, target=tt, n_steps=20,
                                                                   return_convergence_delta=True)
    np.testing.assert_allclose(_nchw(ours), theirs.numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gap), delta.numpy(), atol=1e-4)
    ours = attr.occlusion(forward, x, target, window=(4, 4, 1), strides=(2, 2, 1))
    theirs = captum_attr.Occlusion(twin).attribute(tx, target=tt, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2))
    np.testing.assert_allclose(_nchw(ours), theirs.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.torch
def test_grad_cam_equals_captum_layer_grad_cam(cnn):
    captum_attr = pytest.importorskip("captum.attr")
    import torch

    model, variables, x, target = cnn
    assert last_spatial_layer(model, variables, x) == "conv2"
    ours = grad_cam(model, variables, (x,), target, "conv2")
    twin = _twin(variables)
    theirs = captum_attr.LayerGradCam(twin, twin.conv2).attribute(torch.tensor(_nchw(x)),
                                                                   target=torch.tensor(np.asarray(target)),
                                                                   relu_attributions=True)
    np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy()[:, 0], rtol=1e-4, atol=1e-6)
    assert grad_cam(model, variables, (x,), target, "conv2", size=(16, 16)).shape == (4, 16, 16)


def test_integrated_gradients_completeness_gap_falls_with_steps(cnn):
    model, variables, x, target = cnn
    forward = jax.jit(lambda images: model.apply(variables, images))
    gaps = [float(jnp.abs(attr.integrated_gradients(forward, x, target, steps=n)[1]).max()) for n in (2, 8, 64)]
    assert gaps[2] < gaps[0] and gaps[2] < 1e-3


def test_gradient_x_input_matches_finite_differences(cnn):
    model, variables, x, target = cnn
    forward = lambda images: model.apply(variables, images)  # noqa: E731
    grads = attr.vanilla_gradients(forward, x, target)
    direction = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
    eps = 1e-2
    score = lambda images: jnp.take_along_axis(forward(images), target[:, None], 1).sum()  # noqa: E731
    numeric = (score(x + eps * direction) - score(x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float((grads * direction).sum()), float(numeric), rtol=2e-2)
    np.testing.assert_allclose(attr.gradient_x_input(forward, x, target), x * grads, rtol=1e-6)


def test_smoothgrad_of_a_linear_model_is_its_gradient():
    weights = jnp.array([[1.0, -2.0], [3.0, 0.5], [0.0, 1.0]])
    forward = lambda x: x @ weights  # noqa: E731
    x = jnp.ones((2, 3))
    got = attr.smoothgrad(forward, x, jnp.array([0, 1]), jax.random.key(0), samples=5)
    np.testing.assert_allclose(got, weights.T[jnp.array([0, 1])], rtol=1e-6)


def test_grad_cam_refuses_a_model_without_convolutions():
    from medjax.errors import UserError

    model = TransformerTextClassifier(20, 2, 8, 1, 2, 16, 0.0, "sinusoidal", 8)
    ids, mask = jnp.ones((2, 8), jnp.int32), jnp.ones((2, 8), bool)
    variables = model.init(jax.random.key(0), ids, mask)
    with pytest.raises(UserError, match="Grad-CAM needs a convolutional layer"):
        last_spatial_layer(model, variables, ids, mask)


def test_attention_rows_sum_to_one_and_rollout_by_hand():
    model = TransformerTextClassifier(20, 2, 8, 2, 2, 16, 0.0, "sinusoidal", 6)
    ids = jnp.asarray(np.random.default_rng(0).integers(2, 20, (2, 6)), jnp.int32)
    mask = jnp.arange(6)[None] < jnp.array([[6], [4]])
    variables = model.init(jax.random.key(0), ids, mask)
    maps = attention_maps(model, variables, ids, mask)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 6, 6)
    np.testing.assert_allclose(maps[0].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(maps[0][1, :, :, 4:], 0.0, atol=1e-7)  # padded keys get no weight
    a = [0.5 * m.mean(1) + 0.5 * jnp.eye(6)[None] for m in maps]
    a = [m / m.sum(-1, keepdims=True) for m in a]
    np.testing.assert_allclose(attention_rollout(maps), a[1] @ a[0], rtol=1e-5)
