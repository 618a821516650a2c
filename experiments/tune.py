"""Tuned baselines: every method at its own best settings, held-out seeds.

Per method, its learning rate and weight decay (and lamb for GrokFast) are
swept over a small grid.  By default (``--seeding shared``) every cell runs
on the same tuning seeds (1000, 1001, ...; one run folder per cell,
``grid/<method>/cell-<k>``), so cells differ by their settings only and no
cell is chosen by its seeds' luck; ``--seeding distinct`` (the earlier
protocol) gives every cell its own seeds and runs the whole grid as ONE
vmapped program (the cells are per-seed hyperparameter arrays).  Each
method's best cell is the one with the smallest median steps to 95% test
accuracy over its tuning seeds (a seed that never reached 95% counts as
beyond the budget; ties: more seeds reaching 95%, then the higher median
final test accuracy).
Every method then runs again at its chosen cell on fresh seeds that no grid
used (the held-out seeds 0..n-1, the same for every method, so the methods
pair by seed), and the held-out results are what the tables report.

    python -m experiments.tune --quick --task a+b
    python -m experiments.tune --quick --task a*b --methods adamw,orthograd \\
        --tune-seeds 2 --heldout-seeds 5 --grid lr=1e-3,3e-3 --grid wd=0.3,1
    python -m experiments.tune --task a+b          # paper size (a GPU)
    python -m experiments.tune --quick --methods adamw,my_module:my_opt

A method given as ``module:factory`` is a user's own optax optimizer
(:func:`ngrok_jax.register_method`; docs/training.md), tuned on its
factory's ``grid`` (else the default user grid) beside the library's.

``--out`` (default runs/experiments/tune[-quick]/<task>) holds ``grid/<method>``
(one run folder per method: its grid), ``heldout`` (one run folder: every
method at its chosen cell, the held-out seeds), ``tune.json`` (grid, every
cell's result, the chosen cells) and ``TUNE.md`` (the tables).  Re-running
the same command resumes or reuses finished folders.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from experiments import _common as C
from ngrok_jax import runner, stats
from ngrok_jax.registry import RECORDS, get_method, method_from_source
from ngrok_jax.report import markdown_table
from ngrok_jax.results import atomic_write

#: Methods tuned by default: every method with a tuning grid in its record
#: (all but the frozen amplifier, which needs a trained one).
DEFAULT_METHODS = tuple(r.name for r in RECORDS if r.tunable)
#: First seed of the tuning grids: far from the held-out seeds 0..n-1.
TUNE_SEED0 = 1000


def default_grid(method: str) -> Dict[str, Tuple[float, ...]]:
  """The method's grid, from its record (:mod:`ngrok_jax.registry`):
  learning rate x weight decay (x lamb for GrokFast).

  Args:
    method: a tunable method's name.

  Returns:
    ``{name: values}`` (a copy).

  Raises:
    ValueError: for an unknown method or one without a grid.
  """
  rec = get_method(method)
  if not rec.tunable:
    raise ValueError(f"method {method!r} has no tuning grid")
  return {k: tuple(v) for k, v in rec.grid.items()}


def method_names_of(methods: Sequence[str]) -> List[str]:
  """The names of ``methods``: a registered tunable method as it is, a
  user's ``module:factory`` imported and registered (its factory's name).

  Raises:
    ValueError: an unknown or untunable method, or a ``module:factory``
      that does not import or keep the factory's contract (one line).
  """
  out = []
  for m in methods:
    name = method_from_source(m).name if ":" in m else m
    try:
      ok = get_method(name).tunable
    except ValueError:
      ok = False
    if not ok:
      raise ValueError(f"unknown or untunable method {m!r}; valid: "
                       f"{', '.join(DEFAULT_METHODS)}, or module:factory")
    out.append(name)
  return out


def cells_of(grid: Mapping[str, Sequence[float]]) -> List[Dict[str, float]]:
  """Every combination of the grid's values (the first name slowest)."""
  names = list(grid)
  return [dict(zip(names, map(float, vals)))
          for vals in itertools.product(*(grid[n] for n in names))]


#: How the grid's cells get their tuning seeds (``--seeding``).
SEEDINGS = ("shared", "distinct")


def grid_seeds(cells: Sequence[Mapping[str, float]], tune_seeds: int,
               seeding: str = "distinct"
               ) -> Tuple[List[int], Dict[str, List[float]]]:
  """Seeds and per-seed hyperparameters of a grid, cell-major: cell ``c``
  gets seeds ``TUNE_SEED0 + j`` (``seeding="shared"``: the same in every
  cell) or ``TUNE_SEED0 + c * tune_seeds + j`` (``"distinct"``), ``j <
  tune_seeds``."""
  if seeding not in SEEDINGS:
    raise ValueError(f"seeding must be one of {', '.join(SEEDINGS)}, got "
                     f"{seeding!r}")
  per_cell = tune_seeds if seeding == "distinct" else 0
  seeds = [TUNE_SEED0 + c * per_cell + j for c in range(len(cells))
           for j in range(tune_seeds)]
  hp = {k: [float(cells[i // tune_seeds][k]) for i in range(len(seeds))]
        for k in cells[0]}
  return seeds, hp


def _median_censored(steps: Sequence, budget: int) -> float:
  """Median steps with "never" counted as beyond the budget (inf)."""
  vals = np.array([math.inf if s is None else s for s in steps], float)
  med = float(np.median(vals))
  return med if med <= budget else math.inf


def rank_cells(summary: Mapping[str, Any], method: str,
               cells: Sequence[Mapping[str, float]], tune_seeds: int
               ) -> List[Dict[str, Any]]:
  """Every cell's result on its tuning seeds, best first: smallest median
  steps to 95% (never = beyond the budget), then most seeds at 95%, then
  the highest median final test accuracy, then the grid's order."""
  per = summary["methods"][method]
  budget = summary["steps"]
  out = []
  for c, cell in enumerate(cells):
    idx = range(c * tune_seeds, (c + 1) * tune_seeds)
    steps = [per["steps_to_95"][i] for i in idx]
    final = [per["final_test_acc"][i] for i in idx]
    final = [np.nan if f is None else f for f in final]
    out.append(dict(cell=dict(cell), index=c,
                    seeds=[per["seeds"][i] for i in idx], steps_to_95=steps,
                    median=_median_censored(steps, budget),
                    success=sum(s is not None for s in steps),
                    final_acc=float(np.nanmedian(final)) if np.isfinite(
                        final).any() else math.nan))
  key = lambda r: (r["median"], -r["success"],  # noqa: E731
                   -(r["final_acc"] if math.isfinite(r["final_acc"]) else -1),
                   r["index"])
  return sorted(out, key=key)


def parse_grid(items: Sequence[str]) -> Dict[str, Tuple[float, ...]]:
  """``["lr=1e-3,3e-3", "wd=0,1"]`` -> ``{"lr": (1e-3, 3e-3), ...}``."""
  out: Dict[str, Tuple[float, ...]] = {}
  for item in items or ():
    name, eq, vals = item.partition("=")
    name = name.strip()
    if not eq or name not in ("lr", "wd", "lamb"):
      raise ValueError(f"--grid takes NAME=v1,v2,... with NAME lr, wd or "
                       f"lamb, got {item!r}")
    try:
      out[name] = tuple(float(v) for v in vals.split(","))
    except ValueError:
      raise ValueError(f"--grid {name}: numbers separated by commas, got "
                       f"{vals!r}") from None
  return out


def widened(grid: Mapping[str, Sequence[float]], cell: Mapping[str, float]
            ) -> Dict[str, Tuple[float, ...]]:
  """The grid, each axis whose chosen value sits on its edge extended by
  one value past that edge (the ratio of the two outermost values on that
  side; a lower edge at 0 is the axis's natural end and is kept).  Equal
  to ``grid`` when no chosen value is on an edge it can pass.

  Args:
    grid: ``{name: values}`` (each axis sorted ascending).
    cell: the chosen cell.

  Returns:
    The widened grid.
  """
  out = {}
  for k, vals in grid.items():
    v = sorted(float(x) for x in vals)
    if len(v) >= 2 and cell[k] == v[-1] and v[-2] > 0:
      v = v + [v[-1] * v[-1] / v[-2]]
    elif len(v) >= 2 and cell[k] == v[0] and v[0] > 0:
      v = [v[0] * v[0] / v[1]] + v
    out[k] = tuple(v)
  return out


def _run_cells(setup, m, cells, first, tune_seeds, gdir, over, args):
  """Runs ``cells`` (cell indices from ``first``) of method ``m`` in
  ``gdir``: one program over every cell with their own seeds
  (``args.seeding == "distinct"``) or one run folder per cell,
  ``gdir/cell-<index>``, on the shared seeds; returns the per-seed summary
  (``seeds``, ``steps_to_95``, ``final_test_acc``, cell-major)."""
  seeding = getattr(args, "seeding", "distinct")
  seeds, hp = grid_seeds(cells, tune_seeds, seeding)
  if get_method(m).uses_amplifier:  # their defaults follow lr and wd per seed
    hp.update(lookahead_lr=list(hp["lr"]), meta_wd=list(hp["wd"]))
  if seeding == "distinct":
    seeds = [x + first * tune_seeds for x in seeds]
    jobs = [(gdir, seeds, hp)]
  else:
    jobs = [(os.path.join(gdir, f"cell-{first + c}"),
             seeds[c * tune_seeds:(c + 1) * tune_seeds],
             {k: v[c * tune_seeds:(c + 1) * tune_seeds] for k, v in hp.items()})
            for c in range(len(cells))]
  per: Dict[str, list] = {k: [] for k in ("seeds", "steps_to_95",
                                          "final_test_acc")}
  for d, sd, h in jobs:
    summary = runner.run(
        setup["config"], [m], sd, setup["steps"], setup["eval_every"],
        d, preset=setup["preset"], method_overrides=over, hparams=h,
        resume=os.path.exists(os.path.join(d, "config.json")),
        checkpoint_every=setup["checkpoint_every"],
        stop_after=args.stop_after, progress=not args.no_progress,
        plots=not args.no_plots)
    for k in per:
      per[k] += list(summary["methods"][m][k])
  return per


def _fmt_cell(cell: Mapping[str, float]) -> str:
  return ", ".join(f"{k} {v:g}" for k, v in cell.items())


def _fmt_steps(v: float) -> str:
  return "never" if not math.isfinite(v) else f"{v:g}"


def _json_safe(x):
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  return x


def tables(result: Mapping[str, Any], heldout_dir: str,
           reference: str) -> str:
  """TUNE.md: the grids, the chosen cells, the held-out table and the
  paired comparison with ``reference`` (the best-tuned AdamW)."""
  lines = [f"# Tuned on {result['task']} mod {result['p']}: "
           f"{result['tune_seeds']} tuning seeds per cell "
           f"({result.get('seeding', 'distinct')}), "
           f"{len(result['heldout_seeds'])} held-out seeds "
           f"({', '.join(map(str, result['heldout_seeds']))}), "
           f"{result['steps']} steps", "",
           "## Grid and chosen cell (tuning seeds; median steps to 95%, "
           "never = beyond the budget)", "",
           "| method | grid | chosen cell | its median | its 95% success | "
           "runner-up | its median |", "|---|---|---|---|---|---|---|"]
  for m, r in result["methods"].items():
    grid = "; ".join(f"{k} {'/'.join(f'{v:g}' for v in vals)}"
                     for k, vals in r["grid"].items())
    best, second = r["ranked"][0], (r["ranked"][1:2] or [None])[0]
    lines.append(
        f"| {m} | {grid} | {_fmt_cell(best['cell'])}"
        f"{' (edge)' if r.get('on_edge') else ''} | "
        f"{_fmt_steps(best['median'])} | {best['success']}/"
        f"{result['tune_seeds']} | "
        f"{_fmt_cell(second['cell']) if second else '-'} | "
        f"{_fmt_steps(second['median']) if second else '-'} |")
  lines += ["", "## Held-out seeds, each method at its chosen cell", "",
            markdown_table([heldout_dir]), ""]
  if reference in result["methods"]:
    lines += [f"## Paired with the best-tuned {reference} (held-out seeds; "
              f"differences {reference} minus method: positive = the method "
              f"is faster)", "",
              stats.paired_markdown(heldout_dir, reference), ""]
  return "\n".join(lines)


def tune(setup: Dict[str, Any], task: str, methods: Sequence[str],
         grids: Mapping[str, Mapping[str, Sequence[float]]], tune_seeds: int,
         heldout_seeds: int, out: str, args, reference: str = "adamw"
         ) -> Dict[str, Any]:
  """Runs every method's grid, picks its cell, runs the held-out seeds;
  writes tune.json and TUNE.md into ``out`` and returns the result."""
  if tune_seeds < 1 or heldout_seeds < 1:
    raise ValueError("--tune-seeds and --heldout-seeds must be >= 1")
  names = method_names_of(methods)  # a user's module:factory: its name
  grids = {n: grids[m] if m in grids else grids[n]
           for m, n in zip(methods, names)}
  methods = names
  result: Dict[str, Any] = dict(
      task=task, p=C.spec(setup, methods).configs[methods[0]].p,
      steps=setup["steps"],
      tune_seeds=tune_seeds, heldout_seeds=list(range(heldout_seeds)),
      seeding=getattr(args, "seeding", "distinct"),
      methods={}, **{k: v for k, v in setup["config"].items() if k == "rule"})
  chosen: Dict[str, Dict[str, Any]] = {}
  for m in methods:
    grid = {k: tuple(v) for k, v in grids[m].items()}
    cells = cells_of(grid)
    if TUNE_SEED0 < heldout_seeds:
      raise ValueError("the held-out seeds would overlap the grid's")
    # the grid's (per-seed) values replace the preset's for this method: a
    # grid field's config value is the one it has without m's setting
    over = {m: C.without_preset_setting(setup, m, grid)}
    per = _run_cells(setup, m, cells, 0, tune_seeds,
                     os.path.join(out, "grid", m), over, args)
    per = {k: list(per[k]) for k in ("seeds", "steps_to_95", "final_test_acc")}
    summ = dict(steps=setup["steps"], methods={m: per})
    ranked = rank_cells(summ, m, cells, tune_seeds)
    rounds = 0
    while rounds < getattr(args, "widen", 0):
      wider = widened(grid, ranked[0]["cell"])
      new = [c for c in cells_of(wider) if c not in cells]
      if not new:
        break
      rounds += 1
      got = _run_cells(setup, m, new, len(cells), tune_seeds, os.path.join(
          out, "grid", f"{m}-widen{rounds}"), over, args)
      for k in per:
        per[k] += list(got[k])
      grid, cells = wider, cells + new
      ranked = rank_cells(summ, m, cells, tune_seeds)
    edge = widened(grid, ranked[0]["cell"]) != grid
    result["methods"][m] = dict(grid={k: list(v) for k, v in grid.items()},
                                ranked=ranked, grid_dir=os.path.join(
                                    out, "grid", m), widen_rounds=rounds,
                                on_edge=edge)
    chosen[m] = dict(ranked[0]["cell"])
    print(f"{m}: chose {_fmt_cell(ranked[0]['cell'])} (median "
          f"{_fmt_steps(ranked[0]['median'])}, {ranked[0]['success']}/"
          f"{tune_seeds} at 95%{'; on the grid edge' if edge else ''})",
          flush=True)
  hdir = os.path.join(out, "heldout")
  summary = runner.run(
      setup["config"], list(methods), heldout_seeds, setup["steps"],
      setup["eval_every"], hdir, preset=setup["preset"],
      method_overrides=chosen,
      resume=os.path.exists(os.path.join(hdir, "config.json")),
      checkpoint_every=setup["checkpoint_every"], stop_after=args.stop_after,
      progress=not args.no_progress, plots=not args.no_plots)
  for m in methods:
    result["methods"][m]["heldout"] = {
        k: summary["methods"][m][k] for k in
        ("steps_to_95", "steps_to_99", "final_test_acc")}
    result["methods"][m]["chosen"] = {**C.preset_setting(setup, m, grids[m]),
                                      **chosen[m]}
  atomic_write(os.path.join(out, "tune.json"),
               json.dumps(_json_safe(result), indent=1) + "\n")
  md = tables(result, hdir, reference)
  atomic_write(os.path.join(out, "TUNE.md"), md)
  return result


def fair_table(out_dirs: Sequence[str], reference: str = "adamw") -> str:
  """One markdown table over the tuning folders ``out_dirs`` (one per
  task): per method and task, the held-out steps to 95% (median over the
  seeds that reached it, and how many did), the training seconds per step
  (all held-out seeds together), and the speed-up against ``reference``:
  the geometric mean over the seeds where both reached 95% of
  ``reference`` steps / method steps (> 1: the method is faster), with the
  number of such seeds."""
  header = ["method"]
  per_task = []
  for d in out_dirs:
    with open(os.path.join(d, "tune.json")) as f:
      res = json.load(f)
    with open(os.path.join(d, "heldout", "summary.json")) as f:
      summ = json.load(f)
    per_task.append((res, summ))
    t = res["task"]
    header += [f"{t}: 95% median (reached)", f"{t}: s/step",
               f"{t}: speed-up vs {reference}"]
  methods: List[str] = []
  for res, _ in per_task:
    methods += [m for m in res["methods"] if m not in methods]
  rows = []
  for m in methods:
    row = [m]
    for res, summ in per_task:
      if m not in summ["methods"]:
        row += ["-"] * 3
        continue
      per = summ["methods"][m]
      steps = per["steps_to_95"]
      ok = [s for s in steps if s is not None]
      med = f"{np.median(ok):g}" if ok else "never"
      row.append(f"{med} ({len(ok)}/{len(steps)})")
      run = max(per["last_step"]) if per.get("last_step") else res["steps"]
      wall = per.get("wall_time_s")
      row.append(f"{wall / run:.3f}" if wall and run else "-")
      ref = summ["methods"].get(reference, {}).get("steps_to_95")
      if m == reference or ref is None:
        row.append("1" if m == reference else "-")
        continue
      r = [a / b for a, b in zip(ref, steps) if a is not None and
           b is not None]
      row.append(f"{math.exp(np.mean(np.log(r))):.2f}x (n {len(r)})" if r
                 else "- (n 0)")
    rows.append(row)
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def main():
  p = C.parser(__doc__)
  p.add_argument("--task", default="a+b", help="task (default a+b)")
  p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                 help="comma-separated methods to tune (a user's optax "
                 "optimizer: module:factory)")
  p.add_argument("--grid", action="append", default=[], metavar="NAME=V,..",
                 help="replace one axis of every method's grid (lr, wd or "
                      "lamb; repeatable), e.g. --grid lr=1e-3,3e-3")
  p.add_argument("--tune-seeds", type=int, default=3,
                 help="seeds per grid cell (default 3)")
  p.add_argument("--seeding", default="shared", choices=SEEDINGS,
                 help="shared (default): the same tuning seeds in every "
                 "cell, one run folder per cell; distinct: each cell its "
                 "own seeds, the grid as one vmapped program (the protocol "
                 "of the tuning folders before 2026-12-08)")
  p.add_argument("--heldout-seeds", type=int, default=5,
                 help="fresh seeds for the chosen cells (default 5)")
  p.add_argument("--stop-after", type=int, default=3,
                 help="stop a program once every seed has held 99%% test "
                      "accuracy for this many evaluations (0: never)")
  p.add_argument("--widen", type=int, default=0, metavar="N",
                 help="up to N rounds per method: while its chosen cell is "
                 "on the grid's edge, run the cells one value past it")
  p.add_argument("--reference", default="adamw",
                 help="method the others are paired with (default adamw)")
  C.add_rule_flag(p)
  p.add_argument("--table", nargs="+", metavar="DIR", default=None,
                 help="no training: print the fair table of these tuning "
                      "folders (one per task)")
  args = p.parse_args()
  if args.table:
    print(fair_table(args.table, args.reference))
    return
  methods = method_names_of(
      [m.strip() for m in args.methods.split(",") if m.strip()])
  if not methods:
    raise ValueError(f"--methods names no method; valid: "
                     f"{', '.join(DEFAULT_METHODS)}, or module:factory")
  setup = C.task_setup(args.task, args)  # (checks the task first)
  C.set_rule(setup, methods, args.rule)  # (checked before any write)
  override = parse_grid(args.grid)
  grids = {m: {k: v for k, v in {**default_grid(m), **override}.items()
               if k != "lamb" or "lamb" in default_grid(m)} for m in methods}
  out = args.out or os.path.join(C.out_dir(args, "tune"),
                                 args.task.replace("*", "x"))
  args.stop_after = args.stop_after or None
  tune(setup, args.task, methods, grids, args.tune_seeds, args.heldout_seeds,
       out, args, args.reference)
  with open(os.path.join(out, "TUNE.md")) as f:
    print(f.read())


if __name__ == "__main__":
  C.main_guard(main)
