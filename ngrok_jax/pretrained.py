"""Learned update rules shipped with the package, ready to use.

The public names of this part of the library; their code:
``ngrok_jax._src.optim.pretrained``.
"""
from ngrok_jax._src.optim.pretrained import (RULES_DIR, DEFAULT_RULE,
                                             rule_names, rule_info,
                                             load_pretrained, write_rule_files,
                                             config_from_dict, resolve_rule)

__all__ = [
    "RULES_DIR", "DEFAULT_RULE", "rule_names", "rule_info", "load_pretrained",
    "write_rule_files", "config_from_dict", "resolve_rule",
]
