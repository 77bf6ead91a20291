"""Position encodings: attention is blind to order, so where a step sits is added to what it holds.

The tutorial says positions are encoded before attention but its program never does it. Two encodings are provided:

- `sinusoidal_positions(length, dim)`: the fixed table of Vaswani et al. (2017), "Attention is all you need", §3.5,
  ``PE[pos, 2i] = sin(pos / 10000^(2i/dim))`` and ``PE[pos, 2i+1] = cos(pos / 10000^(2i/dim))``. No parameters, and
  it is defined for any length.
- `LearnedPositions(max_length)`: one trained vector per position (BERT, ViT), for inputs up to ``max_length`` steps.

Both return the table ``f32[time, dim]``; the caller adds it to ``x: f32[batch, time, dim]``. Positions count from the
first step, so with right-padding (valid steps first) the valid steps get the same positions however much padding
follows.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medjax.nn.checks import check_array

# The base wavelength of Vaswani et al.: wavelengths run geometrically from 2π to 10000·2π.
_MAX_WAVELENGTH = 10_000.0


def sinusoidal_positions(length: int, dim: int) -> jax.Array:
    """The sinusoidal position table of Vaswani et al. (2017).

    Computed in NumPy float64 from static sizes, so under `jit` it is a constant folded into the program.

    Args:
      length: number of positions (steps), >= 0.
      dim: width of each position vector, >= 1. An odd ``dim`` ends with a sine column.

    Returns:
      f32[length, dim] with ``PE[pos, 2i] = sin(pos / 10000^(2i/dim))`` and ``PE[pos, 2i+1] = cos(...)`` of the same
      angle.

    Example:
      >>> sinusoidal_positions(50, 32).shape
      (50, 32)
    """
    for name, value, low in (("length", length, 0), ("dim", dim, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"sinusoidal_positions: {name} must be an int, got {type(value).__name__} {value!r}")
        if value < low:
            raise ValueError(f"sinusoidal_positions: {name} must be >= {low}, got {value}")
    position = np.arange(length, dtype=np.float64)[:, None]
    # Column 2i and 2i+1 share the frequency 1 / 10000^(2i/dim).
    even = np.arange(0, dim, 2, dtype=np.float64)
    angle = position / _MAX_WAVELENGTH ** (even / dim)
    table = np.empty((length, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : dim // 2])
    return jnp.asarray(table, dtype=jnp.float32)


class LearnedPositions(nn.Module):
    """A trained position table: one ``dim``-vector per position, for inputs of up to ``max_length`` steps.

    Attributes:
      max_length: the most steps an input may have; longer inputs raise ``ValueError`` (a learned table cannot
        extrapolate, unlike `sinusoidal_positions`).
      stddev: standard deviation of the normal initialisation (0.02 as in BERT).

    Example:
      >>> pos = LearnedPositions(max_length=128)
      >>> x = jnp.zeros((2, 50, 32))
      >>> variables = pos.init(jax.random.key(0), x)
      >>> (x + pos.apply(variables, x)[None]).shape
      (2, 50, 32)
    """

    max_length: int
    stddev: float = 0.02

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns the positions of ``x``'s steps.

        Args:
          x: f32[batch, time, dim]; only its shape is read.

        Returns:
          f32[time, dim], the first ``time`` rows of the table (parameter ``embedding: f32[max_length, dim]``).
        """
        check_array(x, "LearnedPositions x", dims=("batch", "time", "dim"))
        _, length, dim = x.shape
        if length > self.max_length:
            raise ValueError(
                f"LearnedPositions: input has {length} steps but the table holds max_length={self.max_length}; "
                "raise max_length or use sinusoidal positions"
            )
        table = self.param("embedding", nn.initializers.normal(stddev=self.stddev), (self.max_length, dim), jnp.float32)
        return table[:length]
