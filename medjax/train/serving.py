"""A loaded run as a deployable artifact: its inference function, weights included, serialised as StableHLO.

`export_stablehlo(run, folder)` writes ``model.stablehlo`` (`jax.export.export(...).serialize()`: the run's
``inference`` from the natural array inputs — uint8 images, token ids and masks — to the task's outputs, with the
weights as constants and the batch dimension symbolic) and ``signature.json`` (each input's name, shape with ``"b"`` for
the batch, dtype; each output's). Any JAX installation can run it, without medjax:

  >>> from jax import export
  >>> exported = export.deserialize(open("model.stablehlo", "rb").read())
  >>> probabilities = exported.call(images)["scores"]        # inputs in signature.json's order

Sequence inputs are fixed at the longest length the model was built for (``meta["buckets"][-1]``): pad with 0 and
set the mask False past each sequence's end.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medjax.train import ensemble
from medjax.train.precision import Mixed
from medjax.train.workdir import write_atomically

# Batch entries that are never the model's inputs: the truth and the loop's bookkeeping.
_NOT_INPUTS = {"example_mask", "label", "labels", "tags", "target", "tgt_in", "tgt_out", "tgt_mask", "index",
               "record", "sample"}


def input_specs(run) -> dict[str, tuple[tuple[Any, ...], str]]:
    """``{name: (shape with "b" for the batch, dtype)}`` of the model's inputs, from ``meta["init_batch"]``."""
    spec = run.meta["init_batch"]
    longest = run.meta.get("buckets", [None])[-1]
    specs = {}
    for name, entry in spec.items():
        if name in _NOT_INPUTS:
            continue
        shape = list(entry["shape"][1:])
        if longest and name in ("ids", "mask", "words", "chars", "case", "gaps", "src", "src_mask"):
            shape[0] = longest
        specs[name] = (("b", *shape), entry["dtype"])
    return specs


def serving_function(run):
    """``f(*inputs) -> outputs`` of the run's inference with its weights as constants (one model, or the mean of an
    ensemble's probabilities), and the input names in argument order."""
    predict = run.module.inference(run.config, run.meta)
    names = list(input_specs(run))
    variables = jax.tree_util.tree_map(jnp.asarray, run.variables)

    def one(variables, batch):
        return predict(run.model.apply, variables, batch)

    def serve(*inputs):
        batch = dict(zip(names, inputs))
        if run.members > 1:
            # Unrolled rather than vmapped: jax2onnx has no batching rule for Linen's primitives. Combined as
            # `Run.predict` combines the classifiers' members (mean probabilities, arg-max of the mean).
            outputs = [one(ensemble.member(variables, i), batch) for i in range(run.members)]
            return ensemble.mean_probabilities(ensemble.stack(outputs))
        return one(variables, batch)

    return serve, names


def export_stablehlo(run, folder: str | pathlib.Path) -> dict[str, Any]:
    """Writes ``model.stablehlo`` and ``signature.json`` into ``folder``; returns the signature."""
    from jax import export

    folder = pathlib.Path(folder)
    specs = input_specs(run)
    serve, names = serving_function(run)
    (batch,) = export.symbolic_shape("b")
    shapes = [jax.ShapeDtypeStruct(tuple(batch if d == "b" else d for d in shape), dtype)
              for shape, dtype in specs.values()]
    exported = export.export(jax.jit(serve))(*shapes)
    write_atomically(folder / "model.stablehlo", bytes(exported.serialize()))
    outputs = jax.tree_util.tree_map(lambda a: {"shape": ["b", *a.shape[1:]], "dtype": str(a.dtype)},
                                     jax.eval_shape(serve, *[jax.ShapeDtypeStruct((2, *s.shape[1:]), s.dtype)
                                                             for s in shapes]))
    signature = {"task": run.task, "inputs": [{"name": n, "shape": list(specs[n][0]), "dtype": specs[n][1]}
                                              for n in names],
                 "outputs": outputs, "meta": {k: v for k, v in run.meta.items() if k in ("class_names", "tags")},
                 "jax_version": jax.__version__}
    write_atomically(folder / "signature.json", json.dumps(signature, indent=2) + "\n")
    return signature


def onnx_model(run) -> bytes:
    """The bytes of ``model.onnx`` (through jax2onnx, batch dimension symbolic, the same inputs and output names as
    ``signature.json``), written nowhere.

    The graph is run under onnxruntime beside the JAX function before it is returned.

    Raises:
      medjax.errors.ConfigError: a model jax2onnx cannot convert (the LSTMs run a reverse scan, which jax2onnx 0.17
        has no ONNX form for), or whose graph onnxruntime rejects or computes differently (ResNet-18 with jax2onnx
        0.17.1: a shape error in an Add); StableHLO exports every model.
    """
    import logging
    import warnings

    from medjax.errors import ConfigError

    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise ConfigError("--format", "expected jax2onnx for ONNX export (pip install 'medjax[onnx]'), got no "
                                      "jax2onnx module") from None
    if isinstance(run.model, Mixed):
        # onnxruntime's CPU kernels have no bfloat16 convolution: a --precision bf16 run's graph computes in float32,
        # with the float32 parameters it stores (bfloat16 changed how it trained, not what it keeps).
        run = dataclasses.replace(run, model=run.model.model)
    specs = input_specs(run)
    serve, names = serving_function(run)
    shapes = [jax.ShapeDtypeStruct(tuple("B" if d == "b" else d for d in shape), dtype)
              for shape, dtype in specs.values()]
    example = [jax.ShapeDtypeStruct((2, *s.shape[1:]), s.dtype) for s in shapes]
    outputs = list(jax.tree_util.tree_flatten_with_path(jax.eval_shape(serve, *example))[0])
    output_names = [str(path[-1].key) for path, _ in outputs]
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)  # jax2onnx's serialiser warns about untyped constants
    try:
        with warnings.catch_warnings():  # jax2onnx's tracing asks JAX for float64 (x64 is off): not the user's to read
            warnings.simplefilter("ignore", UserWarning)
            proto = to_onnx(serve, shapes, input_names=names, output_names=output_names,
                            model_name=f"medjax_{run.task}")
    except NotImplementedError as err:
        raise ConfigError("--format onnx", f"expected a model jax2onnx can convert, got a {run.task} "
                                           f"{getattr(run.config, 'model', '')} model ({err}); use --format "
                                           f"stablehlo") from None
    problem = _check_onnx(proto.SerializeToString(), serve, names, example_inputs(run, 2))
    if problem:
        raise ConfigError("--format onnx", f"expected jax2onnx's graph of the {run.task} "
                                           f"{getattr(run.config, 'model', '')} model to run as the model does, got "
                                           f"{problem}; use --format stablehlo")
    return proto.SerializeToString()


def _check_onnx(model: bytes, serve, names: list[str], inputs: list[np.ndarray]) -> str | None:
    """Runs the ONNX graph under onnxruntime beside the JAX function; what went wrong, or None (also when
    onnxruntime is not installed: the graph is then written unchecked)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    onnxruntime.set_default_logger_severity(3)  # errors only: its shape-merge warnings are not the user's to read
    try:
        session = onnxruntime.InferenceSession(model)
        got = session.run(None, dict(zip(names, inputs)))
    except Exception as err:  # noqa: BLE001 - onnxruntime's own error classes
        return f"an error in onnxruntime ({str(err).splitlines()[0][:160]})"
    want = jax.tree_util.tree_leaves(jax.jit(serve)(*inputs))
    worst = max(float(np.max(np.abs(np.asarray(w, np.float64) - g))) for w, g in zip(want, got))
    return None if worst <= 1e-4 else f"outputs off by up to {worst:.3g}"


def example_inputs(run, count: int) -> list[np.ndarray]:
    """Zero inputs of ``count`` rows in the signature's shapes (masks all True): for timing and smoke calls."""
    from medjax.train.cost import example_batch

    spec = {name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype) in input_specs(run).items()}
    return list(example_batch(spec, count).values())
