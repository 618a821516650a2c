"""One prepared, time-budgeted check of the library on an accelerator.

Writes ``device_check.json`` (every part's record, rewritten after each
part, so a crash or a kill leaves what was done), ``device_check.md`` (a
summary), ``hard_task_curves.csv`` and ``hard_task_curves.png`` under
``--out``.  The parts, in order (each skipped, with the reason recorded, once
the global ``--budget-s`` is spent; an exception is recorded and the next
part runs):

* ``environment``: devices, jax/jaxlib/flax/optax versions, memory;
* ``golden``: ``tests/test_golden.py`` (the authors' trace) as a pytest
  subprocess on the default backend, in float64 where the platform has it;
* ``device_vs_cpu``: the same small float32 run on the device and on the
  host CPU, compared at stated tolerances (the check where float64 is
  missing);
* ``equalities``: seed groups (all / 2 / 1) and sharding over all local
  devices against one device, on the device;
* ``resume``: a run folder stopped after its first checkpoint and resumed
  against the uninterrupted run, on the device;
* ``timings``: Adam, rescaling and NeuralGrok (the ``paper-add`` recipe, T
  4) per step at S = 1, 8, 32, 128 seeds, as ratios within one run, seeds
  per second and the projected wall time of the paper's 300,000 steps;
* ``amp_method``: pwl against the dense amplifier; ``seed_group``: the
  ``--seed-group`` choices; ``donation``: the step with and without
  donating its state; ``memory``: the device's peak memory;
* ``equality_tests``: the seed-group, vmap and runner sharding/resume tests
  as a pytest subprocess (``-k``-selected);
* ``hard_task``: ``a*c+b*d-e mod 7`` at the ``paper-poly`` size, NeuralGrok
  and Adam in alternating chunks, for the time that is left (the parts
  before it leave it 90 s); curves exported.

GPU memory is allocated as needed (``XLA_PYTHON_CLIENT_PREALLOCATE=false``
unless set), so the pytest subprocesses fit beside this process.

``--cpu-dry-run`` runs every part at a tiny size on the CPU (the pytest
parts only collect their tests) in well under a minute: CI runs it
(``tests/test_device_check.py``).

Usage (on a lent device, from the repository root; BENCHMARK.md "Device
check" has the exact command)::

    python -m experiments.device_check --out /tmp/dc --budget-s 480
    python -m experiments.device_check --out /tmp/dc --cpu-dry-run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any, Dict

# Before jax starts: allocate GPU memory as needed (not 75% up front), so the
# pytest subprocesses fit beside this process and peak memory means something.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from experiments.device_parts import (  # noqa: E402
    Budget, Ctx, part_device_vs_cpu, part_environment, part_equalities,
    part_equality_tests, part_golden, part_resume)
from experiments.device_timing import (  # noqa: E402
    part_amp_method, part_donation, part_hard_task, part_memory,
    part_seed_group, part_timings)


# (name, function, seconds it needs at least on a device)
PARTS = [("environment", part_environment, 5),
         ("golden", part_golden, 30),
         ("device_vs_cpu", part_device_vs_cpu, 20),
         ("equalities", part_equalities, 20),
         ("resume", part_resume, 30),
         ("timings", part_timings, 90),
         ("amp_method", part_amp_method, 40),
         ("seed_group", part_seed_group, 40),
         ("donation", part_donation, 30),
         ("memory", part_memory, 1),
         ("equality_tests", part_equality_tests, 30),
         ("hard_task", part_hard_task, 60)]


def summary_markdown(rec: Dict[str, Any]) -> str:
  """The markdown summary of a record (also in the JSON's folder)."""
  env = rec["parts"].get("environment", {}).get("result") or {}
  lines = ["# Device check", "",
           f"Backend **{env.get('backend')}**, devices "
           f"{[d.get('kind') for d in env.get('devices', [])]}, jax "
           f"{env.get('jax')} (jaxlib {env.get('jaxlib')}), flax "
           f"{env.get('flax')}, ngrok_jax {env.get('ngrok_jax')}; "
           f"{'dry run (tiny sizes)' if rec['dry_run'] else 'full size'}; "
           f"budget {rec['budget_s']:.0f} s, used {rec['elapsed_s']:.0f} s.",
           "", "| part | status | seconds | note |", "|---|---|---|---|"]
  for name, p in rec["parts"].items():
    note = p.get("reason") or p.get("error") or ""
    res = p.get("result") or {}
    if "summary" in res:
      note = res["summary"]
    lines.append(f"| {name} | {p['status']} | {p.get('seconds', 0):.1f} | "
                 f"{note[:120].replace('|', '/')} |")
  tim = (rec["parts"].get("timings", {}).get("result") or {}).get("rows")
  if tim:
    lines += ["", "| method | S | ms/step | x Adam | seed-steps/s | "
              "300k steps (h) | per seed vs S=1 |", "|---|---|---|---|---|---|---|"]
    for r in tim:
      lines.append(f"| {r['method']} | {r['seeds']} | "
                   f"{r['s_per_step'] * 1e3:.2f} | {r['ratio_to_adam']:.2f} | "
                   f"{r['seed_steps_per_s']:.0f} | "
                   f"{r['paper_budget_hours']:.2f} | "
                   f"{r.get('per_seed_vs_S1', float('nan')):.3f} |")
  for name in ("amp_method", "seed_group", "donation", "hard_task"):
    res = rec["parts"].get(name, {}).get("result")
    if res:
      lines += ["", f"**{name}**: `{json.dumps(res, default=str)[:600]}`"]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", required=True, help="output folder")
  ap.add_argument("--budget-s", type=float, default=None,
                  help="global time budget in seconds (default 480; dry run "
                       "900); a part that does not fit in what is left is "
                       "skipped with the reason recorded")
  ap.add_argument("--cpu-dry-run", action="store_true",
                  help="every part at a tiny size on the CPU (CI)")
  ap.add_argument("--parts", default=None,
                  help="comma-separated subset of: " +
                       ", ".join(p[0] for p in PARTS))
  args = ap.parse_args(argv)
  names = [p[0] for p in PARTS]
  wanted = names if args.parts is None else args.parts.split(",")
  bad = [w for w in wanted if w not in names]
  if bad:
    ap.error(f"unknown part {bad[0]!r}; valid: {', '.join(names)}")
  if args.cpu_dry_run:
    os.environ["JAX_PLATFORMS"] = "cpu"
  os.makedirs(args.out, exist_ok=True)
  if args.budget_s is None:
    args.budget_s = 900.0 if args.cpu_dry_run else 480.0
  # the hard task keeps 90 s of a device run for itself
  budget = Budget(args.budget_s, reserve=0 if args.cpu_dry_run else 90)

  def log(msg):
    print(f"[{time.time() - budget.start:6.1f}s] {msg}", flush=True)

  rec = dict(dry_run=args.cpu_dry_run, budget_s=args.budget_s,
             argv=sys.argv[1:] if argv is None else list(argv),
             started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             parts={}, elapsed_s=0.0)
  ctx = Ctx(out=args.out, dry=args.cpu_dry_run, budget=budget, log=log,
            record=rec)

  def save():
    rec["elapsed_s"] = time.time() - budget.start
    with open(os.path.join(args.out, "device_check.json"), "w") as f:
      json.dump(rec, f, indent=1, default=str)
    with open(os.path.join(args.out, "device_check.md"), "w") as f:
      f.write(summary_markdown(rec))

  for name, fn, need in PARTS:
    if name not in wanted:
      continue
    need = 1 if args.cpu_dry_run else need
    if (budget.left() if name == "hard_task" else budget.spare()) < need:
      rec["parts"][name] = dict(status="skipped", reason=(
          f"budget spent: {budget.left():.0f} s left, needs ~{need} s"))
      log(f"{name}: skipped (budget)")
      save()
      continue
    log(f"{name} ...")
    t0, c0 = time.time(), time.process_time()
    try:
      res = fn(ctx)
      ok = not (isinstance(res, dict) and res.get("passed") is False)
      rec["parts"][name] = dict(status="ok" if ok else "failed", result=res)
    except Exception as e:  # crash-isolated: recorded, the next part runs
      rec["parts"][name] = dict(status="error",
                                error=f"{type(e).__name__}: {e}"[:500],
                                traceback=traceback.format_exc()[-3000:])
    rec["parts"][name]["seconds"] = time.time() - t0
    rec["parts"][name]["cpu_seconds"] = time.process_time() - c0
    log(f"{name}: {rec['parts'][name]['status']} "
        f"({rec['parts'][name]['seconds']:.1f} s)")
    save()
  save()
  print(summary_markdown(rec))
  return 0


if __name__ == "__main__":
  sys.exit(main())
