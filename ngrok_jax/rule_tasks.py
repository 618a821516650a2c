"""Modular-arithmetic inner problems for meta-training a learned rule.

The public names of this part of the library; their code:
``ngrok_jax._src.training.rule_tasks``.
"""
from ngrok_jax._src.training.rule_tasks import (ArithConfig, arith_data,
                                                arith_task, probe, steps_to)

__all__ = [
    "ArithConfig", "arith_data", "arith_task", "probe", "steps_to",
]
