"""A cross-task amplifier: meta-trained on several tasks at once, then frozen
on held-out tasks, against rescaling (the paper's stated future work).

1. Per variant, ``runner.run(..., tasks=...)`` meta-trains one amplifier per
   seed on the training tasks (default a+b, a-b, a*b: a vmapped task axis,
   the meta-gradient averaged over it) into ``cross-<variant>/``.
   Variants: ``recipe`` (the paper's meta optimizer: Adam 1e-4 with the
   model's coupled weight decay) and ``meta-lr-1e-2-wd0`` (100x the meta
   learning rate, no meta weight decay: the setting in which a single-task
   amplifier moved most, RESULTS.md "Does the learned part matter?").
2. Per held-out task (default a/b and a*a-b), paired seeds, the same
   recipe and sizes: ``<task>/`` holds ``rescale`` (the constant score) and
   ``neuralgrok`` (an amplifier meta-trained on the task itself);
   ``<task>-cross-<variant>/`` the cross-task amplifiers frozen
   (``neuralgrok-frozen``, held-out seed i with the amplifier of training
   seed i: ``--amplifier-seed each``); ``<task>-init/`` the same amplifiers
   before any meta step, frozen (the control: what the untrained MLP does).

Prints and writes (``<out>/<task>.md``) the paired table against rescaling
(steps to 95%, AUC, with 95% intervals), how far each amplifier moved,
and ``<out>/scores.png``: seed 0's cross-task score functions next to the
initial and the constant one.

    python -m experiments.cross_task --quick
    python -m experiments.cross_task --quick --held-out a/b --variants recipe
    python -m experiments.cross_task --quick --held-out 'a*a-b' --held-out-steps 4000
"""
from __future__ import annotations

import dataclasses
import os
from typing import List

from experiments import _common as C
from experiments.learned_part import plot_scores
from ngrok_jax import cross_task, runner, stats
from ngrok_jax import TrainConfig

VARIANTS = {
    "recipe": {},
    "meta-lr-1e-2-wd0": dict(meta_lr=1e-2, meta_wd=0.0),
}
#: Held-out tasks outside the paper presets borrow a preset's recipe.
RECIPE_OF = {"a/b": "a+b"}


def _setup(task: str, args) -> dict:
  setup = C.task_setup(RECIPE_OF.get(task, task), args)
  setup["config"] = dict(setup["config"], task=task)
  return setup


def movement_table(out: str, variants: List[str], tasks: List[str]) -> str:
  lines = ["| variant | training task | test acc (end, median) | "
           "amp/dist_const (end) | amp/param_change (end) | s/step |",
           "|---|---|---|---|---|---|"]
  for v in variants:
    for t in tasks:
      f = os.path.join(out, f"cross-{v}", cross_task.task_folder(t))
      lines.append(
          f"| {v} | {t} | {C.final_median(f, 'test/acc')} | "
          f"{C.final_median(f, 'amp/dist_const')} | "
          f"{C.final_median(f, 'amp/param_change')} | "
          f"{C.s_per_step(f)} (all tasks) |")
  return "\n".join(lines)


def main():
  p = C.parser(__doc__)
  p.add_argument("--train-tasks", default="a+b,a-b,a*b")
  p.add_argument("--held-out", default="a/b,a*a-b")
  p.add_argument("--held-out-steps", type=int, default=None,
                 help="the held-out runs' budget (default: --steps)")
  p.add_argument("--variants", default=",".join(VARIANTS),
                 help=f"comma-separated, from {', '.join(VARIANTS)}")
  args = p.parse_args()
  split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
  train_tasks, held = split(args.train_tasks), split(args.held_out)
  variants = split(args.variants)
  valid = C.TASKS + tuple(RECIPE_OF)
  for t in train_tasks + held:
    if t not in valid:
      raise ValueError(f"unknown task {t!r}; valid tasks: {', '.join(valid)}")
  bad = [v for v in variants if v not in VARIANTS]
  if bad:
    raise ValueError(f"unknown variants {bad}; valid: {', '.join(VARIANTS)}")
  out = C.out_dir(args, "cross_task")
  base = _setup(train_tasks[0], args)
  cross_task.configs(runner_config(base), train_tasks)  # checks the tasks
  held_setups = {t: _setup(t, args) for t in held}
  if args.held_out_steps is not None:
    if args.held_out_steps < 1:
      raise ValueError(f"--held-out-steps must be a positive integer, got "
                       f"{args.held_out_steps}")
    for s in held_setups.values():
      s["steps"] = args.held_out_steps
      s["eval_every"] = min(s["eval_every"], s["steps"])
  for v in variants:
    folder = os.path.join(out, f"cross-{v}")
    cfg = dataclasses.replace(runner_config(base), **VARIANTS[v])
    runner.run(cfg, tasks=train_tasks, seeds=base["seeds"],
               steps=base["steps"], eval_every=base["eval_every"],
               out_dir=folder, resume=any(os.path.exists(
                   os.path.join(folder, n))
                   for n in ("config.json", "cross_task.json")),
               progress=not args.no_progress, plots=not args.no_plots)
  for t in held:
    setup = held_setups[t]
    name = cross_task.task_folder(t)
    ref = os.path.join(out, name)
    C.run_one(setup, ["rescale", "neuralgrok"], ref, args)
    others = []
    for v in variants:
      amp = os.path.join(out, f"cross-{v}")
      f = os.path.join(out, f"{name}-cross-{v}")
      C.run_one(setup, ["neuralgrok-frozen"], f, args, amplifier=amp,
                amplifier_seed="each")
      others.append(f)
    f = os.path.join(out, f"{name}-init")
    C.run_one(setup, ["neuralgrok-frozen"], f, args,
              amplifier=os.path.join(out, f"cross-{variants[0]}",
                                     "amplifier_init.msgpack"),
              amplifier_seed="each")
    others.append(f)
    table = stats.paired_markdown(ref, "rescale", others=others)
    text = (f"## held-out {t}: frozen cross-task amplifiers (trained on "
            f"{', '.join(train_tasks)}) vs rescaling (paired seeds; "
            f"differences rescale minus method: positive = the method is "
            f"faster)\n\n{table}\n")
    C.write_report(os.path.join(out, f"{name}.md"), text)
  moved = movement_table(out, variants, train_tasks)
  png = os.path.join(out, "scores.png")
  plot_scores({**{f"cross-task {v}": os.path.join(out, f"cross-{v}")
                  for v in variants},
               "initial": os.path.join(out, f"cross-{variants[0]}",
                                       "amplifier_init.msgpack")}, png)
  text = (f"## the cross-task amplifiers during meta-training\n\n{moved}\n\n"
          f"score functions: {png}\n")
  C.write_report(os.path.join(out, "training.md"), text)


def runner_config(setup) -> TrainConfig:
  """The setup's NeuralGrok :class:`ngrok_jax.TrainConfig` (make_spec's:
  its preset with the setup's config and per-method settings)."""
  return C.spec(setup, ["neuralgrok"]).configs["neuralgrok"]


if __name__ == "__main__":
  C.main_guard(main)
