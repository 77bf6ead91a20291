"""The cost report of a finished run, against hand counts for the tiny MLP (4 -> 16 -> 3)."""

import json

from medjax.train import loop
from medjax.train.cost import measure


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
