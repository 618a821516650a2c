"""The results of a run folder: metric rows, the metrics file, summaries,
and the atomic file write the run folder's files are written with.

The public names of this part of the library; their code:
``ngrok_jax._src.analysis.results`` (``atomic_write``:
``ngrok_jax._src.core.fileio``).
"""
from ngrok_jax._src.analysis.results import (THRESHOLDS, METRICS_FILE,
                                             metric_rows, write_metrics,
                                             append_metrics, read_metrics,
                                             seed_curve, sweep_label,
                                             row_sweep, summarize,
                                             held_evaluations, step_stats,
                                             summary_line, RunData, load_run)
from ngrok_jax._src.core.fileio import atomic_write

__all__ = [
    "THRESHOLDS", "METRICS_FILE", "metric_rows", "write_metrics",
    "append_metrics", "read_metrics", "seed_curve", "sweep_label", "row_sweep",
    "summarize", "held_evaluations", "step_stats", "summary_line", "RunData",
    "load_run", "atomic_write",
]
