"""Does the learned part matter?  NeuralGrok's recipe, each option that lets
its amplifier learn, and rescaling with the same weight decay, paired by seed.

Per task, one run folder ``<task>`` with ``neuralgrok`` (the recipe) and
``rescale`` (the amplifier replaced by a constant score: c g / ||g||, same
c, weight decay, clip and splits), and one folder ``<task>-<option>`` per
option, each NeuralGrok on the same seeds:

* ``meta-lr-1e-3``, ``meta-lr-1e-2``: meta learning rate 10x and 100x the
  recipe's 1e-4;
* ``meta-lr-1e-2-cosine``: 1e-2 with a warm-up + cosine decay over the run;
* ``meta-lr-1e-3-wd0``, ``meta-lr-1e-2-wd0``: the same without the meta
  optimizer's weight decay (the recipe's is the model's, coupled into Adam:
  it dominates a small meta-gradient and shrinks the amplifier to a
  constant);
* ``rich``: amplifier inputs gradient, Adam moments, parameter and a
  per-tensor embedding (dense MLP), meta lr 1e-3;
* ``lookahead-3``: 3 look-ahead steps unrolled per meta step, meta lr 1e-3.

The table pairs every NeuralGrok variant with ``rescale`` (steps to 95% and
area under the test-accuracy curve, with 95% intervals) and lists how far
each amplifier moved: ``amp/dist_const`` (its amplified gradient's distance
from plain rescaling's on the training gradient, 0: identical) and
``amp/param_change`` at the end, and the training seconds per step.
``scores.png`` draws every 1-input variant's learned score function (seed
0) next to the constant one.

    python -m experiments.learned_part --quick --tasks a+b,a*b
    python -m experiments.learned_part --quick --tasks a+b --options rich
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

import numpy as np

from experiments import _common as C
from ngrok_jax import runner, stats

#: Option name -> the NeuralGrok config fields it changes.
OPTIONS: Dict[str, Dict[str, Any]] = {
    "meta-lr-1e-3": dict(meta_lr=1e-3),
    "meta-lr-1e-2": dict(meta_lr=1e-2),
    "meta-lr-1e-2-cosine": dict(meta_lr=1e-2, meta_schedule="warmup-cosine"),
    "meta-lr-1e-3-wd0": dict(meta_lr=1e-3, meta_wd=0.0),
    "meta-lr-1e-2-wd0": dict(meta_lr=1e-2, meta_wd=0.0),
    "rich": dict(meta_lr=1e-3, amp_inputs="rich", amp_method="dense"),
    "lookahead-3": dict(meta_lr=1e-3, lookahead_steps=3),
}


def _folder(out: str, task: str, option: str = "") -> str:
  name = task.replace("*", "x") + (f"-{option}" if option else "")
  return os.path.join(out, name)


def _run(setup, methods, folder, over, args):
  """``methods`` on the setup's preset, ``over`` over its per-method
  settings; checkpoints at the setup's interval (the preset's at full size,
  only at method ends with --quick), like the other scripts."""
  return runner.run(
      setup["config"], methods, setup["seeds"], setup["steps"],
      setup["eval_every"], folder, preset=setup["preset"],
      method_overrides=over, checkpoint_every=setup["checkpoint_every"],
      resume=os.path.exists(os.path.join(folder, "config.json")),
      progress=not args.no_progress, plots=not args.no_plots)


def movement_table(base: str, options: List[str], out: str, task: str) -> str:
  lines = ["| variant | amp/dist_const (end) | amp/param_change (end) | "
           "NeuralGrok s/step |", "|---|---|---|---|"]
  for name, folder in [("recipe", base)] + [
      (o, _folder(out, task, o)) for o in options]:
    lines.append(f"| {name} | {C.final_median(folder, 'amp/dist_const')} | "
                 f"{C.final_median(folder, 'amp/param_change')} | "
                 f"{C.s_per_step(folder)} |")
  lines.append(f"| rescale | 0 | - | {C.s_per_step(base, 'rescale')} |")
  return "\n".join(lines)


def plot_scores(folders: Dict[str, str], png: str) -> None:
  """Seed 0's learned score function of every 1-input variant (a run folder
  or an amplifier file), and the constant one (rescaling), over the
  gradient range seen at the start."""
  import jax.numpy as jnp
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from ngrok_jax import Amplifier
  from ngrok_jax.ampfile import load_amplifier
  fig, ax = plt.subplots(figsize=(7, 4.5))
  span = None
  for name, folder in folders.items():
    path = folder if folder.endswith(".msgpack") else os.path.join(
        folder, "amplifier.msgpack")
    if not os.path.exists(path):
      continue
    params, meta = load_amplifier(path, seed_index=0)
    if meta.get("amp_inputs", "grad") != "grad":
      continue  # rich inputs: no 1-D score function
    lo, hi = meta["grad_range"]
    span = span or max(abs(lo), abs(hi), 1e-12)
    x = np.linspace(-span, span, 401)
    amp = Amplifier(tuple(meta["hidden"]), meta.get("amp_method", "pwl"))
    y = np.asarray(amp.apply(params, jnp.asarray(x, jnp.float32)))
    ax.plot(x, y - y.mean(), lw=1.3, label=name)
  if span is not None:
    ax.axhline(0.0, color="k", lw=1.0, ls="--",
               label="constant (rescaling)")
  ax.set_xlabel("gradient component g")
  ax.set_ylabel("score f(g; phi) - its mean (softmax ignores a constant)")
  ax.set_title("learned score functions, seed 0", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(png, dpi=110)
  plt.close(fig)


def main():
  p = C.parser(__doc__)
  p.add_argument("--tasks", default="a+b,a*b")
  p.add_argument("--options", default=",".join(OPTIONS),
                 help=f"comma-separated, from {', '.join(OPTIONS)}")
  args = p.parse_args()
  tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
  options = [o.strip() for o in args.options.split(",") if o.strip()]
  bad = [o for o in options if o not in OPTIONS]
  if bad:
    raise ValueError(f"unknown options {bad}; valid: {', '.join(OPTIONS)}")
  out = C.out_dir(args, "learned_part")
  setups = {t: C.task_setup(t, args) for t in tasks}  # checks every task
  for task in tasks:
    setup = setups[task]
    base = _folder(out, task)
    _run(setup, ["neuralgrok", "rescale"], base, None, args)
    for o in options:
      ng = dict(OPTIONS[o])  # over the preset's settings of neuralgrok
      if ng.get("meta_schedule", "constant") != "constant":
        ng["meta_schedule_steps"] = setup["steps"]
      _run(setup, ["neuralgrok"], _folder(out, task, o), {"neuralgrok": ng},
           args)
    others = [_folder(out, task, o) for o in options]
    table = stats.paired_markdown(base, "rescale", others=others)
    moved = movement_table(base, options, out, task)
    png = os.path.join(out, f"{os.path.basename(base)}-scores.png")
    plot_scores({"recipe": base, **{o: _folder(out, task, o)
                                    for o in options}}, png)
    text = (f"## {task}: every NeuralGrok variant vs rescaling (paired "
            f"seeds; differences rescale minus variant: positive = the "
            f"variant is faster)\n\n{table}\n\n### {task}: how far each "
            f"amplifier moved\n\n{moved}\n\nscore functions: {png}\n")
    C.write_report(os.path.join(out, f"{os.path.basename(base)}.md"), text)


if __name__ == "__main__":
  C.main_guard(main)
