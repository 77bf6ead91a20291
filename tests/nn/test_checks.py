"""The shared validators: each check accepts what it documents and refuses the rest with the documented message."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn.checks import IMAGE_DIMS, check_array, check_images, check_labels, describe


def test_message_names_expected_and_received():
    with pytest.raises(TypeError) as error:
        check_array(np.zeros((2, 28, 28), np.uint8), "images", dims=IMAGE_DIMS)
    assert str(error.value) == (
        "images: expected float array of rank 4 [batch, height, width, channels], got uint8 array of shape (2, 28, 28)"
    )


@pytest.mark.parametrize(
    "x, kwargs, error, message",
    [
        (np.zeros((2, 3), np.float32), dict(rank=3), ValueError, "x: expected float array of rank 3, got float32"),
        (np.zeros((2, 3), np.int32), dict(rank=2), TypeError, "x: expected float array of rank 2, got int32"),
        (np.zeros((2, 3), np.float32), dict(dtype_kind="iu"), TypeError, "x: expected integer array, got float32"),
        (np.zeros((2, 3), np.float32), dict(dtype_kind="b"), TypeError, "x: expected bool array"),
        ([1.0, 2.0], dict(), TypeError, "x: expected float array, got list"),
        (None, dict(rank=1), TypeError, "got NoneType"),
        (
            np.zeros((4, 5), bool),
            dict(dims=("batch", "time"), shape=(4, 6), dtype_kind="b"),
            ValueError,
            "x: expected bool array of shape (4, 6) [batch, time], got bool array of shape (4, 5)",
        ),
        (
            np.zeros((2, 8, 8, 1), np.float32),
            dict(dims=IMAGE_DIMS, last_dim=3),
            ValueError,
            "x: expected float array of shape (*, *, *, 3) [batch, height, width, channels], got float32 array of "
            "shape (2, 8, 8, 1)",
        ),
    ],
)
def test_refused(x, kwargs, error, message):
    with pytest.raises(error) as caught:
        check_array(x, "x", **kwargs)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "x, kwargs",
    [
        (np.zeros((2, 3), np.float32), dict(rank=2)),
        (jnp.zeros((2, 3), jnp.bfloat16), dict(rank=2)),  # bfloat16's NumPy kind is "V", but it is a float
        (np.zeros((2, 3), np.uint8), dict(dtype_kind="iu", shape=(2, None))),
        (np.zeros((2, 3), np.int64), dict(dtype_kind="iu", last_dim=3, rank=2)),
        (np.zeros((2,), bool), dict(dtype_kind="b")),
        (np.zeros((2, 3), np.complex64), dict(dtype_kind=None, rank=2)),
        (jax.ShapeDtypeStruct((1, 28, 28, 3), jnp.float32), dict(dims=IMAGE_DIMS, last_dim=3)),
    ],
)
def test_accepted(x, kwargs):
    check_array(x, "x", **kwargs)


def test_hint_is_appended():
    with pytest.raises(ValueError, match=r"got float32 array of shape \(3,\)\. Try harder$"):
        check_array(np.zeros((3,), np.float32), "x", rank=2, hint="Try harder")


def test_inconsistent_arguments_are_a_programming_error():
    with pytest.raises(ValueError, match="has 2 axes but rank is 3"):
        check_array(np.zeros((2, 3)), "x", rank=3, shape=(2, 3))
    with pytest.raises(ValueError, match="last_dim needs rank"):
        check_array(np.zeros((2, 3)), "x", last_dim=3)


def test_runs_at_trace_time_before_compilation():
    traced = []

    @jax.jit
    def f(x):
        traced.append(describe(x))
        check_array(x, "x", rank=2)
        return x * 2

    assert f(jnp.ones((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match=re.escape("expected float array of rank 2, got float32 array of shape (3,)")):
        f(jnp.ones((3,)))
    assert traced == ["float32 array of shape (2, 3)", "float32 array of shape (3,)"]


def test_check_images_tells_how_to_scale_integer_pixels():
    with pytest.raises(TypeError, match=re.escape("Scale integer pixels to float first, e.g. images.astype(")):
        check_images(np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError) as caught:
        check_images(np.zeros((2, 28, 28), np.float32))
    assert "Scale" not in str(caught.value)  # the hint is for integer pixels only
    with pytest.raises(ValueError, match=re.escape("shape (*, *, *, 3)")):
        check_images(np.zeros((2, 28, 28, 1), np.float32), channels=3)
    check_images(np.zeros((2, 28, 28, 3), np.float32), channels=3)


def test_labels_range_on_host_dtype_under_jit():
    check_labels(np.array([0, 1, 2]), "labels", 3, shape=(3,))
    with pytest.raises(ValueError, match=re.escape("class ids in [0, 3) for 3 classes, got values in [-1, 3]")):
        check_labels(np.array([0, 3, -1]), "labels", 3)
    with pytest.raises(ValueError, match=re.escape("got values in [0, 5]")):
        check_labels(jnp.array([0, 5]), "labels", 2)
    with pytest.raises(TypeError, match="labels: expected integer array, got float32"):
        check_labels(np.array([0.0], np.float32), "labels", 2)
    with pytest.raises(ValueError, match=re.escape("expected integer array of shape (4,)")):
        check_labels(np.array([0, 1]), "labels", 2, shape=(4,))
    check_labels(np.zeros((0,), np.int32), "labels", 2)
    # Under jit the values are unknown: only the dtype is checked, and the range check is skipped without error.
    assert int(jax.jit(lambda y: check_labels(y, "labels", 2) or y.sum())(jnp.array([7]))) == 7
    with pytest.raises(TypeError, match="labels: expected integer array"):
        jax.jit(lambda y: check_labels(y, "labels", 2) or y)(jnp.array([0.5]))
