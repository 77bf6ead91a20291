"""The tutorial's maths as pure `jnp` functions, with thin Flax Linen wrappers."""
