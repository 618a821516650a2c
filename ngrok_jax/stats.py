"""Paired statistics of run folders: AUC and per-seed paired differences.

The public names of this part of the library; their code:
``ngrok_jax._src.analysis.stats``.
"""
from ngrok_jax._src.analysis.stats import (T975, t975, auc, paired_differences,
                                           paired_auc, paired_table,
                                           paired_markdown, collapses,
                                           common_window, COLLAPSE_BELOW,
                                           window_markdown)

__all__ = [
    "T975", "t975", "auc", "paired_differences", "paired_auc", "paired_table",
    "paired_markdown", "collapses", "common_window", "COLLAPSE_BELOW",
    "window_markdown",
]
