"""Several JAX processes running one run: start-up and the few collectives.

The public names of this part of the library; their code:
``ngrok_jax._src.core.distributed``.
"""
from ngrok_jax._src.core.distributed import (initialize, is_primary, to_host,
                                             any_process, barrier, ENV_VARS)

__all__ = [
    "initialize", "is_primary", "to_host", "any_process", "barrier",
    "ENV_VARS",
]
