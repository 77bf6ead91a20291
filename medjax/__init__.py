"""medjax: the tutorial's three model families for medicine as pure JAX/Flax functions."""

from medjax import xla_defaults

__version__ = "0.2.0"

# Before any computation starts JAX's backend, which reads XLA_FLAGS once.
xla_defaults.apply()
