"""``medjax train --precision bf16`` on real BreastMNIST: the run records its policy, evaluates to its own results,
reports each layer's dtype, and loads into a model that predicts as the run scored."""

import json

import numpy as np
import onnx

import medjax
from medjax import cli
from medjax.tasks import evaluate_workdir
from medjax.tasks import medmnist as task_module
from medjax.train.precision import Mixed


def test_bf16_trains_evaluates_reports_and_loads(breastmnist_dir, tmp_path, capsys):
    workdir = tmp_path / "bf16"
    assert cli.main(["train", "medmnist", "--model", "cnn", "--epochs", "1", "--precision", "bf16", "--workdir",
                     str(workdir), "--data-dir", str(breastmnist_dir), "--no-progress", "--log-every", "0",
                     "--no-tensorboard"]) == 0
    assert json.loads((workdir / "config.json").read_text())["config"]["precision"] == "bf16"
    results = json.loads((workdir / "results.json").read_text())
    again = evaluate_workdir(workdir)
    assert {k: again[k] for k in ("test_auc", "test_acc")} == {k: results[k] for k in ("test_auc", "test_acc")}

    capsys.readouterr()
    assert cli.main(["report", "--workdir", str(workdir)]) == 0
    line = capsys.readouterr().out
    # The tutorial CNN's conv1, conv2, dense1 and dense2, the CNN, its pixel-scaling wrapper and the batch adapter:
    # all seven outputs computed in bfloat16.
    assert "precision bf16" in line and "layer_output_dtypes 7 bfloat16" in line, line

    run = medjax.load(workdir)
    assert isinstance(run.model, Mixed) and run.model.policy.name == "bf16"
    images = task_module.build_task(run.config).splits["test"].arrays["image"]
    with np.load(workdir / "predictions_test.npz") as saved:
        np.testing.assert_allclose(run.predict(images)["probabilities"], saved["scores"], rtol=0, atol=1e-6)

    # onnxruntime has no bfloat16 convolution: the ONNX graph computes in float32 with the run's float32 parameters
    # (checked against the float32 model by the export itself).
    assert cli.main(["export", "--workdir", str(workdir), "--format", "onnx"]) == 0
    onnx_graph = onnx.load(str(workdir / "export" / "model.onnx"))
    assert "BFLOAT16" not in str(onnx_graph.graph.value_info) + str(onnx_graph.graph.output)
