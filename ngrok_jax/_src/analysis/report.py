"""Markdown tables from finished run folders (``ngrok-jax report DIR...``)."""
from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Sequence

from ngrok_jax._src.analysis.results import THRESHOLDS, load_run
from ngrok_jax._src.core.tables import md_table, steps_cells

__all__ = ["markdown_table", "report", "rows_of"]


def rows_of(name: str, summary: Mapping[str, Any]) -> List[List[str]]:
  """The rows of :func:`markdown_table` for one run folder.

  Args:
    name: the run's label (first column).
    summary: the run's ``summary.json``.

  Returns:
    One row of cells per method (per group of a grouped method).
  """
  out = []
  for m, per in summary["methods"].items():
    entries = [(m, per)]
    if per.get("groups"):
      entries = [(f"{m} [{label}]", g) for label, g in per["groups"].items()]
    for label, g in entries:
      cells = [name, label]
      for t in THRESHOLDS:
        cells += steps_cells(g[f"t{int(t * 100)}"])
      cells.append(str(g.get("num_diverged", 0)))
      ran = max(per.get("last_step") or [0])
      cells.append(f"{ran}" + (" (stopped early)" if per.get(
          "stopped_early_at") else ""))
      wall = per.get("wall_time_s", 0.0)
      cells.append(f"{wall:.1f}")
      cells.append(f"{wall / ran:.3f}" if ran else "-")
      if not per.get("complete", True):
        cells[1] += " (incomplete)"
      out.append(cells)
  return out


def _load(d: str):
  """:func:`load_run`; a ValueError naming the file it cannot read."""
  try:
    return load_run(d)
  except (ValueError, OSError, KeyError, TypeError) as e:
    import json
    from ngrok_jax._src.analysis.results import read_metrics
    for name in ("config.json", "summary.json", "metrics.jsonl"):
      path = os.path.join(d, name)
      if not os.path.exists(path):
        continue
      try:
        if name.endswith(".json"):
          with open(path) as f:
            json.load(f)
        else:
          read_metrics(path)
      except (ValueError, OSError) as e2:
        raise ValueError(f"cannot read {path}: "
                         f"{' '.join(str(e2).split())}") from None
    raise ValueError(f"cannot read the run in {d}: {e}") from None


def markdown_table(run_dirs: Sequence[str]) -> str:
  """One markdown table: run x method, steps to 95%/99% (median, IQR,
  successes/seeds), diverged seeds, the steps run (fewer than the budget
  when the method stopped early, ``--stop-after``), the training wall time of
  all seeds together and that time per step."""
  header = ["run", "method"]
  for t in THRESHOLDS:
    p = int(t * 100)
    header += [f"{p}% median", f"{p}% IQR", f"{p}% success"]
  header += ["diverged", "steps run", "wall s", "s/step"]
  rows = []
  for d in run_dirs:
    run = _load(d)
    rows += rows_of(os.path.basename(os.path.normpath(d)), run["summary"])
  return md_table(header, rows)


def report(run_dirs: Sequence[str], plots: bool = True,
           compare_png: Optional[str] = None) -> str:
  """The markdown table; optionally (re)writes each run's plots and a
  comparison plot of the median test accuracy of every (run, method)."""
  if not run_dirs:
    raise ValueError("report needs at least one run folder")
  for d in run_dirs:
    if not os.path.isfile(os.path.join(d, "config.json")):
      raise ValueError(f"{d!r} is not a run folder (no config.json)")
  table = markdown_table(run_dirs)
  if plots:
    from ngrok_jax._src.analysis import plots as plots_lib
    for d in run_dirs:
      plots_lib.plot_run(d)
    if compare_png:
      plots_lib.compare_runs(run_dirs, compare_png)
  return table
