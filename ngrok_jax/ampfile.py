"""The amplifier file of a run folder: ``amplifier.msgpack`` and
``amplifier.json``.

The public names of this part of the library; their code:
``ngrok_jax._src.storage.ampfile``.
"""
from ngrok_jax._src.storage.ampfile import (AMP_FORMAT, save_amplifier,
                                            load_amplifier, check_fits,
                                            grad_range_fn, run_amplifier_meta)

__all__ = [
    "AMP_FORMAT", "save_amplifier", "load_amplifier", "check_fits",
    "grad_range_fn", "run_amplifier_meta",
]
