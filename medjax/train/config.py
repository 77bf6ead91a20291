"""The training fields every task's config shares; a task's config is a dataclass that extends `TrainConfig`."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class TrainConfig:
    workdir: str = "runs/default"  # where config.json, metrics.jsonl, results.json and checkpoints/ go
    seed: int = 0  # seeds initialisation, shuffling and dropout; the same seed gives the same run
    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # examples per training step, split over all local devices
    eval_batch_size: int = 256  # examples per evaluation step
    optimizer: str = "adam"  # one of medjax.train.optim.OPTIMIZERS: adam, adamw, sgd
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # decoupled weight decay (adamw) or L2 (sgd)
    momentum: float = 0.9  # sgd momentum
    schedule: str = "constant"  # one of medjax.train.optim.SCHEDULES: constant, cosine, multistep
    milestones: tuple[float, ...] = (0.5, 0.75)  # multistep: fractions of training at which the lr is multiplied
    decay_factor: float = 0.1  # multistep: the multiplier at each milestone
    clip_norm: float = 0.0  # clip gradients to this global norm; 0 turns clipping off
    num_devices: int = 0  # data-parallel over this many local devices (0: all of them); batch_size must divide by it
    log_every: int = 50  # print a progress line every this many steps (also drives the progress bar's postfix)
    progress: bool = True  # show a progress bar
