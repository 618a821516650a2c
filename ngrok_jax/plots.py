"""PNG plots of a run folder (matplotlib, Agg backend).

The public names of this part of the library; their code:
``ngrok_jax._src.analysis.plots``.
"""
from ngrok_jax._src.analysis.plots import (plot_run, plot_curves,
                                           plot_amplifier, compare_runs,
                                           curve_groups)
from ngrok_jax._src.analysis.plot_style import METHOD_COLORS, method_colors

__all__ = [
    "plot_run", "plot_curves", "plot_amplifier", "compare_runs",
    "curve_groups", "METHOD_COLORS", "method_colors",
]
