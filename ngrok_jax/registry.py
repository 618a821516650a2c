"""The training methods: one :class:`Method` record per method.

The public names of this part of the library; their code:
``ngrok_jax._src.optim.registry``.
"""
from ngrok_jax._src.optim.registry import (Method, MethodParts, RECORDS,
                                           get_method, method_names,
                                           adam_chain, with_projection,
                                           muon_dimension_numbers, LR_GRID,
                                           META_UPDATE_ARGS)

__all__ = [
    "Method", "MethodParts", "RECORDS", "get_method", "method_names",
    "adam_chain", "with_projection", "muon_dimension_numbers", "LR_GRID",
    "META_UPDATE_ARGS",
]
