"""Before meta-training the orthogonalised rule: how long its inner runs
must be, and whether the gradient estimate rises above noise.

Two measurements on the meta-training inner problem (``ngrok_jax.rule_tasks``:
the training tasks ``--tasks`` at the primes ``--primes``, a fresh
transformer, split and batch stream per run), both at the rule's
initialisation (``--placement muon``: zero output layer, so the rule **is**
the ``muon`` method at ``--lr`` and ``--wd``):

1. **Horizon.**  ``--horizon-seeds`` unperturbed runs per task and prime,
   ``--horizon-steps`` steps, test accuracy every ``--every`` steps: the
   steps to 95% per run (``ngrok_jax.rule_tasks.steps_to``; the test split
   is read here only, never by meta-training).  The meta-training horizon
   should be at least twice their median.
2. **Signal to noise.**  For every truncation length in ``--truncations``
   and rule size in ``--hidden``: ``ngrok_jax.pes.measure_snr`` over
   ``--snr-steps`` truncations of ``--particles`` persistent PES particles
   (inner runs of ``--snr-horizon`` steps, default twice the measured
   median), at the initial rule.  ``snr`` is for the particles' units
   (pairs); ``units_for_snr1`` = units / snr is how many pairs one outer
   step would need for a ratio of 1 (``snr`` scales with the units).

Every finished row is appended to ``--out``/``rows.jsonl`` at once and a
rerun skips the rows already there (a killed run loses at most one row);
``README.md`` holds the generated tables.

    python -m experiments.rule_snr --out experiments/results/rule_snr
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

import jax
import numpy as np

from ngrok_jax import init_rule, pes
from ngrok_jax import rule_tasks as rt
from ngrok_jax.learned_rule import muon_config
from ngrok_jax.results import atomic_write

TRAIN_TASKS = ("a+b", "a-b", "a*b", "a+b-a*b")


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
  a = p.add_argument
  a("--out", required=True, help="output folder (resumed if it exists)")
  a("--tasks", default=",".join(TRAIN_TASKS))
  a("--primes", default="43,53")
  a("--dim", type=int, default=64)
  a("--lr", type=float, default=1e-2, help="the rule's (Muon's) lr")
  a("--wd", type=float, default=1.0, help="the rule's (Muon's) weight decay")
  a("--horizon-seeds", type=int, default=3)
  a("--horizon-steps", type=int, default=1500)
  a("--every", type=int, default=50)
  a("--particles", type=int, default=16)
  a("--truncations", default="50,200")
  a("--hidden", default="2,8,32", help="rule MLP sizes (one layer each)")
  a("--snr-steps", type=int, default=12)
  a("--snr-horizon", type=int, default=0,
    help="inner run length of the SNR particles (0: twice the median "
    "steps to 95%% measured in part 1, rounded up to 100)")
  a("--seed", type=int, default=0)
  return p


def _ints(s: str) -> List[int]:
  try:
    out = [int(x) for x in s.split(",") if x.strip()]
  except ValueError:
    raise ValueError(f"expected comma-separated integers, got {s!r}") from None
  if not out or min(out) < 1:
    raise ValueError(f"expected positive integers, got {s!r}")
  return out


def _check(args) -> Dict[str, Any]:
  tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
  if not tasks:
    raise ValueError("--tasks names no task")
  inner = {p: rt.ArithConfig(p=p, tasks=tasks, dim=args.dim)
           for p in _ints(args.primes)}
  if args.particles < 8 or args.particles % 2:
    raise ValueError("--particles must be even and >= 8 (4 PES pairs)")
  if not (args.lr > 0 and args.wd >= 0):
    raise ValueError("--lr must be > 0 and --wd >= 0")
  for n in ("horizon_seeds", "horizon_steps", "every", "snr_steps"):
    if getattr(args, n) < 1:
      raise ValueError(f"--{n.replace('_', '-')} must be >= 1")
  return dict(tasks=tasks, inner=inner, truncations=_ints(args.truncations),
              hidden=_ints(args.hidden))


def _rows(path: str) -> List[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _append(path: str, row: dict) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")
    f.flush()
    os.fsync(f.fileno())


def horizon_rows(args, cf, done: List[dict], path: str) -> List[dict]:
  """Part 1: steps to 95% of the initial rule per task and prime."""
  rule = muon_config(lr=args.lr, wd=args.wd, hidden=(8,))
  theta = init_rule(rule, jax.random.PRNGKey(args.seed))
  seeds = [1000 + args.seed * 100 + s for s in range(args.horizon_seeds)]
  out = [r for r in done if r["part"] == "horizon"]
  n = len(seeds)
  for p, inner in cf["inner"].items():
    if any(r["p"] == p for r in out):
      continue
    t0 = time.time()  # every task's seeds in one vmapped program
    res = rt.probe(inner, rule, theta, seeds * len(cf["tasks"]),
                   steps=args.horizon_steps, every=args.every,
                   task_index=np.repeat(np.arange(len(cf["tasks"])), n))
    sec = round(time.time() - t0, 1)
    hit = rt.steps_to(res, 0.95)
    for i, task in enumerate(cf["tasks"]):
      row = dict(part="horizon", p=p, task=task, seeds=seeds,
                 steps_to_95=hit[i * n:(i + 1) * n],
                 final_test_acc=[float(x) for x in
                                 res["test_acc"][i * n:(i + 1) * n]],
                 seconds_all_tasks=sec)
      _append(path, row)
      out.append(row)
      print(json.dumps(row), flush=True)
  return out


def snr_rows(args, cf, horizon: int, done: List[dict], path: str
             ) -> List[dict]:
  """Part 2: the PES estimate's signal to noise per truncation and size."""
  out = [r for r in done if r["part"] == "snr"]
  p = min(cf["inner"])
  for k in cf["truncations"]:
    for h in cf["hidden"]:
      if any(r["truncation"] == k and r["hidden"] == h for r in out):
        continue
      rule = muon_config(lr=args.lr, wd=args.wd, hidden=(h,))
      theta = init_rule(rule, jax.random.PRNGKey(args.seed))
      outer = pes.OuterConfig(num_particles=args.particles, truncation=k,
                              horizon=horizon, num_groups=len(cf["tasks"]))
      task = rt.arith_task(cf["inner"][p], rule)
      key = jax.random.PRNGKey(args.seed + 1)
      t0 = time.time()
      first = pes.measure_snr(outer, task, theta, key, steps=1)
      compile_s = time.time() - t0
      t0 = time.time()
      r = pes.measure_snr(outer, task, theta, jax.random.fold_in(key, 1),
                          steps=args.snr_steps, particles=first["particles"])
      sec = time.time() - t0
      size = int(sum(np.size(x) for x in jax.tree.leaves(theta)))
      row = dict(part="snr", p=p, truncation=k, hidden=h, rule_params=size,
                 particles=args.particles, units=r["units"],
                 snr=r["snr"], snr_se=r["snr_se"], ratio=r["ratio"],
                 signal=r["signal"],
                 noise=r["noise"],
                 units_for_snr1=(r["units"] / r["snr"] if r["snr"] > 0
                                 else None),
                 horizon=horizon, steps=args.snr_steps,
                 seconds=round(sec, 1), compile_seconds=round(compile_s, 1),
                 ms_per_particle_step=round(
                     1e3 * sec / (args.snr_steps * args.particles * k), 2))
      _append(path, row)
      out.append(row)
      print(json.dumps(row), flush=True)
  return out


def tables(hz: List[dict], sn: List[dict]) -> str:
  lines = ["| prime | task | steps to 95% per seed | final test acc |",
           "|---|---|---|---|"]
  steps = []
  for r in hz:
    steps += [s if s is not None else np.inf for s in r["steps_to_95"]]
    lines.append(f"| {r['p']} | {r['task']} | {r['steps_to_95']} | "
                 + ", ".join(f"{a:.3f}" for a in r["final_test_acc"]) + " |")
  med = float(np.median(steps)) if steps else None
  reached = sum(np.isfinite(steps))
  lines += ["", f"Median steps to 95%: {med} ({reached} of {len(steps)} runs "
            "reached 95%; a run that did not counts as infinite)", "",
            "| truncation | hidden | rule params | units | SNR (s.e.) | naive "
            "ratio "
            "| units for SNR 1 | ms / particle-step |",
            "|---|---|---|---|---|---|---|---|"]
  for r in sorted(sn, key=lambda r: (r["truncation"], r["hidden"])):
    u1 = ("-" if r["units_for_snr1"] is None
          else f"{r['units_for_snr1']:.0f}")
    lines.append(f"| {r['truncation']} | {r['hidden']} | {r['rule_params']} "
                 f"| {r['units']} | {r['snr']:.3f} ({r['snr_se']:.3f}) | "
                 f"{r['ratio']:.3f} | {u1} "
                 f"| {r['ms_per_particle_step']} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parser().parse_args(argv)
  try:
    cf = _check(args)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  os.makedirs(args.out, exist_ok=True)
  cfg_path = os.path.join(args.out, "snr_config.json")
  saved = {k: v for k, v in vars(args).items() if k != "out"}
  if os.path.exists(cfg_path):
    with open(cfg_path) as f:
      if json.load(f) != saved:
        print(f"error: {args.out} holds a measurement with other settings",
              file=sys.stderr)
        return 2
  else:
    atomic_write(cfg_path, json.dumps(saved, indent=1))
  path = os.path.join(args.out, "rows.jsonl")
  done = _rows(path)
  hz = horizon_rows(args, cf, done, path)
  steps = [s for r in hz for s in r["steps_to_95"]]
  finite = [s if s is not None else 2 * args.horizon_steps for s in steps]
  horizon = args.snr_horizon or max(
      200, int(np.ceil(2 * np.median(finite) / 100.0)) * 100)
  sn = snr_rows(args, cf, horizon, done, path)
  atomic_write(os.path.join(args.out, "README.md"),
               "# The orthogonalised rule before meta-training\n\n"
               "Made by `python -m experiments.rule_snr "
               + " ".join(f"--{k.replace('_', '-')} {v}"
                          for k, v in saved.items()) +
               f" --out {args.out}` (see the script's docstring).\n\n"
               + tables(hz, sn))
  print(tables(hz, sn))
  return 0


if __name__ == "__main__":
  sys.exit(main())
