"""Named whole-run configurations for ``ngrok-jax train --preset NAME``.

The public names of this part of the library; their code:
``ngrok_jax._src.training.presets``.
"""
from ngrok_jax._src.training.presets import (
    PRESETS, PAPER_PRESET_FOR_TASK, get_preset, preset_names, merge,
    method_overrides)

__all__ = [
    "PRESETS", "PAPER_PRESET_FOR_TASK", "get_preset", "preset_names", "merge",
    "method_overrides",
]
