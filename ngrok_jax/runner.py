"""The multi-seed experiment runner: the training loop over methods.

The public names of this part of the library; their code:
``ngrok_jax._src.running.runner``.
"""
from ngrok_jax._src.running.runner import run, resume, check_devices
from ngrok_jax._src.running.run_loop import Engine, run_chunks

__all__ = [
    "run", "resume", "check_devices", "Engine", "run_chunks",
]
