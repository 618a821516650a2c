"""Markdown tables and the cells of steps-to-threshold statistics, shared by
the report, the runner's summary lines, :mod:`ngrok_jax.stats`, the
command line and the experiment scripts.

The public names of this part of the library; their code:
``ngrok_jax._src.core.tables``.
"""
from ngrok_jax._src.core.tables import (md_table, md_row, steps_cells,
                                        steps_text)

__all__ = [
    "md_table", "md_row", "steps_cells", "steps_text",
]
