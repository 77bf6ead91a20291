"""medjax: the tutorial's three model families for medicine as pure JAX/Flax functions."""

__version__ = "0.1.0"
