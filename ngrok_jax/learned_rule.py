"""A learned update rule that acts on the update, with bounded output.

The public names of this part of the library; their code:
``ngrok_jax._src.optim.learned_rule``.
"""
from ngrok_jax._src.optim.learned_rule import (PLACEMENTS, init_rule_state,
                                               rule_features, num_features,
                                               rule_distances)

__all__ = [
    "PLACEMENTS", "init_rule_state", "rule_features", "num_features",
    "rule_distances",
]
