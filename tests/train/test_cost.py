"""The cost report of a finished run, against hand counts for the tiny MLP (4 -> 16 -> 3)."""

import json

from medjax.train import loop
from medjax.train.cost import measure
from medjax.train.precision import policy_of


def test_parameters_flops_and_sizes_by_hand(tiny_task, tiny_config, tmp_path):
    task, config = tiny_task(), tiny_config(tmp_path, epochs=1)
    loop.train(task, config, "blobs")
    state, _ = loop.restore_best(task, config)
    figures = measure(task.model, state.variables, next(task.splits["test"].batches(64)), tmp_path, "blobs")
    assert figures["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert figures["parameter_bytes"] == 4 * figures["parameters"]
    # Two matmuls (2·4·16 + 2·16·3 = 224 flops an example) plus the bias adds and the ReLU.
    assert 224 <= figures["flops_per_example"] <= 224 + 2 * (16 + 3) + 16
    assert figures["checkpoint_bytes"] > figures["parameter_bytes"]
    assert figures["latency_ms_batch_1"] > 0 and figures["compiled_memory_bytes_batch_64"] > 0
    assert json.loads((tmp_path / "cost.json").read_text()) == figures


def test_precision_names_each_layers_dtype_and_bf16_halves_the_layer_outputs(tiny_task, tiny_config, tmp_path):
    task, config = tiny_task(), tiny_config(tmp_path, epochs=1)
    loop.train(task, config, "blobs")
    state, _ = loop.restore_best(task, config)
    batch = next(task.splits["test"].batches(64))
    full = measure(task.model, state.variables, batch, tmp_path, "blobs")
    mixed = measure(policy_of("bf16").wrap(task.model), state.variables, batch, tmp_path, "blobs")
    # Outputs of hidden (n x 16), out (n x 3) and the model itself (n x 3), 4 bytes each in float32.
    assert full["layer_output_bytes_batch_64"] == 4 * len(batch["x"]) * (16 + 3 + 3)
    assert (full["precision"], full["layer_output_dtypes"]) == ("fp32", "3 float32")
    assert (mixed["precision"], mixed["layer_output_dtypes"]) == ("bf16", "3 bfloat16")
    assert mixed["layer_output_bytes_batch_64"] * 2 == full["layer_output_bytes_batch_64"]
    assert mixed["layers"] == {"hidden": "bfloat16", "out": "bfloat16", "(model)": "bfloat16"}
