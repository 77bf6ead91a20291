"""medjax: the tutorial's three model families for medicine as pure JAX/Flax functions."""

from medjax import allocator, xla_defaults

__version__ = "0.3.0"

# Before any computation starts JAX's backend, which reads XLA_FLAGS once and starts the threads whose arenas glibc
# makes.
xla_defaults.apply()
ALLOCATOR_DEFAULTS = allocator.apply()


def load(workdir, which: str = "best"):
    """A trained run, ready to predict without its training data: see `medjax.run.load`."""
    from medjax.run import load as _load

    return _load(workdir, which)
