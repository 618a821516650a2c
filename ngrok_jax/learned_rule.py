"""A learned update rule that acts on the update, with bounded output.

The public names of this part of the library; their code:
``ngrok_jax._src.optim.learned_rule``.
"""
from ngrok_jax._src.optim.learned_rule import (OTHERS, PLACEMENTS,
                                               init_rule_state, muon_config,
                                               rule_features, num_features,
                                               rule_distances)

__all__ = [
    "PLACEMENTS", "OTHERS", "init_rule_state", "muon_config",
    "rule_features", "num_features", "rule_distances",
]
