"""Shared helpers of the paper-experiment scripts (not a public API).

Every script has a ``--quick`` CPU size (tiny models, minutes) and the full
size (the authors' per-task configurations, ``ngrok_jax.presets``).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Optional

import numpy as np

from ngrok_jax import presets, runner
from ngrok_jax.hooks import RunInterrupted
from ngrok_jax.pretrained import resolve_rule
from ngrok_jax.report import markdown_table
from ngrok_jax.results import load_run
from ngrok_jax.spec import RunSpec, make_spec

TASKS = ("a+b", "a-b", "a*b", "a*a-b", "a*c+b*d-e")
# Tasks without a paper recipe of their own take the recipe of a related
# task (a/b = a * b^-1: multiplication's), the task replaced.
BORROWED = {"a/b": "a*b"}

# --quick: the CPU size of RESULTS.md.  The transformer is scaled down to the
# ``quick`` preset's (depth 1, d 64, lr 3e-3) and p to 47 (5 for
# a*c+b*d-e); each task keeps the recipe's meta interval T and c.  The
# two-hidden-layer amplifier (128-128, every mod-97 task of the paper-*
# recipe) is cut to 32-32 (the quick preset's): its exact table has up to
# 128*128 breakpoints, and building it every step costs more than the whole
# d-64 model step on this CPU.  a*c+b*d-e keeps 1-1152-1.
# The sizes are read from the quick preset (their one place); the batch is
# this study's own.
_QUICK_PRESET = presets.get_preset("quick")["config"]
QUICK = dict({k: _QUICK_PRESET[k] for k in ("depth", "dim", "heads", "lr")},
             batch_size=128)
QUICK_AMP = {t: tuple(_QUICK_PRESET["amp_hidden"])
             for t in ("a+b", "a-b", "a*b", "a*a-b", "a/b")}
QUICK_P = {"a*c+b*d-e": 5}
QUICK_DEFAULT_P = 47
QUICK_STEPS, QUICK_EVAL, QUICK_SEEDS = 2000, 100, 5


def parser(doc: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
  p.add_argument("--quick", action="store_true",
                 help="small CPU size (minutes) instead of the paper's")
  p.add_argument("--out", default=None, help="output folder (default: "
                 "runs/experiments/<script>[-quick])")
  p.add_argument("--seeds", type=int, default=None,
                 help="seeds per configuration (default: 5 quick, 4 full)")
  p.add_argument("--steps", type=int, default=None,
                 help="steps (default: 2000 quick, the preset's budget full)")
  p.add_argument("--eval-every", type=int, default=None,
                 help="evaluation interval (default: 100 quick, preset full)")
  p.add_argument("--p", type=int, default=None, help="override the modulus")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--no-plots", action="store_true",
                 help="do not draw the run folders' plots (plots/*.png); "
                 "a script's own figures are still drawn")
  return p


def add_rule_flag(p: argparse.ArgumentParser) -> None:
  p.add_argument("--rule", default=None, metavar="NAME|DIR",
                 help="the frozen rule of learned-rule: a shipped rule's "
                 "name or a folder with rule.msgpack and rule_config.json "
                 "(default: the shipped arith-pes-cpu)")


def set_rule(setup: Dict[str, Any], methods, rule) -> None:
  """``--rule``: learned-rule's frozen rule into ``setup``'s config (a
  one-line ValueError, before any write, for a rule that does not load or
  a run without learned-rule)."""
  if rule is None:
    return
  if "learned-rule" not in methods:
    raise ValueError("--rule chooses learned-rule's rule: add --methods "
                     "learned-rule")
  resolve_rule(rule)
  setup["config"]["rule"] = rule


def task_setup(task: str, args) -> Dict[str, Any]:
  """One task's setup: ``preset`` (the name of its paper preset), ``config``
  (only the explicit :class:`ngrok_jax.TrainConfig` fields: the task when
  it borrows another's recipe, the --quick sizes, --p), ``steps``,
  ``eval_every``, ``seeds`` and ``checkpoint_every`` (0: only at method
  ends).  :func:`spec` and :func:`run_one` assemble the run from it
  (:func:`ngrok_jax.spec.make_spec`: the preset with the config over it)."""
  if task not in presets.PAPER_PRESET_FOR_TASK and task not in BORROWED:
    raise ValueError(f"unknown task {task!r}; valid tasks: "
                     f"{', '.join(TASKS + tuple(BORROWED))}")
  name = presets.PAPER_PRESET_FOR_TASK[BORROWED.get(task, task)]
  preset = presets.get_preset(name)  # read for the budget defaults only
  config: Dict[str, Any] = {"task": task} if task in BORROWED else {}
  if args.quick:
    config.update(QUICK, p=QUICK_P.get(task, QUICK_DEFAULT_P))
    if task in QUICK_AMP:
      config["amp_hidden"] = QUICK_AMP[task]
  if args.p is not None:
    config["p"] = args.p
  steps = args.steps or (QUICK_STEPS if args.quick else preset["steps"])
  ev = args.eval_every or (QUICK_EVAL if args.quick else preset["eval_every"])
  ev = min(ev, steps)
  seeds = args.seeds or (QUICK_SEEDS if args.quick else preset["seeds"])
  # Full size: the preset's checkpoint interval (a 3e5-step run must not
  # lose a method's progress to a SIGKILL); --quick: only at method ends
  # (0, not None: None would take the preset's).
  ce = 0 if args.quick else (preset.get("checkpoint_every") or 0)
  if ce and ce % ev:
    ce = 0
  return dict(preset=name, config=config, steps=steps, eval_every=ev,
              seeds=seeds, checkpoint_every=ce)


def spec(setup: Dict[str, Any], methods, **kw) -> RunSpec:
  """:func:`ngrok_jax.spec.make_spec` of ``setup`` (its preset, config,
  seeds, steps, eval_every and checkpoint interval; ``kw`` over them)."""
  args = dict(preset=setup["preset"], seeds=setup["seeds"],
              steps=setup["steps"],
              eval_every=setup["eval_every"],
              checkpoint_every=setup["checkpoint_every"])
  args.update(kw)
  return make_spec(setup["config"], methods, **args)


def preset_setting(setup: Dict[str, Any], m: str, leave=()) -> Dict[str, Any]:
  """The preset's per-method settings of ``m`` that make_spec applies (the
  explicit config fields replace them), but for the fields in ``leave``."""
  mine = presets.method_overrides(presets.get_preset(setup["preset"]),
                                  [m]).get(m, {})
  return {k: v for k, v in mine.items()
          if k not in leave and k not in setup["config"]}


def without_preset_setting(setup: Dict[str, Any], m: str,
                           fields) -> Dict[str, Any]:
  """Overrides of ``m`` that undo the preset's setting of ``fields``: each
  such field at its value in the preset's config with the explicit fields
  (make_spec of the preset without per-method settings)."""
  preset = presets.get_preset(setup["preset"])
  mine = preset.get("method_config", {}).get(m, {})
  if not any(k in fields for k in mine):
    return {}
  bare = spec(setup, [m], preset=dict(preset, method_config={}))
  return {k: getattr(bare.configs[m], k) for k in fields if k in mine}


def out_dir(args, name: str) -> str:
  return args.out or os.path.join(
      "runs", "experiments", name + ("-quick" if args.quick else ""))


def run_one(setup: Dict[str, Any], methods, out: str, args, *,
            hparams: Optional[Dict[str, Any]] = None,
            seeds=None, **kw) -> Dict[str, Any]:
  """runner.run for one folder; resumes it if it is already there."""
  resume = os.path.exists(os.path.join(out, "config.json"))
  return runner.run(setup["config"], methods,
                    seeds if seeds is not None else setup["seeds"],
                    setup["steps"], setup["eval_every"], out,
                    preset=setup["preset"], hparams=hparams, resume=resume,
                    checkpoint_every=setup["checkpoint_every"],
                    progress=not args.no_progress,
                    plots=not args.no_plots, **kw)


def final_median(folder: str, key: str, method: str = "neuralgrok") -> str:
  """Median over seeds of ``key`` at each seed's last evaluation of
  ``method`` (3 significant digits; ``-``: no value)."""
  last: Dict[int, Any] = {}
  for r in load_run(folder)["rows"]:
    if r["method"] == method and r.get(key) is not None:
      if r["seed"] not in last or r["step"] >= last[r["seed"]][0]:
        last[r["seed"]] = (r["step"], r[key])
  vals = [v for _, v in last.values()]
  return f"{np.median(vals):.3g}" if vals else "-"


def s_per_step(folder: str, method: str = "neuralgrok") -> str:
  """``method``'s training seconds per step in that run folder."""
  per = load_run(folder)["summary"]["methods"][method]
  steps = max(per["last_step"])
  return f"{per['wall_time_s'] / steps:.3f}" if steps else "-"


def write_report(path: str, text: str) -> None:
  """Writes a script's markdown ``text`` to ``path`` and prints it."""
  with open(path, "w") as f:
    f.write(text)
  print(text, flush=True)


def print_table(dirs, title: str) -> str:
  table = markdown_table(dirs)
  print(f"\n## {title}\n\n{table}\n", flush=True)
  return table


def main_guard(fn):
  try:
    fn()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except RunInterrupted as e:
    print(f"interrupted: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
