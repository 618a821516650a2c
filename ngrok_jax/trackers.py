"""Experiment trackers as runner hooks: TensorBoard and Weights & Biases.

The public names of this part of the library; their code:
``ngrok_jax._src.running.trackers``.
"""
from ngrok_jax._src.running.trackers import (TRACKERS, TrackerUnavailable,
                                             TensorBoardLogger, WandbLogger,
                                             make_trackers, run_names,
                                             hyperparameters, scalars)

__all__ = [
    "TRACKERS", "TrackerUnavailable", "TensorBoardLogger", "WandbLogger",
    "make_trackers", "run_names", "hyperparameters", "scalars",
]
