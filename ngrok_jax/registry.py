"""The training methods: one :class:`Method` record per method.

The public names of this part of the library; their code:
``ngrok_jax._src.optim.registry`` and, for a user's method
(``module:factory``), ``ngrok_jax._src.optim.user_method``.
"""
from ngrok_jax._src.optim.registry import (Method, MethodParts, RECORDS,
                                           get_method, method_names,
                                           register, unregister,
                                           adam_chain, with_projection,
                                           warmup_lr, muon_dimension_numbers,
                                           LR_GRID, META_UPDATE_ARGS,
                                           DEFAULT_METHOD, DEFAULT_METHODS,
                                           PAPER_METHODS, QUICK_METHODS)
from ngrok_jax._src.optim.user_method import (method_from_source, USER_GRID,
                                              FACTORY_KWARGS)

__all__ = [
    "Method", "MethodParts", "RECORDS", "get_method", "method_names",
    "register", "unregister", "adam_chain", "with_projection", "warmup_lr",
    "muon_dimension_numbers", "LR_GRID", "META_UPDATE_ARGS",
    "DEFAULT_METHOD", "DEFAULT_METHODS", "PAPER_METHODS", "QUICK_METHODS",
    "method_from_source", "USER_GRID", "FACTORY_KWARGS",
]
