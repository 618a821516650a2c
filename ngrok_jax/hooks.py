"""Per-chunk hooks of the runner loop.

The public names of this part of the library; their code:
``ngrok_jax._src.running.hooks``.
"""
from ngrok_jax._src.running.hooks import (Chunk, RunInterrupted, StopFlag,
                                          ProgressBar, EarlyStop,
                                          MetricsWriter, CheckpointSaver,
                                          StopOnSignal, close_hooks,
                                          DivergenceBound, DIVERGED_LOSS,
                                          sync_stop, AgreeOnStop,
                                          TimeLimit)

__all__ = [
    "Chunk", "RunInterrupted", "StopFlag", "ProgressBar", "EarlyStop",
    "MetricsWriter", "CheckpointSaver", "StopOnSignal", "close_hooks",
    "DivergenceBound", "DIVERGED_LOSS", "sync_stop", "AgreeOnStop",
    "TimeLimit",
]
