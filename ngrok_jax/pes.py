"""Outer training of a learned rule's parameters over truncated unrolls.

The public names of this part of the library; their code:
``ngrok_jax._src.optim.pes``.
"""
from ngrok_jax._src.optim.pes import (ESTIMATORS, OBJECTIVES, InnerTask,
                                      OuterConfig, Particles, OuterState,
                                      init_particles, init, unroll,
                                      pes_estimate, tbptt_estimate,
                                      make_outer_step, measure_snr)

__all__ = [
    "ESTIMATORS", "OBJECTIVES", "InnerTask", "OuterConfig", "Particles",
    "OuterState", "init_particles", "init", "unroll", "pes_estimate",
    "tbptt_estimate", "make_outer_step", "measure_snr",
]
