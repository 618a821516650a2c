"""Paired statistics of run folders: AUC and per-seed paired differences.

A seed fixes the model init, data split and batch order, so the methods of a
run are paired by seed.  Pure numpy: 95% intervals use a t-quantile table."""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ngrok_jax._src.core.metrics import steps_to_threshold
from ngrok_jax._src.optim.registry import DEFAULT_METHOD
from ngrok_jax._src.analysis.results import (load_run, row_sweep, seed_curve,
                                             sweep_label)
from ngrok_jax._src.core.tables import md_table

__all__ = ["T975", "t975", "auc", "paired_differences", "paired_auc",
           "seed_curve", "paired_table", "paired_markdown", "collapses",
           "common_window", "COLLAPSE_BELOW", "window_markdown"]

#: A collapse: test accuracy below this after first reaching 95%.
COLLAPSE_BELOW = 0.5

#: Two-sided 95% t quantiles t_{0.975, df} for df = 1..30 (beyond: 1.96).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
  """t_{0.975, df} from :data:`T975`; 1.96 (normal) for df > 30."""
  if df < 1:
    raise ValueError(f"df must be >= 1, got {df}")
  return T975[df - 1] if df <= len(T975) else 1.96


def auc(steps: Sequence[float], acc: Sequence[float], budget: float,
        start: Optional[float] = None) -> float:
  """Normalised area under an accuracy curve over ``[0, budget]``, in [0, 1].

  Trapezoids between the evaluated points, starting from ``(0, start)``;
  ``start`` defaults to the first evaluation's accuracy (0 if there is none;
  an evaluation at step 0 replaces it).
  A curve that stops before ``budget`` (a run stopped early once every seed
  held >= 99%) keeps its last value up to ``budget``; points after ``budget``
  are cut (linear interpolation at ``budget``).  Non-finite accuracies (a
  diverged seed) count as 0.  Unlike steps-to-threshold, a curve that never
  reaches a threshold is not censored; one that rises earlier scores higher.
  """
  x, y = np.asarray(steps, np.float64), np.asarray(acc, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"steps {x.shape} and acc {y.shape} must be equal 1-D")
  if not budget > 0:
    raise ValueError(f"budget must be > 0, got {budget!r}")
  order = np.argsort(x, kind="stable")
  x, y = x[order], np.where(np.isfinite(y[order]), y[order], 0.0)
  start = (float(y[0]) if y.size else 0.0) if start is None else start
  if not (x.size and x[0] == 0):
    x, y = np.concatenate([[0.0], x]), np.concatenate([[start], y])
  yb = float(np.interp(budget, x, y))  # the last value if x[-1] < budget
  x, y = np.append(x[x < budget], budget), np.append(y[x < budget], yb)
  area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
  return min(max(area / budget, 0.0), 1.0)


def collapses(steps: Sequence[float], acc: Sequence[float], *,
              reach: float = 0.95, below: float = COLLAPSE_BELOW,
              window: Optional[float] = None) -> Dict[str, Any]:
  """Collapses after grokking of one accuracy curve, up to ``window``.

  After the first evaluation with accuracy >= ``reach``, a collapse is a
  maximal run of consecutive evaluations with accuracy < ``below``
  (non-finite counts as 0); only evaluations at steps <= ``window`` (all
  if None) count.

  Args:
    steps, acc: the evaluated steps and accuracies of one seed.
    reach: the accuracy that counts as grokked (0.95).
    below: the accuracy a collapse falls under (:data:`COLLAPSE_BELOW`).
    window: the last step considered (None: every evaluation).

  Returns:
    dict with ``reached_at`` (first step >= reach, None: never, and then no
    collapse), ``count`` (number of collapses), ``starts`` (the first step of
    each), ``lowest`` / ``lowest_at`` (the lowest accuracy after reaching,
    and its step; None if never reached).
  """
  x, y = np.asarray(steps, np.float64), np.asarray(acc, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"steps {x.shape} and acc {y.shape} must be equal 1-D")
  order = np.argsort(x, kind="stable")
  x, y = x[order], np.where(np.isfinite(y[order]), y[order], 0.0)
  if window is not None:
    x, y = x[x <= window], y[x <= window]
  hit = np.nonzero(y >= reach)[0]
  out = dict(reached_at=None, count=0, starts=[], lowest=None, lowest_at=None)
  if not hit.size:
    return out
  i0 = int(hit[0])
  out["reached_at"] = int(x[i0])
  after_x, after_y = x[i0:], y[i0:]
  low = after_y < below
  starts = [int(after_x[i]) for i in range(low.size)
            if low[i] and (i == 0 or not low[i - 1])]
  j = int(np.argmin(after_y))
  out.update(count=len(starts), starts=starts, lowest=float(after_y[j]),
             lowest_at=int(after_x[j]))
  return out


def common_window(rows, methods: Sequence[str], seeds: Sequence[int],
                  budget: float, rows_by_method=None) -> int:
  """The last step every seed of every one of ``methods`` was evaluated at,
  capped at ``budget``: the window before any early stop, over which the
  curves of all of them are measured, none carried forward.

  Args:
    rows: metric rows (:func:`ngrok_jax.results.read_metrics`).
    methods, seeds: the methods and seeds compared.
    budget: the run's step budget.
    rows_by_method: optional ``{method: rows}`` for methods whose rows are
      in another run folder.

  Returns:
    ``min(budget, min over methods and seeds of the last evaluated step)``.
  """
  last = float(budget)
  for m in methods:
    rr = (rows_by_method or {}).get(m, rows)
    for s in seeds:
      st, _ = seed_curve(rr, m, s)
      if not st.size:
        raise ValueError(f"no metrics of method {m!r}, seed {s}")
      last = min(last, float(st.max()))
  return int(last)


def _interval(d: np.ndarray) -> Dict[str, Any]:
  """Mean of ``d`` with a two-sided 95% t-interval (none if n < 2)."""
  n = int(d.size)
  out = dict.fromkeys(("sd", "se", "df", "t", "lo", "hi"), None)
  out["mean"] = float(np.mean(d)) if n else None
  if n >= 2:
    sd = float(np.std(d, ddof=1))
    se, t = sd / math.sqrt(n), t975(n - 1)
    out.update(sd=sd, se=se, df=n - 1, t=t, lo=out["mean"] - t * se,
               hi=out["mean"] + t * se)
  return out


def _ok(v) -> bool:
  return v is not None and math.isfinite(v)


def paired_differences(a: Sequence[Optional[float]],
                       b: Sequence[Optional[float]]) -> Dict[str, Any]:
  """Paired differences ``a - b`` of per-seed values (``None``: never).

  Returns ``n_pairs``, ``n_both`` (pairs where both are finite), their
  ``diffs``, ``mean``, ``sd``, ``se``, ``df``, ``t`` and ``lo``/``hi`` (95%
  t-interval of the mean; ``None`` if n_both < 2), and the counts
  ``a_only``, ``b_only``, ``neither`` (pairs where only a/only b/neither has
  a value)."""
  if len(a) != len(b):
    raise ValueError(f"{len(a)} and {len(b)} values: not paired")
  ok = [(_ok(x), _ok(y)) for x, y in zip(a, b)]
  d = np.array([x - y for (x, y), k in zip(zip(a, b), ok) if all(k)], float)
  return dict(n_pairs=len(a), n_both=int(d.size), diffs=d.tolist(),
              **_interval(d), a_only=ok.count((True, False)),
              b_only=ok.count((False, True)), neither=ok.count((False, False)))


def paired_auc(a: Sequence[float], b: Sequence[float]) -> Dict[str, Any]:
  """:func:`paired_differences` for values that are always finite (AUC)."""
  if not all(_ok(v) for v in list(a) + list(b)):
    raise ValueError("paired_auc needs finite values for every seed")
  return paired_differences(a, b)


def paired_table(rows, method_a: str, method_b: str, seeds: Sequence[int],
                 budget: float, threshold: float = 0.95, rows_b=None
                 ) -> Dict[str, Any]:
  """Per seed: steps to ``threshold`` (evaluations up to ``budget``) and AUC
  of both; ``steps``, ``auc``: paired differences ``a - b``; ``speedup``:
  per-seed ``b_steps / a_steps`` and their geometric mean where both reached;
  counts ``a_only``, ``b_only``, ``neither``.  ``rows_b``: rows of
  ``method_b`` if another run folder (same seeds) holds them."""
  per_seed = []
  for s in seeds:
    e = dict(seed=int(s))
    for t, m, rr in (("a", method_a, rows), ("b", method_b, rows_b or rows)):
      st, acc = seed_curve(rr, m, s)
      if not st.size:
        raise ValueError(f"no metrics of method {m!r}, seed {s}")
      e[f"steps_{t}"] = steps_to_threshold(st[st <= budget],
                                           acc[st <= budget], threshold)
      e[f"auc_{t}"] = auc(st, acc, budget)
    both = None not in (e["steps_a"], e["steps_b"])
    e["ratio"] = e["steps_b"] / e["steps_a"] if both else None
    per_seed.append(e)
  col = lambda k: [e[k] for e in per_seed]  # noqa: E731
  steps = paired_differences(col("steps_a"), col("steps_b"))
  r = [x for x in col("ratio") if x is not None]
  return dict(method_a=method_a, method_b=method_b, threshold=threshold,
              budget=budget, per_seed=per_seed, steps=steps,
              auc=paired_auc(col("auc_a"), col("auc_b")),
              speedup=dict(ratios=r, n=len(r), geomean=float(
                  np.exp(np.mean(np.log(r)))) if r else None),
              **{k: steps[k] for k in ("a_only", "b_only", "neither")})


def _ci(d: Dict[str, Any], fmt: str) -> str:
  if d["mean"] is None:
    return "-"
  ci = "no CI" if d["lo"] is None else f"[{d['lo']:{fmt}}, {d['hi']:{fmt}}]"
  return f"{d['mean']:+{fmt}} {ci} (n {d['n_both']})"


def _groups(rows, method: str, seeds) -> Dict[str, List[int]]:
  """``seeds`` of ``method`` by sweep value (``hp/<name>`` keys; '' if none)."""
  out: Dict[str, set] = {}
  for r in rows:
    if r["method"] == method and r["seed"] in seeds:
      out.setdefault(sweep_label(row_sweep(r)), set()).add(r["seed"])
  return {k: sorted(v) for k, v in out.items()}


def paired_markdown(run_dir: str, reference_method: str = DEFAULT_METHOD,
                    budget: Optional[float] = None, threshold: float = 0.95,
                    others: Sequence[str] = ()) -> str:
  """Markdown table: every other method of ``run_dir`` (and every method of
  the run folders ``others``, paired by seed) against ``reference_method``
  of ``run_dir``; one row per sweep value if the run has ``hparams``.
  ``budget``: the run's ``steps`` by default.  Differences: ref - method."""
  run = load_run(run_dir)
  spec, rows = run["spec"], run["rows"]
  if reference_method not in spec.methods:
    raise ValueError(f"{run_dir!r} has no method {reference_method!r} "
                     f"(methods: {', '.join(spec.methods)})")
  budget = spec.steps if budget is None else budget
  p = int(round(threshold * 100))
  header = ["method", "pairs", f"steps to {p}%: ref - method [95% CI]",
            "speed-up (method/ref, geo. mean)", "AUC: ref - method [95% CI]",
            f"reached {p}%: ref only / method only / neither"]
  lines = []
  entries = [(m, rows, "") for m in spec.methods if m != reference_method]
  tags = [os.path.basename(os.path.normpath(d)) for d in others]
  if len(set(tags)) < len(tags):  # e.g. <variant>/a+b: name the parent too
    tags = [os.path.join(*os.path.normpath(d).split(os.sep)[-2:])
            for d in others]
  for d, tag in zip(others, tags):
    o = load_run(d)
    entries += [(m, o["rows"], f" ({tag})") for m in o["spec"].methods]
  for m, rows_m, tag in entries:
    for label, seeds in _groups(rows_m, m, spec.seeds).items():
      t = paired_table(rows, reference_method, m, seeds, budget, threshold,
                       rows_b=rows_m)
      sp = t["speedup"]
      lines.append([
          f"{m}{f' [{label}]' if label else ''}{tag}", str(len(seeds)),
          _ci(t["steps"], ".0f"),
          f"{sp['geomean']:.2f}x (n {sp['n']})" if sp["n"] else "-",
          _ci(t["auc"], ".3f"),
          f"{t['a_only']} / {t['b_only']} / {t['neither']}"])
  return md_table(header, lines)


def _collapse_cell(rows, method: str, seeds, window=None) -> str:
  cs = [collapses(*seed_curve(rows, method, s), window=window) for s in seeds]
  n = sum(c["count"] for c in cs)
  if not n:
    return "0"
  low = min(c["lowest"] for c in cs if c["count"])
  hit = sum(c["count"] > 0 for c in cs)
  return f"{n} in {hit}/{len(cs)} seeds, lowest {low:.3f}"


def window_markdown(run_dir: str, reference_method: str = DEFAULT_METHOD
                    ) -> str:
  """Markdown table: for each method of ``run_dir`` against
  ``reference_method`` (paired seeds), the AUC difference over the common
  window before any early stop (:func:`common_window`, no value carried)
  and over the budget (a stopped run's last value carried), and the
  collapses after grokking (:func:`collapses`) in that window and over the
  method's whole run.

  Args:
    run_dir: a run folder.
    reference_method: the method every other one is paired with.

  Returns:
    The table, one row per method, the reference first.
  """
  run = load_run(run_dir)
  spec, rows = run["spec"], run["rows"]
  if reference_method not in spec.methods:
    raise ValueError(f"{run_dir!r} has no method {reference_method!r}")
  seeds, budget = list(spec.seeds), spec.steps
  header = ["method", "common window", "AUC over the window: ref - method "
            "[95% CI]", "AUC over the budget: ref - method [95% CI]",
            "ref's collapses in the window", "method's collapses in the "
            "window", "collapses over the method's whole run"]
  lines = [[f"{reference_method} (ref)", "-", "-", "-", "-", "-",
            _collapse_cell(rows, reference_method, seeds)]]
  for m in spec.methods:
    if m == reference_method:
      continue
    w = common_window(rows, [reference_method, m], seeds, budget)
    tw = paired_table(rows, reference_method, m, seeds, w)
    tb = paired_table(rows, reference_method, m, seeds, budget)
    lines.append([m, str(w), _ci(tw["auc"], ".3f"), _ci(tb["auc"], ".3f"),
                  _collapse_cell(rows, reference_method, seeds, w),
                  _collapse_cell(rows, m, seeds, w),
                  _collapse_cell(rows, m, seeds)])
  return md_table(header, lines)
