"""Mixed precision as one policy for every task: ``--precision fp32|bf16``.

``bf16`` is the policy of PyTorch's autocast and of jmp's ``params=float32, compute=bfloat16, output=float32``:

- parameters, optimizer moments, batch-norm statistics and checkpoints stay float32: the model's ``apply`` casts a
  bfloat16 copy of the parameters on entry, inside the differentiated function, so gradients arrive float32;
- every module call receives its floating inputs in bfloat16, so each matmul and convolution, and the LSTM's
  recurrence, computes in bfloat16 even after an op that promoted to float32 (an added float32 table, a scaled
  image); the CRF's parameters and inputs stay float32 (`FULL_PRECISION`);
- what stays float32 by construction: the attention scores and their softmax (`medjax.nn.attention` accumulates the
  scores in float32), normalisation statistics (Flax reduces in float32), and everything after the model: its
  outputs are cast to float32 on exit, so logits, losses, the CRF's log-likelihood and metrics are float32.

No loss scaling: bfloat16 has float32's exponent range. ``fp32`` changes nothing: the model is used as built.

Example:
  >>> model = policy_of("bf16").wrap(TutorialCNN(num_classes=2))
  >>> variables = model.init(key, images)               # float32 parameters
  >>> logits = model.apply(variables, images)           # computed in bfloat16, returned float32
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

POLICIES = {"fp32": None, "bf16": "bfloat16"}
# Modules (by the name they are given in their parent) whose parameters and inputs stay float32: the CRF's
# transition scores are summed along whole sentences, where bfloat16's 8-bit mantissa would lose the path scores.
FULL_PRECISION = ("crf",)


def _floating(x: Any) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.floating)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Every floating array leaf of ``tree`` as ``dtype``; integers, booleans and non-arrays unchanged."""
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if _floating(x) and x.dtype != dtype else x, tree)


def _in_full_precision(path) -> bool:
    return any(getattr(key, "key", None) in FULL_PRECISION for key in path)


@dataclasses.dataclass(frozen=True)
class Policy:
    """``compute``: the dtype matmuls and convolutions run in (None: float32 throughout)."""

    name: str
    compute: str | None

    def cast_params(self, params: Any) -> Any:
        """The parameters as the model computes with them: ``compute`` except under a `FULL_PRECISION` module."""
        return jax.tree_util.tree_map_with_path(
            lambda path, x: x if _in_full_precision(path) or not _floating(x) else x.astype(self.compute), params)

    def wrap(self, model: nn.Module) -> nn.Module | "Mixed":
        return model if self.compute is None else Mixed(model, self)


def policy_of(name: str) -> Policy:
    return Policy(name, POLICIES[name])


def follows_config(build_model):
    """Decorates a task's ``build_model(config, meta)``: the model it returns runs under ``config.precision``."""

    @functools.wraps(build_model)
    def build(config, meta):
        return policy_of(config.precision).wrap(build_model(config, meta))

    return build


@dataclasses.dataclass(frozen=True)
class Mixed:
    """A Linen model under a mixed-precision `Policy`: ``init`` as the model's (float32 parameters), ``apply`` as
    described in the module docstring; other attributes (``tabulate``, submodules) are the model's own, in float32.

    Equal models under equal policies compare and hash equal, so a jitted step keyed on ``apply`` compiles once."""

    model: nn.Module
    policy: Policy

    def init(self, *args, **kwargs):
        return self.model.init(*args, **kwargs)

    def apply(self, variables, *args, **kwargs):
        policy = self.policy
        variables = {**variables, "params": policy.cast_params(variables["params"])} if "params" in variables \
            else variables

        def cast_inputs(next_fun, args, kwargs, context):
            dtype = jnp.float32 if context.module.name in FULL_PRECISION else policy.compute
            return next_fun(*cast_floating(args, dtype), **cast_floating(kwargs, dtype))

        with nn.intercept_methods(cast_inputs):
            out = self.model.apply(variables, *args, **kwargs)
        if kwargs.get("mutable", False) is not False:
            # (outputs, updated collections): batch statistics are float32 already; captured intermediates keep the
            # dtype they were computed in.
            return cast_floating(out[0], jnp.float32), out[1]
        return cast_floating(out, jnp.float32)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("model", "policy"):  # copy and pickle probe before the fields exist
            raise AttributeError(name)
        return getattr(self.model, name)
