"""Named whole-run configurations for ``ngrok-jax train --preset NAME``.

The public names of this part of the library; their code:
``ngrok_jax._src.training.presets``.
"""
from ngrok_jax._src.training.presets import (PRESETS, get_preset, preset_names,
                                             merge, method_overrides)

__all__ = [
    "PRESETS", "get_preset", "preset_names", "merge", "method_overrides",
]
