"""Training: the train state, the jitted steps, the one loop, checkpoints, optimizers, losses and metrics."""
