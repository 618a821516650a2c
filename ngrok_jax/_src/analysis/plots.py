"""PNG plots of a run folder (matplotlib, Agg backend).

:func:`plot_run` writes into ``out_dir/plots``:

* ``accuracy.png``: train and test accuracy against steps (log x), every
  seed thin, the median over seeds bold, one colour per method; in a sweep
  (per-seed hyperparameters, ``hp/<name>`` metric keys) one median per
  method and swept value (``adamw [wd=0.1]``); a method whose config sets a
  non-default weight decay names it (``neuralgrok (wd 0.001)``);
* ``loss.png``: train and test loss, same layout (log y);
* ``age.png``: Absolute Gradient Entropy of the raw and of the transformed
  gradient; ``weights.png``: weight norm and weight entropy;
* ``diagnostics.png``: softmax collapse and the embedding's key
  frequencies; ``layers.png``: weight norm per layer; ``fourier.png``: the
  embedding's Fourier spectrum over training (first seed of each method);
* ``amplifier_learning.png`` (NeuralGrok runs with the metrics of
  :func:`ngrok_jax.train.amplifier_learning`): the amplified gradient's
  distance from the initial amplifier's and from plain rescaling's, the
  amplifier's relative parameter change, the last meta step's outer-loss
  improvement and its meta-gradient norm, over training;
* ``amplifier.png`` (NeuralGrok runs, 1-input amplifier): the learned
  score function over the range of gradient components seen (at
  initialisation and at the end), every seed, and how it reweights a real gradient tensor (raw vs amplified
  component, and the amplified/raw ratio).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ngrok_jax._src.storage.ampfile import load_amplifier
from ngrok_jax._src.analysis.results import load_run, sweep_label
from ngrok_jax._src.analysis.plot_style import (TITLES, method_colors,
                                                save_figure, step_label,
                                                tensor_title)

__all__ = ["plot_run", "plot_curves", "plot_amplifier", "compare_runs",
           "curve_groups"]

#: One curve: (legend label, method, seeds); seeds None: all of the method.
Group = Tuple[str, str, Optional[List[int]]]


def _colors(groups) -> Dict[str, str]:
  return method_colors([g[0] for g in groups], [g[1] for g in groups])


def _colorbar(fig, im, ax, label: str) -> None:
  """A labelled colour bar whose ticks are the values themselves (no
  ``+1`` offset above it)."""
  bar = fig.colorbar(im, ax=ax)
  bar.formatter.set_useOffset(False)
  bar.update_ticks()
  bar.set_label(label)


def _default_wd(method: str) -> Optional[float]:
  from ngrok_jax._src.training.config import METHODS, TrainConfig
  if method not in METHODS:  # a user's method not imported here
    return None
  return TrainConfig(method=method).hparams()["wd"]


def curve_groups(rows, methods: Sequence[str],
                 config: Optional[Mapping[str, Any]] = None) -> List[Group]:
  """The median curves to draw: one per method, or, where the method's rows
  carry per-seed hyperparameters (``hp/<name>``: a sweep), one per swept
  value, labelled ``method [name=value,...]``.  ``config`` (a run's
  config.json): a method whose ``configs.<method>.wd`` is set (None: the
  method's default) to a non-default value not swept gets ``(wd X)``."""
  out: List[Group] = []
  for m in methods:
    label = m
    wd = ((config or {}).get("configs", {}).get(m) or {}).get("wd")
    sel = [r for r in rows if r["method"] == m]
    swept = sorted({k for r in sel for k in r if k.startswith("hp/")})
    if wd is not None and "hp/wd" not in swept and (
        float(wd) != _default_wd(m)):
      label += f" (wd {float(wd):g})"
    if not swept:
      out.append((label, m, None))
      continue
    groups: Dict[str, set] = {}
    for r in sel:
      key = sweep_label({k[3:]: r.get(k) for k in swept})
      groups.setdefault(key, set()).add(r["seed"])
    for key, seeds in sorted(groups.items(), key=lambda kv: min(kv[1])):
      out.append((f"{label} [{key}]", m, sorted(seeds)))
  return out


def _curves(rows, method, key, seeds=None):
  """(steps (E,), values (S, E)) of one method (``seeds``: only these);
  NaN where missing."""
  sel = [r for r in rows if r["method"] == method and
         (seeds is None or r["seed"] in seeds)]
  steps = sorted({r["step"] for r in sel})
  seeds = sorted({r["seed"] for r in sel})
  si = {s: i for i, s in enumerate(steps)}
  ki = {s: i for i, s in enumerate(seeds)}
  vals = np.full((len(seeds), len(steps)), np.nan)
  for r in sel:
    v = r.get(key)
    if v is not None:
      vals[ki[r["seed"]], si[r["step"]]] = v
  return np.asarray(steps), vals


def plot_curves(ax, rows, methods, key, colors=None, label_suffix="",
                linestyle="-", logy=False,
                groups: Optional[List[Group]] = None):
  """Every seed thin, the median over seeds bold, one colour per curve
  (``groups``, default :func:`curve_groups` without a config: one per
  method or per swept value; ``colors`` keyed by label)."""
  groups = groups if groups is not None else curve_groups(rows, methods)
  colors = colors or _colors(groups)
  for label, m, seeds in groups:
    steps, vals = _curves(rows, m, key, seeds)
    if steps.size == 0 or np.all(np.isnan(vals)):
      continue
    color = colors.get(label, colors.get(m))
    for v in vals:
      ax.plot(steps, v, color=color, lw=0.6, alpha=0.35, ls=linestyle)
    with np.errstate(all="ignore"):
      import warnings
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(vals, axis=0)
    ax.plot(steps, med, color=color, lw=2.2, ls=linestyle,
            label=f"{label}{label_suffix}")
  ax.set_xscale("log")
  if logy:
    ax.set_yscale("log")
  ax.set_xlabel(step_label(rows))
  ax.grid(alpha=0.3, which="both")


def plot_run(out_dir: str) -> List[str]:
  """Writes all plots of a run folder; returns the paths written."""
  run = load_run(out_dir)
  rows, methods = run["rows"], run["spec"].methods
  pdir = os.path.join(out_dir, "plots")
  os.makedirs(pdir, exist_ok=True)
  groups = curve_groups(rows, methods, run["config"])
  colors = _colors(groups)
  written = []
  if not rows:
    return written
  title = _title(run)

  for name, keys, ylabel, logy in (
      ("accuracy", ("train/acc", "test/acc"), "accuracy", False),
      ("loss", ("train/loss", "test/loss"), "cross-entropy", True),
      ("age", ("grad/age", "grad/age_transformed"), "AGE", False),
      ("weights", ("weights/norm", "weights/entropy"), "", False)):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, keys):
      plot_curves(ax, rows, methods, key, colors, logy=logy, groups=groups)
      ax.set_title(TITLES[key])
      ax.set_ylabel(ylabel or TITLES[key])
      if name == "accuracy":
        ax.axhline(0.95, color="k", lw=0.6, ls=":")
        ax.set_ylim(-0.02, 1.02)
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    path = os.path.join(pdir, f"{name}.png")
    save_figure(fig, path)
    written.append(path)

  written += _plot_diagnostics(rows, methods, groups, colors, pdir, title)
  written += _plot_amplifier_learning(rows, methods, groups, colors, pdir,
                                      title)
  amp = os.path.join(out_dir, "amplifier.msgpack")
  if os.path.exists(amp) and load_amplifier(amp)[1].get(
      "amp_inputs", "grad") == "grad":
    path = os.path.join(pdir, "amplifier.png")
    plot_amplifier(amp, path)
    written.append(path)
  return written


def _plot_diagnostics(rows, methods, groups, colors, pdir, title
                      ) -> List[str]:
  """``diagnostics.png`` (softmax collapse, key frequencies),
  ``layers.png`` (weight norm per layer) and ``fourier.png`` (embedding
  spectrum over training, first seed of each method), where the rows have
  those metrics (runs written before they existed have not)."""
  written = []
  keys = [k for k in ("train/softmax_collapse", "fourier/key_freqs")
          if any(k in r for r in rows)]
  if keys:
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4),
                             squeeze=False)
    for ax, key in zip(axes[0], keys):
      plot_curves(ax, rows, methods, key, colors, groups=groups)
      ax.set_title({"train/softmax_collapse": "softmax collapse (fraction "
                    "of train rows one-hot in float32)",
                    "fourier/key_freqs": "key frequencies (fewest holding "
                    "90% of the embedding's energy)"}[key], fontsize=9)
      ax.set_ylabel({"train/softmax_collapse": "fraction of train rows",
                     "fourier/key_freqs": "frequencies"}[key])
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    written.append(os.path.join(pdir, "diagnostics.png"))
    save_figure(fig, written[-1])
  layer_keys = sorted({k for r in rows for k in r
                       if k.startswith("weights_norm/")})
  if layer_keys:
    fig, axes = plt.subplots(1, len(methods), squeeze=False, sharey=True,
                             figsize=(4.5 * len(methods), 3.8))
    for ax, m in zip(axes[0], methods):
      for key in layer_keys:
        steps, vals = _curves(rows, m, key)
        if steps.size and not np.all(np.isnan(vals)):
          ax.plot(steps, np.nanmedian(vals, axis=0), lw=1.4,
                  label=key.split("/", 1)[1].replace("_", " "))
      ax.set_xscale("log")
      ax.set_title(f"{m}: weight norm per layer (median)", fontsize=9)
      ax.set_xlabel(step_label(rows))
      ax.set_ylabel("weight norm (L2)")
      ax.yaxis.set_tick_params(labelleft=True)
      ax.grid(alpha=0.3, which="both")
      ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    written.append(os.path.join(pdir, "layers.png"))
    save_figure(fig, written[-1])
  freq_keys = sorted({k for r in rows for k in r
                      if k.startswith("fourier/share_")},
                     key=lambda k: int(k.rsplit("_", 1)[1]))
  if freq_keys:
    fig, axes = plt.subplots(1, len(methods), squeeze=False,
                             figsize=(4.5 * len(methods), 3.8))
    for ax, m in zip(axes[0], methods):
      seed = min((r["seed"] for r in rows if r["method"] == m), default=None)
      if seed is None:
        continue
      grid = [_curves(rows, m, k, [seed]) for k in freq_keys]
      steps = grid[0][0]
      share = np.stack([v[0] for _, v in grid])  # (K, E)
      im = ax.imshow(share, aspect="auto", origin="lower", cmap="magma",
                     extent=(0, len(steps), 0.5, len(freq_keys) + 0.5))
      ticks = np.linspace(0, len(steps) - 1, min(5, len(steps))).astype(int)
      ax.set_xticks(ticks + 0.5, [str(int(steps[t])) for t in ticks])
      ax.set_xlabel("step")
      ax.set_ylabel("frequency k")
      ax.set_title(f"{m}, seed {seed}: embedding energy share", fontsize=9)
      _colorbar(fig, im, ax, "energy share")
    fig.suptitle(title, fontsize=10)
    written.append(os.path.join(pdir, "fourier.png"))
    save_figure(fig, written[-1])
  return written


#: The amplifier-learning metrics drawn: (key, panel title, y label, log y).
LEARNING_KEYS = (
    ("amp/dist_init", "distance from the initial amplifier",
     "||G(g;phi) - G(g;phi0)|| / ||G(g;phi0)||", False),
    ("amp/dist_const", "distance from plain rescaling",
     "||G(g;phi) - rescaled g|| / ||rescaled g||", False),
    ("amp/param_change", "amplifier parameter change",
     "||phi - phi0|| / ||phi0||", False),
    ("meta/improvement", "last meta step's outer-loss improvement",
     "outer loss before - after", False),
    ("meta/grad_norm", "last meta step's meta-gradient norm",
     "||meta-gradient||", True),
)


def _plot_amplifier_learning(rows, methods, groups, colors, pdir, title
                             ) -> List[str]:
  """``amplifier_learning.png``: the metrics of ``LEARNING_KEYS`` that the
  rows have (NeuralGrok runs), one panel each, every seed thin and the
  median bold."""
  keys = [k for k in LEARNING_KEYS if any(
      r.get(k[0]) is not None for r in rows)]
  if not keys:
    return []
  ncols = min(3, len(keys))
  nrows = -(-len(keys) // ncols)
  fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                           figsize=(4.6 * ncols + 0.6, 3.6 * nrows + 0.6))
  flat = list(axes.ravel())
  for ax in flat[len(keys):]:
    ax.set_visible(False)
  for ax, (key, what, ylabel, logy) in zip(flat, keys):
    plot_curves(ax, rows, methods, key, colors, logy=logy, groups=groups)
    ax.set_title(what, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  path = os.path.join(pdir, "amplifier_learning.png")
  save_figure(fig, path)
  return [path]


def _title(run) -> str:
  spec = run["spec"]
  cfg = next(iter(spec.configs.values()))
  return (f"{cfg.task} mod {cfg.p}, depth {cfg.depth}, d {cfg.dim}, "
          f"{len(spec.seeds)} seeds, {spec.steps} steps")


def plot_amplifier(path: str, out_png: str) -> str:
  """The learned amplifier: score function and reweighting of a real tensor."""
  import jax.numpy as jnp
  from ngrok_jax._src.optim.amplifier import Amplifier, amplify
  params, meta = load_amplifier(path, seed_index=None)
  amp = Amplifier(tuple(meta["hidden"]), meta.get("amp_method", "pwl"))
  lo, hi = meta["grad_range"]
  span = max(abs(lo), abs(hi), 1e-12)
  x = np.linspace(-span, span, 801)
  seeds = meta["seeds"]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  import jax
  for i, s in enumerate(seeds):
    p_i = jax.tree.map(lambda a: np.asarray(a)[i], params)
    y = np.asarray(amp.apply(p_i, jnp.asarray(x, jnp.float32)))
    axes[0].plot(x, y, lw=1.2 if i == 0 else 0.8, label=f"seed {s}")
  for i, v in enumerate((lo, hi)):
    axes[0].axvline(v, color="k", lw=0.6, ls=":",
                    label="range seen (start and end)" if i == 0 else None)
  lf, hf = meta.get("grad_range_final", (lo, hi))
  axes[0].axvspan(lf, hf, color="grey", alpha=0.15,
                  label="range at end")
  axes[0].set_xlabel("gradient component g")
  axes[0].set_ylabel("score f(g; phi)")
  axes[0].set_title("learned score function", fontsize=9)
  axes[0].legend(fontsize=7)

  ex = meta["example"]
  g = np.asarray(ex["grad"], np.float32)
  p0 = jax.tree.map(lambda a: np.asarray(a)[0], params)
  c = float(meta.get("c", [1.0])[0])
  gt = np.asarray(amplify({"t": jnp.asarray(g)},
                          lambda v: amp.apply(p0, v), c)["t"])
  # reference: plain per-tensor rescaling to the same norm
  gn = g / max(np.linalg.norm(g), 1e-30) * c
  axes[1].scatter(gn.ravel(), gt.ravel(), s=2, alpha=0.4)
  m = max(np.abs(gn).max(), np.abs(gt).max(), 1e-12)
  axes[1].plot([-m, m], [-m, m], color="k", lw=0.6, ls=":")
  axes[1].set_xlabel("c g/||g|| (rescaled raw gradient)")
  axes[1].set_ylabel("G(g; phi) (amplified)")
  axes[1].set_title(f"reweighting of {tensor_title(ex['name'])} (seed "
                    f"{ex['seed']})", fontsize=9)
  with np.errstate(all="ignore"):
    ratio = np.where(np.abs(gn) > 0, gt / gn, np.nan)
  ratio = ratio.reshape(ratio.shape[0], -1) if ratio.ndim > 1 else (
      ratio[None, :])
  im = axes[2].imshow(ratio, aspect="auto", cmap="viridis")
  _colorbar(fig, im, axes[2], "amplified / rescaled")
  axes[2].set_xlabel("column (output unit)")
  axes[2].set_ylabel("row (input unit)")
  axes[2].set_title(f"amplified / rescaled per component, "
                    f"{tensor_title(ex['name'])}", fontsize=9)
  fig.suptitle(f"amplifier 1-{'-'.join(map(str, meta['hidden']))}-1, "
               f"{meta['task']} mod {meta['p']}, step {meta['step']}",
               fontsize=10)
  save_figure(fig, out_png)
  return out_png


def compare_runs(run_dirs: Sequence[str], out_png: str,
                 key: str = "test/acc") -> str:
  """Median curves of every (run, method) in one figure."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for d in run_dirs:
    run = load_run(d)
    name = os.path.basename(os.path.normpath(d))
    for label, m, seeds in curve_groups(run["rows"], run["spec"].methods,
                                        run["config"]):
      steps, vals = _curves(run["rows"], m, key, seeds)
      if steps.size == 0:
        continue
      import warnings
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(vals, axis=0)
      ax.plot(steps, med, lw=1.8, label=f"{name}:{label}")
  ax.set_xscale("log")
  ax.set_xlabel("step (log scale)")
  ax.set_ylabel(TITLES.get(key, key))
  ax.set_title(f"median {TITLES.get(key, key)} of every run and method",
               fontsize=9)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7)
  save_figure(fig, out_png)
  return out_png
