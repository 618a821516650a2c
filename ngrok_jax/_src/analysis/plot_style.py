"""The look shared by every figure of the library and the notebooks: one
colour per method (:data:`METHOD_COLORS`), the metrics' titles, readable
tensor names, and fixed margins instead of ``tight_layout``."""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ngrok_jax._src.optim.registry import RECORDS  # noqa: E402

__all__ = ["METHOD_COLORS", "method_colors", "TITLES", "tensor_title",
           "step_label", "MARGINS", "layout", "save_figure"]


#: One colour per method, the same in every figure of the command line and
#: the notebooks (matplotlib's default cycle, NeuralGrok first): the
#: records' ``color``.
METHOD_COLORS = {r.name: r.color for r in RECORDS if r.color}


def method_colors(labels: Sequence[str],
                  methods: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """The colour of each curve label: its method's :data:`METHOD_COLORS`
  entry when every method has one curve (``methods[i]`` is label ``i``'s
  method; default: the labels are the methods), else the default cycle
  (a sweep: several curves of one method).

  Args:
    labels: the curves' legend labels.
    methods: each label's method.

  Returns:
    ``{label: colour}``.
  """
  methods = list(labels if methods is None else methods)
  if len(set(methods)) == len(methods) and all(
      m in METHOD_COLORS for m in methods):
    return {l: METHOD_COLORS[m] for l, m in zip(labels, methods)}
  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  return {l: cycle[i % len(cycle)] for i, l in enumerate(labels)}


#: Panel titles of the metrics (never the raw key).
TITLES = {
    "train/acc": "train accuracy", "test/acc": "test accuracy",
    "train/loss": "train loss", "test/loss": "test loss",
    "grad/age": "AGE of the raw gradient",
    "grad/age_transformed": "AGE of the transformed gradient",
    "weights/norm": "weight norm (L2)", "weights/entropy": "weight entropy",
}


def tensor_title(path: str) -> str:
  """A pytree path as words: ``['params']['block_0']['fc']['kernel']``
  -> ``block 0, fc kernel``."""
  import re
  keys = [k for k in re.findall(r"[\w.-]+", path) if k != "params"]
  blocks = [k.replace("_", " ") for k in keys if re.fullmatch(r"\w+_\d+", k)]
  rest = [k for k in keys if not re.fullmatch(r"\w+_\d+", k)]
  return ", ".join(blocks + [" ".join(rest)]) if rest else ", ".join(blocks)


def step_label(rows) -> str:
  """The x label of a curve: log steps, from the first evaluation (a run
  evaluates after each chunk of ``eval_every`` steps, never at step 0,
  which a log axis could not show)."""
  first = min((r["step"] for r in rows), default=None)
  return "step (log scale)" if first is None else (
      f"step (log scale; first evaluation at step {first})")


#: Fixed margins (inches) of every figure here: left (the y tick labels and
#: label), right, bottom (the x tick labels and label), top (a two-line
#: panel title under the figure title) and the gap between panels; with a
#: colorbar, the right margin and the gaps also hold its tick labels.
#: ``tight_layout`` instead measured every tick label in an extra draw:
#: about half of a figure's cost.
MARGINS = dict(left=0.95, right=0.2, bottom=0.6, top=0.85, gap=0.95,
               colorbar=0.9, row_gap=1.0)


def layout(fig):
  """Places a figure's grid of panels with the fixed :data:`MARGINS`."""
  w, h = fig.get_size_inches()
  m = MARGINS
  grid = fig.axes[0].get_subplotspec().get_topmost_subplotspec(
  ).get_gridspec()
  ncols, nrows = grid.ncols, grid.nrows
  bar = m["colorbar"] if any(a.get_label() == "<colorbar>"
                             for a in fig.axes) else 0.0
  gap, right = m["gap"] + bar, m["right"] + bar
  width = (w - m["left"] - right - gap * (ncols - 1)) / ncols
  height = (h - m["top"] - m["bottom"] - m["row_gap"] * (nrows - 1)) / nrows
  fig.subplots_adjust(left=m["left"] / w, right=1 - right / w,
                      bottom=m["bottom"] / h, top=1 - m["top"] / h,
                      wspace=gap / width, hspace=m["row_gap"] / height)


def save_figure(fig, path: str) -> None:
  layout(fig)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
