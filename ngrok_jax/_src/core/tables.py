"""Markdown tables and the cells of steps-to-threshold statistics, shared by
the report, the runner's summary lines, :mod:`ngrok_jax.stats`, the
command line and the experiment scripts."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence, Tuple

__all__ = ["md_table", "md_row", "steps_cells", "steps_text"]


def md_row(cells: Sequence[Any]) -> str:
  """One markdown table line (cells converted with ``str``)."""
  return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
  """A markdown table: the header, a ``|---|`` separator with as many cells,
  one line per row (:func:`md_row`)."""
  return "\n".join([md_row(header), "|" + "---|" * len(header)] +
                   [md_row(r) for r in rows])


def steps_cells(s: Mapping[str, Any]) -> Tuple[str, str, str]:
  """``(median, IQR, successes)`` of one steps-to-threshold statistic (a
  ``t95``/``t99`` entry of a summary): ``("1200", "1100-1400", "3/4")``, or
  ``("never", "-", "0/4")`` when no seed reached the threshold."""
  if s["median"] is None:
    med, iqr = "never", "-"
  else:
    med, iqr = f"{s['median']:.0f}", f"{s['q25']:.0f}-{s['q75']:.0f}"
  return med, iqr, f"{s['success']}/{s['n']}"


def steps_text(s: Mapping[str, Any]) -> str:
  """Median and successes in one cell: ``"1200 (3/4)"``, ``"never (0/4)"``."""
  med, _, ok = steps_cells(s)
  return f"{med} ({ok})"
