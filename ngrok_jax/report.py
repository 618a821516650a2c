"""Markdown tables from finished run folders (``ngrok-jax report DIR...``).

The public names of this part of the library; their code:
``ngrok_jax._src.analysis.report``.
"""
from ngrok_jax._src.analysis.report import markdown_table, report, rows_of

__all__ = [
    "markdown_table", "report", "rows_of",
]
