"""Legend labels of the run plots: one median per swept value in sweeps, and
a method's non-default weight decay named (synthetic run folders, no
training)."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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
