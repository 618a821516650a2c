"""The jitted NeuralGrok bilevel step and the baselines, vmapped over seeds.

The public names of this part of the library; their code:
``ngrok_jax._src.training.train``.
"""
from ngrok_jax._src.training.train import (init, train_steps, evaluate,
                                           train_steps_fn, evaluate_fn,
                                           programs)

__all__ = [
    "init", "train_steps", "evaluate", "train_steps_fn", "evaluate_fn",
    "programs",
]
