"""Host-side batching: replayable order, padding with a mask, and checks whose messages name key, expected and got."""

import numpy as np
import pytest

from medjax.train import batching, loop
from medjax.train.batching import ArraySpec

SPEC = {"image": ArraySpec("f", rank=4), "label": ArraySpec("i", rank=1, low=0, high=3)}


def good_batch(rows=4):
    return batching.pad_batch(
        {"image": np.zeros((rows, 2, 2, 1), np.float32), "label": np.arange(rows, dtype=np.int32) % 3}, 4
    )


def test_epoch_order_depends_only_on_seed_and_epoch():
    first = batching.epoch_order(3, 1, 50)
    np.testing.assert_array_equal(first, batching.epoch_order(3, 1, 50))
    np.testing.assert_array_equal(np.sort(first), np.arange(50))
    assert not np.array_equal(first, batching.epoch_order(3, 2, 50))
    assert not np.array_equal(first, batching.epoch_order(4, 1, 50))


def test_pad_batch_repeats_the_last_row_and_masks_it():
    padded = batching.pad_batch({"x": np.array([[1.0], [2.0], [3.0]]), "mask": np.array([[True], [True], [False]])}, 5)
    np.testing.assert_array_equal(padded["x"][:, 0], [1, 2, 3, 3, 3])
    np.testing.assert_array_equal(padded["example_mask"], [True, True, True, False, False])
    # A split's own example mask is kept and extended.
    again = batching.pad_batch({"x": np.ones(2), "example_mask": np.array([True, False])}, 3)
    np.testing.assert_array_equal(again["example_mask"], [True, False, False])
    with pytest.raises(ValueError, match="between 1 and 2 rows; got 3"):
        batching.pad_batch({"x": np.ones(3)}, 2)
    with pytest.raises(ValueError, match=r"disagree on the batch size: \{'x': 3, 'y': 2\}"):
        batching.pad_batch({"x": np.ones(3), "y": np.ones(2)}, 4)


def test_a_good_batch_passes():
    batching.check_batch(good_batch(3), SPEC, "train batch 0")


def test_non_finite_floats_are_named_with_their_index():
    batch = good_batch()
    batch["image"][2, 1, 0, 0] = np.nan
    expected = r"train batch 5: batch\['image'\] has 1 non-finite values .* index \(2, 1, 0, 0\)"
    with pytest.raises(ValueError, match=expected):
        batching.check_batch(batch, {}, "train batch 5")


def test_integer_images_are_rejected_when_floats_are_declared():
    batch = good_batch()
    batch["image"] = batch["image"].astype(np.uint8)
    with pytest.raises(ValueError, match=r"batch\['image'\] has dtype uint8; expected a floating dtype"):
        batching.check_batch(batch, SPEC, "val batch 0")


def test_labels_out_of_range_name_value_and_index():
    batch = good_batch()
    batch["label"][1] = 3
    with pytest.raises(ValueError, match=r"batch\['label'\] has values outside \[0, 3\): 3 at index \(1,\)"):
        batching.check_batch(batch, SPEC, "train batch 0")
    batch["label"][1] = -1
    with pytest.raises(ValueError, match=r"outside \[0, 3\): -1 at index \(1,\)"):
        batching.check_batch(batch, SPEC, "train batch 0")


def test_range_check_skips_padding_rows_and_masked_tokens():
    tags = np.array([[0, 1, -100], [2, -100, -100]], np.int32)  # -100: filler on padded tokens
    batch = batching.pad_batch({"tags": tags, "mask": tags >= 0}, 2)
    spec = {"tags": ArraySpec("i", low=0, high=3, mask="mask")}
    batching.check_batch(batch, spec, "train batch 0")
    with pytest.raises(ValueError, match=r"outside \[0, 3\): -100 at index \(0, 2\)"):
        batching.check_batch(batch, {"tags": ArraySpec("i", low=0, high=3)}, "train batch 0")
    # A padding row (example_mask False) is never range-checked.
    padded = batching.pad_batch({"label": np.array([1, 7], np.int32), "example_mask": np.array([True, False])}, 2)
    batching.check_batch(padded, {"label": ArraySpec("i", low=0, high=3)}, "test batch 0")


def test_missing_keys_wrong_rank_and_non_numeric_entries():
    expected = r"declares batch\['mask'\] but the batch has keys \['example_mask', 'image', 'label'\]"
    with pytest.raises(ValueError, match=expected):
        batching.check_batch(good_batch(), {"mask": ArraySpec("b")}, "train batch 0")
    with pytest.raises(ValueError, match=r"batch\['label'\] has shape \(4,\) \(rank 1\); expected rank 2"):
        batching.check_batch(good_batch(), {"label": ArraySpec("i", rank=2)}, "train batch 0")
    batch = good_batch()
    batch["text"] = np.array(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"batch\['text'\] has dtype <U1; expected numbers or bools"):
        batching.check_batch(batch, {}, "train batch 0")
    with pytest.raises(ValueError, match="dtype_kind must be one of"):
        ArraySpec("float32")


def test_the_loop_checks_the_data_before_compiling_anything(tiny_task, tiny_config, tmp_path):
    task = tiny_task()
    task.splits["train"].arrays["x"][0, 1] = np.inf
    with pytest.raises(ValueError, match=r"the first train batch: batch\['x'\] has 1 non-finite values .* \(0, 1\)"):
        loop.train(task, tiny_config(tmp_path), "blobs")
    task = tiny_task()
    task.splits["train"].arrays["label"][2] = 5
    with pytest.raises(ValueError, match=r"the first train batch: batch\['label'\] has values outside \[0, 3\): 5"):
        loop.train(task, tiny_config(tmp_path), "blobs")
