"""Data parallelism over the 8 fake CPU devices of the test conftest: the same numbers as one device."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from medjax.train import loop, sharding


# Restoring checkpoint arrays without a target structure (just to compare them) makes Orbax warn; harmless here.
@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_eight_devices_match_one(tiny_task, tiny_config, tmp_path):
    assert jax.device_count() >= 8, "tests/conftest.py should give 8 fake CPU devices"
    task = tiny_task(batch_norm=True, dropout=0.2)
    runs = {}
    for devices in (1, 8):
        workdir = tmp_path / f"devices{devices}"
        # SGD: Adam's g / sqrt(v) would turn rounding-level differences of near-zero gradients into full steps.
        config = tiny_config(workdir, epochs=2, batch_size=16, num_devices=devices, optimizer="sgd", lr=0.1)
        results = loop.train(task, config, "blobs")
        lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        folder = (workdir / "checkpoints" / "latest" / "2").absolute()
        arrays = {item: ocp.PyTreeCheckpointer().restore(folder / item) for item in ("model", "train")}
        runs[devices] = results, lines, arrays
    (results1, lines1, arrays1), (results8, lines8, arrays8) = runs[1], runs[8]
    for one, eight in zip(lines1, lines8):
        for key in ("train_loss", "train_correct", "grad_norm", "param_norm", "val_mean_score", "val_accuracy"):
            assert eight[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
    # Batch norm statistics too: under jit they are over the whole batch, as on one device.
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), arrays8, arrays1)
    assert results8["test_mean_score"] == pytest.approx(results1["test_mean_score"], rel=1e-5)


def test_shard_batch_splits_rows_over_devices_and_replicate_copies():
    mesh = sharding.make_mesh(4)
    batch = sharding.shard_batch({"x": np.arange(8 * 3, dtype=np.float32).reshape(8, 3)}, mesh)
    shards = sorted(batch["x"].addressable_shards, key=lambda s: s.index[0].start)
    assert [s.data.shape for s in shards] == [(2, 3)] * 4
    np.testing.assert_array_equal(np.concatenate([np.asarray(s.data) for s in shards]), np.arange(24).reshape(8, 3))
    replicated = sharding.replicate({"w": np.ones(3, np.float32)}, mesh)
    assert replicated["w"].sharding.is_fully_replicated and len(replicated["w"].addressable_shards) == 4
    np.testing.assert_array_equal(sharding.to_host(batch)["x"], np.arange(24).reshape(8, 3))


def test_mesh_and_divisibility_errors():
    assert sharding.make_mesh(0).size == jax.device_count()
    with pytest.raises(ValueError, match=f"expected 0 \\(all\\) to {jax.device_count()}"):
        sharding.make_mesh(jax.device_count() + 1)
    with pytest.raises(ValueError, match="--eval-batch-size: expected a positive multiple of the 4 devices the batch is split over, got 6"):
        sharding.check_divisible(6, sharding.make_mesh(4), "eval_batch_size")
    with pytest.raises(ValueError, match=r"batch\['x'\] has 6 rows, not a multiple of the 4 devices"):
        sharding.shard_batch({"x": np.zeros((6, 2))}, sharding.make_mesh(4))
