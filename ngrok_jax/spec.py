"""The run spec: everything that determines a run's numbers (:class:`RunSpec`,
its ``config.json`` codec, :func:`load_spec`, :func:`check_resume`).

Building a :class:`ngrok_jax.spec.RunSpec`: :func:`make_spec`, the one
configuration function (a preset or a saved spec as the starting point, a
config, methods, seeds, per-method overrides, per-seed hyperparameters or a
sweep, a frozen amplifier, a task axis; validated), and :func:`sweep_seeds`
(seeds x sweep values).

The public names of this part of the library; their code:
``ngrok_jax._src.storage.spec``.
"""
from ngrok_jax._src.storage.spec import (FORMAT, CROSS_FORMAT, STOP_ACC, EACH,
                                         RunSpec, load_spec, check_resume,
                                         check_out_dir, make_spec, sweep_seeds)

__all__ = [
    "FORMAT", "CROSS_FORMAT", "STOP_ACC", "EACH", "RunSpec", "load_spec",
    "check_resume", "check_out_dir", "make_spec", "sweep_seeds",
]
