"""A trained run used without its data: `medjax.load(w).predict(...)` and `medjax predict --workdir w` reproduce the
run's own test predictions after the data folder has been moved away, and loading writes nothing.

Each case trains the smallest run that proves it (in-process, one epoch) on a copy of a real data set, reads the raw
test inputs a user would have (images, texts, sentences, SMILES), renames the copy, and predicts.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import shutil

import numpy as np
import pytest

import medjax
from conftest import data_dir
from medjax import cli


def tree_hashes(folder: pathlib.Path) -> dict[str, str]:
    """sha256 and modification time of every file under ``folder``: loading must change neither."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def train(task: str, data: pathlib.Path, workdir: pathlib.Path, *flags: str) -> dict:
    assert cli.main(["train", task, "--data-dir", str(data), "--workdir", str(workdir), "--epochs", "1",
                     "--no-progress", "--no-tensorboard", *flags]) == 0
    return json.loads((workdir / "results.json").read_text())


def predict_cli(capsys, workdir: pathlib.Path, *arguments: str) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(workdir), *arguments]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


SERVE = """
import json, sys
import numpy as np
from jax import export
exported = export.deserialize(open(sys.argv[1], "rb").read())
signature = json.load(open(sys.argv[2]))
with np.load(sys.argv[3]) as inputs:
    outputs = exported.call(*[inputs[entry["name"]] for entry in signature["inputs"]])
np.savez(sys.argv[4], **{name: np.asarray(value) for name, value in outputs.items()})
assert not any(name.startswith("medjax") for name in sys.modules), "medjax was imported"
"""


def serve_without_medjax(tmp_path: pathlib.Path, workdir: pathlib.Path, inputs: dict) -> dict:
    """Exports the run as StableHLO and calls it in a fresh Python process that never imports medjax."""
    import subprocess
    import sys

    assert cli.main(["export", "--workdir", str(workdir), "--format", "stablehlo"]) == 0
    np.savez(tmp_path / "inputs.npz", **inputs)
    folder = workdir / "export"
    subprocess.run([sys.executable, "-I", "-c", SERVE, str(folder / "model.stablehlo"), str(folder / "signature.json"),
                    str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")], check=True, cwd=tmp_path)
    with np.load(tmp_path / "outputs.npz") as outputs:
        return dict(outputs)


def onnx_outputs(workdir: pathlib.Path, inputs: dict) -> dict:
    """Exports the run as ONNX and runs it under onnxruntime."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime comes with the test extra")
    assert cli.main(["export", "--workdir", str(workdir), "--format", "onnx"]) == 0
    session = onnxruntime.InferenceSession(str(workdir / "export" / "model.onnx"))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs)))


def copy_of(name: str, tmp_path: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(data_dir(name), tmp_path / name))


def moved_away(data: pathlib.Path) -> None:
    data.rename(data.with_name(data.name + "-moved"))


def test_medmnist_ensemble_predicts_images_and_files_without_its_data(tmp_path, capsys):
    from PIL import Image

    data = copy_of("breastmnist-copy", tmp_path)
    workdir = tmp_path / "run"
    results = train("medmnist", data, workdir, "--model", "cnn", "--ensemble", "2", "--batch-size", "64")
    with np.load(data / "breastmnist.npz") as arrays:
        images = arrays["test_images"]
    for i in range(3):
        Image.fromarray(images[i]).save(tmp_path / f"scan{i}.png")
    before = tree_hashes(workdir)
    moved_away(data)

    run = medjax.load(workdir)
    assert run.task == "medmnist" and run.members == 2 and run.meta["class_names"] == ["malignant", "normal, benign"]
    out = run.predict(images, coverage=0.9)
    with np.load(workdir / "predictions_test.npz") as saved:
        np.testing.assert_allclose(out["probabilities"], saved["scores"], atol=1e-5)
    assert out["class"][0] in run.meta["class_names"] and all(len(s) >= 1 for s in out["set"])
    rows = predict_cli(capsys, workdir, *(str(tmp_path / f"scan{i}.png") for i in range(3)))
    np.testing.assert_allclose([row["probabilities"] for row in rows], out["probabilities"][:3], atol=1e-6)
    assert [row["class"] for row in rows] == out["class"][:3]
    assert tree_hashes(workdir) == before
    card = (workdir / "README.md").read_text()
    assert "| auc |" in card and "not a medical device" in card
    example = card.split("```python\n")[1].split("```")[0]
    scope = {}
    exec(example, scope)  # the card's own loading example runs as written
    assert scope["out"]["probabilities"].shape == (1, 2)
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("## Use a trained model")[1].split("```python\n")[1].split("```")[0]
    exec(example.replace("runs/breastmnist-resnet18", str(workdir)), {})  # the README's example, as written
    served = serve_without_medjax(tmp_path, workdir, {"image": images[:5, ..., None]})
    np.testing.assert_allclose(served["scores"], out["probabilities"][:5], atol=1e-5)
    onnx = onnx_outputs(workdir, {"image": images[:5, ..., None]})
    np.testing.assert_allclose(onnx["scores"], out["probabilities"][:5], atol=1e-5)
    # Coverage of the split-conformal sets on test, within three binomial sd of the guarantee.
    n = len(images)
    assert results["test_conformal_coverage_90"] >= 0.9 - 3 * math.sqrt(0.09 / n)


def test_a_sweep_loads_as_the_setting_chosen_on_validation(tmp_path):
    data = copy_of("breastmnist-copy", tmp_path)
    workdir = tmp_path / "run"
    results = train("medmnist", data, workdir, "--model", "cnn", "--sweep", "lr=1e-3,1e-2", "--batch-size", "64")
    with np.load(data / "breastmnist.npz") as arrays:
        images = arrays["test_images"]
    moved_away(data)
    before = tree_hashes(workdir)
    run = medjax.load(workdir)
    assert results["sweep_chosen"] == [1e-3, 1e-2][run.record["best_val"]["setting"]]
    with np.load(workdir / "predictions_test.npz") as saved:
        np.testing.assert_allclose(run.predict(images)["probabilities"], saved["scores"], atol=1e-5)
    assert tree_hashes(workdir) == before


def test_textclf_predicts_texts_without_its_data(tmp_path, capsys):
    """A transformer: StableHLO and ONNX both equal `run.predict` (an LSTM's ONNX refusal is in the user-error table)."""
    from medjax.tasks import textclf

    data = copy_of("medical-abstracts-tc", tmp_path)
    workdir = tmp_path / "run"
    results = train("textclf", data, workdir, "--limit", "48", "--batch-size", "8", "--eval-batch-size", "16",
                    "--max-length", "48", "--buckets", "48", "--embed-dim", "16", "--hidden", "16", "--no-baseline",
                    "--model", "transformer", "--mlp-dim", "16", "--num-heads", "2")
    run = medjax.load(workdir)
    corpus = textclf.load_corpus(run.config, None)
    texts = corpus.texts("test")
    position = {row: i for i, row in enumerate(corpus.parts["test"])}
    before = tree_hashes(workdir)
    moved_away(data)

    out = medjax.load(workdir).predict(texts)
    with np.load(workdir / "predictions_test.npz") as saved:
        order = [position[i] for i in saved["index"]]
        np.testing.assert_allclose(out["probabilities"][order], saved["scores"], atol=1e-5)
    rows = predict_cli(capsys, workdir, texts[0], texts[1], "--coverage", "0.8")
    np.testing.assert_allclose([row["probabilities"] for row in rows], out["probabilities"][:2], atol=1e-6)
    assert all(set(row["set"]) <= set(run.meta["class_names"]) for row in rows)
    assert tree_hashes(workdir) == before
    batch = next(run.module.encode(run.config, run.meta, texts[:5]).batches(5))
    served = serve_without_medjax(tmp_path, workdir, {"ids": batch["ids"], "mask": batch["mask"]})
    np.testing.assert_allclose(served["scores"], out["probabilities"][:5], atol=1e-5)
    onnx = onnx_outputs(workdir, {"ids": batch["ids"], "mask": batch["mask"]})
    np.testing.assert_allclose(onnx["scores"], out["probabilities"][:5], atol=1e-5)
    assert results["test_conformal_coverage_90"] >= 0.9 - 3 * math.sqrt(0.09 / len(texts))


def test_ner_tags_sentences_without_its_data(tmp_path, capsys):
    from medjax.data.conll import read_conll

    data = copy_of("ncbi-disease", tmp_path)
    workdir = tmp_path / "run"
    train("ner", data, workdir, "--limit", "48", "--batch-size", "16", "--eval-batch-size", "16",
          "--embed-dim", "16", "--hidden", "16", "--char-features", "8", "--lr", "0.01", "--buckets", "80")
    sentences = [list(s.tokens) for s in read_conll(data / "test.tsv")[:48]]
    before = tree_hashes(workdir)
    moved_away(data)

    run = medjax.load(workdir)
    out = run.predict(sentences)
    with np.load(workdir / "predictions_test.npz") as saved:
        decoded = saved["constrained_tags"]
        for row, index in zip(decoded, saved["index"]):
            assert [run.meta["tags"][t] for t in row[row >= 0]] == out["tags"][index]
    rows = predict_cli(capsys, workdir, " ".join(sentences[0]), "-" if False else " ".join(sentences[1]))
    assert [row["tags"] for row in rows] == out["tags"][:2]
    assert [row["tokens"] for row in rows] == sentences[:2]
    assert tree_hashes(workdir) == before


def test_molecules_predict_smiles_without_their_data_and_mark_invalid_ones(tmp_path, capsys):
    from medjax.tasks import molecules

    data = copy_of("freesolv", tmp_path)
    workdir = tmp_path / "run"
    train("molecules", data, workdir, "--limit", "32", "--batch-size", "8", "--eval-batch-size", "16",
          "--embed-dim", "16", "--hidden", "16")
    run = medjax.load(workdir)
    dataset = molecules.load_dataset(run.config, run.meta)
    smiles = [dataset.molecules.smiles[i] for i in dataset.parts["test"]]
    position = {row: i for i, row in enumerate(dataset.parts["test"])}
    before = tree_hashes(workdir)
    moved_away(data)

    out = medjax.load(workdir).predict(smiles + ["C1CC"], coverage=0.9)
    with np.load(workdir / "predictions_test.npz") as saved:
        order = [position[i] for i in saved["index"]]
        np.testing.assert_allclose(out["prediction"][order], saved["prediction"], atol=1e-5)
    assert out["valid"].tolist() == [True] * len(smiles) + [False] and math.isnan(out["prediction"][-1])
    assert np.all(out["lower"][:-1] < out["prediction"][:-1]) and np.all(out["prediction"][:-1] < out["upper"][:-1])
    rows = predict_cli(capsys, workdir, smiles[0], "C1CC")
    assert rows[0]["prediction"] == pytest.approx(float(out["prediction"][0]), abs=1e-5)
    assert rows[1]["valid"] is False and rows[1]["error"] == "RDKit cannot parse it"
    assert tree_hashes(workdir) == before


def test_a_run_made_before_the_model_train_split_still_loads(tmp_path):
    """Checkpoints written with one ``arrays`` item (medjax before the split) restore their model."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from medjax.train.checkpoint import restore_model

    params = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3)}}
    arrays = {"params": params, "opt_state": {"mu": jnp.ones(3)}, "collections": {}, "step": jnp.int32(7),
              "rng": jax.random.PRNGKey(0)}
    options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False)
    with ocp.CheckpointManager((tmp_path / "checkpoints" / "best").absolute(), options=options) as manager:
        manager.save(3, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays),
                                                record=ocp.args.JsonSave({"epoch": 3})))
    before = tree_hashes(tmp_path)
    model, record = restore_model(tmp_path / "checkpoints")
    assert record["epoch"] == 3 and "opt_state" not in model
    np.testing.assert_array_equal(model["params"]["dense"]["kernel"], np.arange(6.0).reshape(2, 3))
    assert tree_hashes(tmp_path) == before


def test_load_refuses_what_is_not_a_finished_run_in_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"task": "medmnist", "config": {"model": "cnn"}}')
    assert cli.main(["predict", "--workdir", str(tmp_path), "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no best checkpoint" in err and str(tmp_path) in err
    (tmp_path / "config.json").write_text('{"task": "medmnist", "conf')
    assert cli.main(["predict", "--workdir", str(tmp_path), "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json" in err and "damaged" in err


def test_the_readme_quotes_the_main_job_from_its_committed_records(readme):
    folder = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "medmnist" / "main-job"
    results = json.loads((folder / "results.json").read_text())
    seconds = [json.loads(line)["seconds"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert f"{round(np.median(seconds))} s an\nepoch, {round(results['wall_seconds'])} s of training" in readme
    assert f"test AUC {results['test_auc']:.3f}, `experiments/medmnist/main-job/`" in readme
