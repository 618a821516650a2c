"""The timing, memory and hard-task parts of ``experiments/device_check.py``."""
from __future__ import annotations

import os
import time
from typing import Any, Dict

from experiments.device_parts import (PAPER_STEPS, Ctx, paper_config,
                                      time_programs)


def _program(ctx: Ctx, key, cfg, S: int, steps: int, seed_group=None):
  from experiments.bench_common import Program
  if key not in ctx.programs:
    ctx.programs[key] = Program(cfg, S, steps, seed_group)
  return ctx.programs[key]


def part_timings(ctx: Ctx) -> Dict[str, Any]:
  seeds = (2,) if ctx.dry else (1, 8, 32, 128)
  reps = 1 if ctx.dry else 3
  methods = ("adam", "rescale", "neuralgrok")
  rows, skipped = [], []
  for S in seeds:
    if ctx.budget.spare() < 60 and rows:  # keep time for the later parts
      skipped.append(dict(seeds=S, reason="global budget nearly spent"))
      continue
    cfgs = {m: paper_config("paper-add", m, ctx.dry) for m in methods}
    steps = 2 * cfgs["neuralgrok"].meta_every
    progs = {m: _program(ctx, ("paper-add", m, S), cfgs[m], S, steps)
             for m in methods}
    t = time_programs(progs, reps)
    for m in methods:
      rows.append(dict(method=m, seeds=S, s_per_step=t[m],
                       seed_steps_per_s=S / t[m],
                       paper_budget_hours=PAPER_STEPS * t[m] / 3600,
                       ratio_to_adam=t[m] / t["adam"],
                       compile_s=progs[m].compile_seconds,
                       peak_bytes=progs[m].memory["peak_bytes"]))
    ctx.log("  timings S=%d: %s" % (S, ", ".join(
        f"{m} {t[m] * 1e3:.2f} ms" for m in methods)))
  s1 = {r["method"]: r["s_per_step"] for r in rows if r["seeds"] == 1}
  for r in rows:  # per-seed cost against one seed alone
    if s1:
      r["per_seed_vs_S1"] = r["s_per_step"] / r["seeds"] / s1[r["method"]]
  by_s = {}
  for r in rows:
    by_s.setdefault(r["seeds"], 0.0)
    by_s[r["seeds"]] += PAPER_STEPS * r["s_per_step"] / 3600
  return dict(config="paper-add (a+b mod 97, T 4, c 0.2)", rows=rows,
              skipped=skipped, steps_per_call=2 * 4, repeats=reps,
              task_hours_3_methods={str(k): v for k, v in by_s.items()})


def part_amp_method(ctx: Ctx) -> Dict[str, Any]:
  S = 2 if ctx.dry else 8
  progs = {}
  for meth in ("pwl", "dense"):
    cfg = paper_config("paper-add", "neuralgrok", ctx.dry, amp_method=meth)
    key = ("paper-add", "neuralgrok", S) if meth == "pwl" else (
        "paper-add", "neuralgrok-dense", S)
    progs[meth] = _program(ctx, key, cfg, S, 2 * cfg.meta_every)
  t = time_programs(progs, 1 if ctx.dry else 3)
  return dict(seeds=S, s_per_step=t, dense_over_pwl=t["dense"] / t["pwl"],
              peak_bytes={k: p.memory["peak_bytes"] for k, p in progs.items()})


def part_seed_group(ctx: Ctx) -> Dict[str, Any]:
  S = 2 if ctx.dry else 32
  cfg = paper_config("paper-add", "neuralgrok", ctx.dry)
  steps = 2 * cfg.meta_every
  progs = {}
  for g in (None, 1) if ctx.dry else (None, 8, 1):
    key = ("paper-add", "neuralgrok", S) if g is None else (
        "paper-add", "neuralgrok", S, "group", g)
    progs[str(g or "all")] = _program(ctx, key, cfg, S, steps, g)
  t = time_programs(progs, 1 if ctx.dry else 3)
  return dict(seeds=S, s_per_step=t,
              ratio_to_all={k: v / t["all"] for k, v in t.items()})


def _no_donation(cfg, S: int, steps: int):
  """A training program compiled without donating its state, timed like
  :class:`experiments.bench_common.Program` (whose ``run_once`` and ``time``
  it inherits).  Imports lazily: jax is set up by device_check first."""
  import jax
  from ngrok_jax import train as T
  from experiments.bench_common import Program, memory_bytes

  class NoDonation(Program):

    def __init__(self):  # pylint: disable=super-init-not-called
      self.cfg, self.steps = cfg, steps
      self.state, self.data = T.init(cfg, list(range(S)))
      fn = jax.jit(lambda s, d: T.train_steps(cfg, s, d, num_steps=steps))
      t0 = time.perf_counter()
      self.compiled = fn.lower(self.state, self.data).compile()
      self.compile_seconds = time.perf_counter() - t0
      self.memory = memory_bytes(self.compiled)

  return NoDonation()


def part_donation(ctx: Ctx) -> Dict[str, Any]:
  S = 2 if ctx.dry else 8
  method = "adam" if ctx.dry else "neuralgrok"  # dry: the cheaper compile
  cfg = paper_config("paper-add", method, ctx.dry)
  steps = 2 * cfg.meta_every
  progs = {"donated": _program(ctx, ("paper-add", method, S), cfg, S,
                               steps),
           "not_donated": _no_donation(cfg, S, steps)}
  t = time_programs(progs, 1 if ctx.dry else 3)
  return dict(seeds=S, method=method, s_per_step=t,
              not_donated_over_donated=t["not_donated"] / t["donated"],
              peak_bytes={k: p.memory["peak_bytes"] for k, p in progs.items()})


def part_memory(ctx: Ctx) -> Dict[str, Any]:
  import jax
  stats = {}
  for d in jax.local_devices():
    try:
      s = d.memory_stats() or {}
    except Exception:
      s = {}
    stats[str(d)] = {k: s.get(k) for k in ("peak_bytes_in_use",
                                           "bytes_in_use", "bytes_limit")}
  compiled = {"/".join(map(str, k)): p.memory["peak_bytes"]
              for k, p in ctx.programs.items()}
  return dict(device_stats=stats, compiled_peak_bytes=compiled,
              largest_compiled=max(compiled.items(), key=lambda kv: kv[1] or 0,
                                   default=None))


def part_hard_task(ctx: Ctx) -> Dict[str, Any]:
  """NeuralGrok and Adam on a*c+b*d-e (paper-poly), chunks alternating,
  until the budget's margin; curves to CSV and PNG."""
  import jax
  import numpy as np
  from ngrok_jax import train as T
  from ngrok_jax.presets import get_preset
  ctx.programs.clear()  # free the timing programs' buffers
  # dry run: the timings' tiny paper-add programs (served by the persistent
  # compilation cache); the same code as the device's paper-poly run
  name = "paper-add" if ctx.dry else "paper-poly"
  pre = get_preset(name)
  S = 2 if ctx.dry else pre["seeds"]
  every = 2 * pre["config"]["meta_every"] if ctx.dry else pre["eval_every"]
  margin = 5 if ctx.dry else 25
  runs = {}
  for m in ("neuralgrok", "adam"):
    cfg = paper_config(name, m, ctx.dry)
    state, data = T.init(cfg, list(range(S)))
    runs[m] = dict(cfg=cfg, state=state, data=data, rows=[], train_s=0.0)
  max_steps = 2 * every if ctx.dry else pre["steps"]
  step, chunk_s = 0, 0.0
  while step < max_steps and ctx.budget.left() - margin > 2 * chunk_s:
    t_chunk = time.time()
    for m, r in runs.items():
      t0 = time.time()
      r["state"], _ = T.train_steps(r["cfg"], r["state"], r["data"],
                                    num_steps=every)
      ev = T.evaluate(r["cfg"], r["state"], r["data"])
      ev = {k: np.asarray(v) for k, v in ev.items()}
      r["train_s"] += time.time() - t0
      for s in range(S):
        r["rows"].append(dict(method=m, step=step + every, seed=s, **{
            k: float(ev[k][s]) for k in ("train/loss", "train/acc",
                                         "test/loss", "test/acc")}))
    step += every
    chunk_s = time.time() - t_chunk
  if not step:
    raise RuntimeError("no time left for one chunk of the hard task")
  rows = [row for r in runs.values() for row in r["rows"]]
  keys = ["method", "step", "seed", "train/loss", "train/acc", "test/loss",
          "test/acc"]
  with open(os.path.join(ctx.out, "hard_task_curves.csv"), "w") as f:
    f.write(",".join(keys) + "\n")
    for row in rows:
      f.write(",".join(str(row[k]) for k in keys) + "\n")
  cfg0 = runs["neuralgrok"]["cfg"]
  _plot_curves(runs, S, os.path.join(ctx.out, "hard_task_curves.png"),
               f"{cfg0.task} mod {cfg0.p} ({name}), one line per seed")
  out = dict(preset=name, seeds=S, eval_every=every, steps=step,
             device=str(jax.devices()[0]))
  for m, r in runs.items():
    final = [row for row in r["rows"] if row["step"] == step]
    hit = {}
    for row in r["rows"]:
      if row["test/acc"] >= 0.95 and row["seed"] not in hit:
        hit[row["seed"]] = row["step"]
    out[m] = dict(s_per_step=r["train_s"] / step,
                  final_test_acc=[row["test/acc"] for row in final],
                  steps_to_95={str(s): hit.get(s) for s in range(S)},
                  paper_budget_hours=PAPER_STEPS * r["train_s"] / step / 3600)
  return out


def _plot_curves(runs, S: int, path: str, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for m, r in runs.items():
    for s in range(S):
      pts = [(row["step"], row["test/acc"], row["train/acc"])
             for row in r["rows"] if row["seed"] == s]
      x = [p[0] for p in pts]
      ax[0].plot(x, [p[1] for p in pts], color="C0" if m == "neuralgrok"
                 else "C1", alpha=0.7, label=m if s == 0 else None)
      ax[1].plot(x, [p[2] for p in pts], color="C0" if m == "neuralgrok"
                 else "C1", alpha=0.7, label=m if s == 0 else None)
  for a, name in zip(ax, ("test accuracy", "train accuracy")):
    a.set_xlabel("step")
    a.set_ylabel(name)
    a.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
