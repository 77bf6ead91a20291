"""Adebayo et al. 2018's model-randomisation test: an explanation that survives re-initialising the weights
explains the input, not the model.

`rank_correlations` compares two sets of maps example by example (Spearman's ρ of the absolute attributions, as
Adebayo et al. do); `randomized_variables` re-initialises a model's parameters from a new key while keeping its
structure (and any batch statistics). A trustworthy method gives maps whose correlation with the trained model's
falls towards 0 under randomisation; `tests/explain/test_sanity.py` asserts it does for saliency and Grad-CAM.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np


def rank_correlations(first: Any, second: Any) -> np.ndarray:
    """f64[batch]: Spearman's ρ between |first[b]| and |second[b]|, flattened, for each example b; 0 where a map is
    constant (a Grad-CAM map that the ReLU zeroed everywhere ranks nothing)."""
    from scipy.stats import spearmanr

    a, b = np.abs(np.asarray(first)), np.abs(np.asarray(second))
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes: {a.shape} and {b.shape}")
    return np.array([spearmanr(x.ravel(), y.ravel()).statistic if np.ptp(x) > 0 and np.ptp(y) > 0 else 0.0
                     for x, y in zip(a, b)])


def randomized_variables(model: nn.Module, variables: Any, key: jax.Array, *inputs: Any, **kwargs) -> Any:
    """``variables`` with every parameter drawn again from the model's initialisers (``model.init(key, *inputs)``);
    other collections (batch statistics) are kept as trained."""
    fresh = model.init(key, *inputs, **kwargs)
    return {**variables, "params": fresh["params"]}
