"""The ``ngrok-jax`` command line (also ``python -m ngrok_jax``).

The public names of this part of the library; their code:
``ngrok_jax._src.cli.cli``.
"""
from ngrok_jax._src.cli.cli import main, build_parser

__all__ = [
    "main", "build_parser",
]
