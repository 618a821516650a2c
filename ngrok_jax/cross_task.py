"""One amplifier meta-trained across several tasks at once.

The public names of this part of the library; their code:
``ngrok_jax._src.training.cross_task``.
"""
from ngrok_jax._src.training.cross_task import (TASK_AXIS, METHOD, configs,
                                                init, train_steps, evaluate,
                                                amplifier, task_folder)

__all__ = [
    "TASK_AXIS", "METHOD", "configs", "init", "train_steps", "evaluate",
    "amplifier", "task_folder",
]
