"""Checkpoints of the whole vmapped training state with orbax-checkpoint.

The public names of this part of the library; their code:
``ngrok_jax._src.storage.checkpoint``.
"""
from ngrok_jax._src.storage.checkpoint import (Checkpointer, state_checksum,
                                               CheckpointError,
                                               CheckpointMismatch, Unusable,
                                               resume_from)

__all__ = [
    "Checkpointer", "state_checksum", "CheckpointError", "CheckpointMismatch",
    "Unusable", "resume_from",
]
