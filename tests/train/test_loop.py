"""The loop end to end on a tiny task: files, selection, evaluate, resume after a stop, compile counts, NaN guard."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from medjax.train import batching, loop, plots, steps


def read_lines(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def without_time(lines):
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def latest_arrays(workdir, epoch):
    """Both array items of a latest checkpoint: ``model`` (params, collections) and ``train`` (optimizer, step, key)."""
    folder = (workdir / "checkpoints" / "latest" / str(epoch)).absolute()
    return {item: ocp.PyTreeCheckpointer().restore(folder / item) for item in ("model", "train")}


@pytest.fixture(scope="module")
def finished_run(tiny_task, tiny_config, tmp_path_factory):
    """An uninterrupted 3-epoch run of an MLP with batch norm and dropout."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    task = tiny_task(batch_norm=True, dropout=0.2)
    config = tiny_config(workdir, num_devices=1, schedule="cosine")
    results = loop.train(task, config, "blobs")
    return task, config, results, workdir


def test_the_run_writes_its_files(finished_run):
    task, config, results, workdir = finished_run
    lines = read_lines(workdir)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["step"] for line in lines] == [6, 12, 18]  # 44 examples in batches of 8: 6 steps, the last padded
    keys = ("train_loss", "train_correct", "grad_norm", "param_norm", "lr", "val_accuracy", "val_mean_score", "seconds")
    for key in keys:
        assert all(np.isfinite(line[key]) for line in lines), key
    # The cosine schedule over 18 steps: the rate of the last step of each epoch.
    for line in lines:
        assert line["lr"] == pytest.approx(0.05 * 0.5 * (1 + np.cos(np.pi * (line["step"] - 1) / 18)), rel=1e-5)
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["task"] == "blobs" and saved["config"]["lr"] == 0.05 and saved["class_names"] == ["a", "b", "c"]
    assert json.loads((workdir / "results.json").read_text()) == results


def test_model_selection_keeps_the_best_validation_epoch(finished_run):
    _, _, results, workdir = finished_run
    lines = read_lines(workdir)
    best = max(lines, key=lambda line: line["val_mean_score"])
    assert results["best_epoch"] == best["epoch"]
    assert results["val_mean_score"] == best["val_mean_score"]
    assert results["val_accuracy"] == best["val_accuracy"]
    assert (workdir / "checkpoints" / "best" / str(best["epoch"])).is_dir()


def test_test_predictions_drop_padding_and_keep_order(finished_run):
    task, _, results, workdir = finished_run
    with np.load(workdir / "predictions_test.npz") as saved:
        labels, scores = saved["labels"], saved["scores"]
    np.testing.assert_array_equal(labels, task.splits["test"].arrays["label"])  # 21 rows, not 24
    assert scores.shape == (21, 3)
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)
    assert results["test_accuracy"] == np.mean(scores.argmax(-1) == labels)


def test_evaluate_reproduces_results(finished_run):
    task, config, results, _ = finished_run
    again = loop.evaluate(task, config)
    assert again == {"best_epoch": results["best_epoch"], **{k: v for k, v in results.items() if k.startswith("test_")}}


def test_plot_workdir_draws_a_finished_run(finished_run):
    *_, workdir = finished_run
    paths = plots.plot_workdir(workdir)
    assert [p.name for p in paths] == ["learning_curves.png", "roc.png", "confusion_matrix.png", "reliability.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Restoring checkpoint arrays without a target structure (just to compare them) makes Orbax warn; harmless here.
@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_resume_after_a_stop_ends_exactly_like_the_uninterrupted_run(finished_run, tmp_path):
    task, config, results, uninterrupted = finished_run
    config = type(config)(**{**vars(config), "workdir": str(tmp_path)})
    assert loop.train(task, config, "blobs", stop_after_epoch=1) is None
    assert len(read_lines(tmp_path)) == 1
    assert not (tmp_path / "results.json").exists()
    # As if killed after writing epoch 2's line but before its checkpoint: the resumed run must drop that line.
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 2, "step": 12, "train_loss": -1.0}) + "\n")
    resumed = loop.train(task, config, "blobs")
    assert without_time(read_lines(tmp_path)) == without_time(read_lines(uninterrupted))
    assert {k: v for k, v in resumed.items() if k != "wall_seconds"} == {
        k: v for k, v in results.items() if k != "wall_seconds"
    }
    final, expected = latest_arrays(tmp_path, 3), latest_arrays(uninterrupted, 3)
    jax.tree_util.tree_map(np.testing.assert_array_equal, final, expected)
    # A resumed run must keep its config: a changed learning rate is refused, naming the field.
    changed = type(config)(**{**vars(config), "lr": 0.1})
    with pytest.raises(ValueError, match=r"different config \(lr 0.05 -> 0.1\)"):
        loop.train(task, changed, "blobs")


def test_a_run_compiles_each_step_once(tiny_task, tiny_config, tmp_path):
    base = tiny_task()

    # Loss and predict functions no other test uses, so the compilations counted are this run's.
    def loss(outputs, batch):
        return base.loss(outputs, batch)

    def predict(apply, variables, batch):
        return base.predict(apply, variables, batch)

    task = type(base)(**{**vars(base), "loss": loss, "predict": predict})
    train_before, eval_before = steps.train_step._cache_size(), steps.eval_step._cache_size()
    loop.train(task, tiny_config(tmp_path, epochs=2, num_devices=1), "blobs")
    # 12 training steps (padded last batches included), 3 val passes... one compilation each.
    assert steps.train_step._cache_size() == train_before + 1
    assert steps.eval_step._cache_size() == eval_before + 1


def test_a_non_finite_loss_stops_the_run_naming_the_step(tiny_task, tiny_config, tmp_path):
    base = tiny_task()

    def poisoned_loss(outputs, batch):
        loss, sums = base.loss(outputs, batch)
        # NaN on the batch holding the marked example (x[0, 0] > 100), as an overflowing model would give.
        return jnp.where(jnp.any(batch["x"][:, 0] > 100), jnp.nan, loss), sums

    task = type(base)(**{**vars(base), "loss": poisoned_loss})
    marked = 30
    task.splits["train"].arrays["x"][marked, 0] = 1000.0
    position = int(np.flatnonzero(batching.epoch_order(0, 0, 44) == marked)[0])
    with pytest.raises(FloatingPointError, match=rf"non-finite loss \(nan\) at step {position // 8 + 1} \(epoch 1\)"):
        loop.train(task, tiny_config(tmp_path, num_devices=1), "blobs")


def test_bad_task_and_config_are_refused_before_training(tiny_task, tiny_config, tmp_path):
    task = tiny_task()
    with pytest.raises(ValueError, match=r"has splits \['test', 'train'\]; expected train, val and test"):
        loop.train(type(task)(**{**vars(task), "splits": {"train": task.splits["train"], "test": task.splits["test"]}}),
                   tiny_config(tmp_path), "blobs")
    with pytest.raises(ValueError, match="--batch-size: expected a positive multiple of the 8 devices the batch is split over, got 12"):
        loop.train(task, tiny_config(tmp_path, batch_size=12), "blobs")
