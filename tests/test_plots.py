"""Legend labels of the run plots: one median per swept value in sweeps, and
a method's non-default weight decay named (synthetic run folders, no
training)."""
import os
import re
import shutil

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import ngrok_jax.plots as plots_public
from ngrok_jax._src.analysis import plots, results
from run_folders import write_run_folder  # noqa: E402

STEPS = (100, 200, 300)


def _folder(path, methods, seeds, hparams=None, overrides=None):
  rows = []
  for m in methods:
    for i, s in enumerate(seeds):
      for t in STEPS:
        r = {"method": m, "seed": s, "step": t, "test/acc": 0.1 * i,
             "train/acc": 1.0, "diverged_at": None}
        r.update({f"hp/{k}": v[i] for k, v in (hparams or {}).items()})
        rows.append(r)
  return write_run_folder(path, methods, seeds, rows, 300, hparams=hparams,
                          overrides=overrides)


def _legend(run_dir):
  run = results.load_run(run_dir)
  fig, ax = plt.subplots()
  groups = plots.curve_groups(run["rows"], run["spec"].methods, run["config"])
  plots.plot_curves(ax, run["rows"], run["spec"].methods, "test/acc",
                    groups=groups)
  labels = ax.get_legend_handles_labels()[1]
  n_lines = len(ax.get_lines())
  plt.close(fig)
  assert os.path.isfile(plots.plot_run(run_dir)[0])  # accuracy.png
  return labels, n_lines


def test_sweep_draws_one_median_per_value(tmp_path):
  run = _folder(tmp_path / "wd", ["adamw", "adam"], [0, 1, 2, 3],
                hparams={"wd": [0.1, 0.1, 1.0, 1.0]})
  labels, n_lines = _legend(run)
  assert labels == ["adamw [wd=0.1]", "adamw [wd=1]", "adam [wd=0.1]",
                    "adam [wd=1]"]
  assert n_lines == 2 * 4 + 4  # every seed thin once, one median per value
  two = _folder(tmp_path / "c", ["rescale"], [0, 1],
                hparams={"c": [0.5, 2.0], "wd": [1e-3, 1e-3]})
  assert _legend(two)[0] == ["rescale [c=0.5,wd=0.001]",
                             "rescale [c=2,wd=0.001]"]


def test_legend_names_a_non_default_weight_decay(tmp_path):
  run = _folder(tmp_path / "r", ["neuralgrok", "adam", "adamw", "rescale"],
                [0, 1], overrides={"neuralgrok": {"wd": 1e-3},
                                   "adam": {"wd": 1e-3},
                                   "adamw": {"wd": 1.0}})
  labels, _ = _legend(run)
  # adamw's wd 1 is its default; rescale's None is the default (0)
  assert labels == ["neuralgrok (wd 0.001)", "adam (wd 0.001)", "adamw",
                    "rescale"]
  # without a config (plot_curves alone): plain method names
  rows = results.load_run(run)["rows"]
  assert [g[0] for g in plots.curve_groups(rows, ["adam"])] == ["adam"]


RAW = re.compile(r"\[['\"]|^\w+/\w+$|\w+/\w+\s*$")


def _every_metric_folder(path, methods):
  """A run folder whose rows have every metric a plot draws, and an
  amplifier file (the cross-task fixture's)."""
  rng = np.random.default_rng(0)
  rows = []
  for m in methods:
    for s in (0, 1):
      for t in STEPS:
        r = {"method": m, "seed": s, "step": t, "diverged_at": None}
        for k in ("train/acc", "test/acc", "train/loss", "test/loss",
                  "grad/age", "grad/age_transformed", "weights/norm",
                  "weights/entropy", "train/softmax_collapse",
                  "fourier/key_freqs", "weights_norm/tok_emb",
                  "weights_norm/block_0", "fourier/share_1",
                  "fourier/share_2"):
          r[k] = float(rng.uniform(0.1, 1.0)) * (30 if m == "adam" else 1)
        if m == "neuralgrok":
          for k, *_ in plots.LEARNING_KEYS:
            r[k] = float(rng.uniform(1e-4, 1e-2))
        rows.append(r)
  run = write_run_folder(str(path), methods, [0, 1], rows, 300)
  shutil.copy(FIXTURE_AMP, os.path.join(run, "amplifier.msgpack"))
  return run


FIXTURE_AMP = os.path.join(os.path.dirname(__file__), "fixtures",
                           "cross_task_v1", "amplifier.msgpack")


def test_every_plot_has_labelled_axes_readable_titles_and_one_palette(
    tmp_path, monkeypatch):
  """Every panel of every figure has an x label, a y label and a title
  that is not a raw metric key or pytree path; colour bars are labelled
  without an offset; amplifier_learning.png is a grid, not a row; the
  panels of layers.png share their y-scale; a method has its colour of
  METHOD_COLORS whatever its place in the run (the notebooks use it)."""
  figures = {}
  real = plots.save_figure

  def keep(fig, path):
    fig.canvas.draw()
    axes = [a for a in fig.axes if a.get_visible()]
    figures[os.path.basename(path)] = dict(
        size=tuple(fig.get_size_inches()),
        panels=[(a.get_xlabel(), a.get_ylabel(), a.get_title(),
                 a.get_ylim(), [(l.get_label(), l.get_color())
                                for l in a.get_lines()])
                for a in axes if a.get_label() != "<colorbar>"],
        bars=[(a.get_ylabel(), a.yaxis.get_offset_text().get_text() or
               getattr(a.yaxis.get_major_formatter(), "get_useOffset",
                       lambda: False)())
              for a in axes if a.get_label() == "<colorbar>"],
        rows=axes[0].get_subplotspec().get_gridspec().nrows)
    real(fig, path)

  monkeypatch.setattr(plots, "save_figure", keep)
  run = _every_metric_folder(tmp_path / "r", ["adam", "neuralgrok"])
  written = plots.plot_run(run)
  names = {os.path.basename(p) for p in written}
  assert names == set(figures) == {
      "accuracy.png", "loss.png", "age.png", "weights.png",
      "diagnostics.png", "layers.png", "fourier.png",
      "amplifier_learning.png", "amplifier.png"}, names
  for name, f in figures.items():
    for x, y, title, _, _ in f["panels"]:
      assert x and y and title, (name, x, y, title)
      assert not RAW.search(title), (name, title)
    for label, offset in f["bars"]:
      assert label and not offset, (name, label, offset)
  learning = figures["amplifier_learning.png"]
  assert learning["rows"] >= 2 and learning["size"][0] / learning["size"][
      1] < 2.5
  layer_ylims = {p[3] for p in figures["layers.png"]["panels"]}
  assert len(layer_ylims) == 1, layer_ylims
  medians = {label.split(" ")[0]: color for label, color in
             figures["accuracy.png"]["panels"][1][4]
             if not label.startswith("_")}
  assert medians == {m: plots_public.METHOD_COLORS[m]
                     for m in ("adam", "neuralgrok")}, medians
  for nb in ("quickstart.ipynb", "analysis.ipynb"):
    text = open(os.path.join(os.path.dirname(__file__), "..", "notebooks",
                             nb)).read()
    assert "METHOD_COLORS[method]" in text, nb
