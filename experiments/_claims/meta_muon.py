"""Claims and tables of "Meta-training the rule that starts at Muon"
(RESULTS.md): the learning curve of the unperturbed rule at fresh seeds of
the training tasks against its own start (tuned Muon), and the cost
(``experiments/meta_train.py --placement muon --synchronized``, exported
to ``experiments/results/meta_train_muon``)."""
import functools
import json

import numpy as np

from experiments._claims.base import CLAIMS, TABLES, Claim, Table
from ngrok_jax import stats
from ngrok_jax.tables import md_table

MM = "meta_train_muon"


@functools.lru_cache(maxsize=None)
def _rows(path):
  with open(path) as f:
    return tuple(json.loads(line) for line in f if line.strip())


def _probes(D):
  return [r for r in _rows(D.path(f"{MM}/metrics.jsonl"))
          if "probe_steps_to_95" in r]


def _steps(D):
  return [r for r in _rows(D.path(f"{MM}/metrics.jsonl")) if "meta_loss" in r]


def _config(D):
  return D.json(f"{MM}/meta_config.json")


def _diff(r, start):
  """Paired differences (this probe minus the start) of steps to 95%."""
  return stats.paired_differences(r["probe_steps_to_95"],
                                  start["probe_steps_to_95"])


def _fmt(d):
  if d["lo"] is None:
    return "-"
  return f"{d['mean']:+.0f} [{d['lo']:+.0f}, {d['hi']:+.0f}] (n {d['n_both']})"


def curve_table(D):
  """Per probe: outer step, meta updates so far, median steps to 95% over
  the probe runs (reached/runs), the paired difference from the start
  (mean with its 95% t-interval; negative: sooner), the mean final
  test accuracy of the probe runs and the meta-objective (mean held-out
  loss per inner step) over the outer steps since the previous probe."""
  pr = _probes(D)
  st = _steps(D)
  acc = int(_config(D).get("accumulate", 1))
  rows = []
  for i, r in enumerate(pr):
    lo = pr[i - 1]["outer_step"] if i else -1
    ml = [x["meta_loss"] for x in st if lo < x["outer_step"] <= r["outer_step"]]
    s = [x for x in r["probe_steps_to_95"] if x is not None]
    rows.append([r["outer_step"], r["outer_step"] // acc,
                 f"{np.median(s):.0f} ({len(s)}/{len(r['probe_steps_to_95'])})"
                 if s else "never",
                 "start" if r is pr[0] else _fmt(_diff(r, pr[0])),
                 f"{r['probe_test_acc']:.3f}",
                 f"{np.mean(ml):.3f}" if ml else "-"])
  return md_table(["outer step", "meta updates", "median steps to 95% "
                   "(reached)", "minus the start: mean [95% CI]",
                   "mean final test accuracy", "meta loss since the last "
                   "probe"], rows)


def _cost(D):
  st = _steps(D)
  acc = int(_config(D).get("accumulate", 1))
  cpu = sum(r["cpu_seconds"] for r in st) / 3600
  return (f"{len(st)} outer steps ({len(st) // acc} meta updates) in "
          f"{cpu:.2f} CPU-hours of outer steps, "
          f"{np.median([r['seconds'] for r in st[2:]]):.1f} s per outer step "
          "(median, one core)")


def _last(D):
  pr = _probes(D)
  return f"{_fmt(_diff(pr[-1], pr[0]))} steps"


TABLES.append(Table("rule.muon_meta.curve", (MM,), curve_table))
CLAIMS.append(Claim("rule.muon_meta.cost", (MM,), _cost))
CLAIMS.append(Claim("rule.muon_meta.last", (MM,), _last))


# ------------------------------- the verdict's baselines, re-tuned (shared)
#: Baselines re-tuned with the same tuning seeds in every cell, per
#: held-out task (``experiments.tune --seeding shared``).
SHARED = {"a/b": "tune_shared/a_div_b"}


def shared_cells_table(D):
  """Per task and method: the grid, the chosen cell, its median steps to
  95% over the shared tuning seeds (never = beyond the budget) with how
  many reached it, and the runner-up cell."""
  rows = []
  for task, rel in SHARED.items():
    res = D.json(f"{rel}/tune.json")
    for m, r in res["methods"].items():
      grid = "; ".join(f"{k} {'/'.join(f'{v:g}' for v in vals)}"
                       for k, vals in r["grid"].items())
      cell = lambda c: ", ".join(f"{k} {v:g}" for k, v in c.items())
      med = lambda x: "never" if x is None else f"{x:g}"
      best, second = r["ranked"][0], r["ranked"][1]
      rows.append([task, m, grid, cell(best["cell"]),
                   f"{med(best['median'])} ({best['success']}/"
                   f"{res['tune_seeds']})", cell(second["cell"]),
                   med(second["median"])])
  return md_table(["task", "method", "grid", "chosen cell",
                   "its median (reached)", "runner-up", "its median"], rows)


def _shared_fair(D):
  from experiments.tune import fair_table
  return fair_table([D.path(r) for r in SHARED.values()], "muon")


TABLES.append(Table("rule.shared.cells", tuple(SHARED.values()),
                    shared_cells_table))
TABLES.append(Table("rule.shared.fair", tuple(SHARED.values()), _shared_fair))
