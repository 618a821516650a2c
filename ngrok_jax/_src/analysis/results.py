"""The results of a run folder: metric rows, the metrics file, summaries.

* metric rows: one dict per (method, seed, evaluated step) with every metric
  of :meth:`ngrok_jax.Trainer.evaluate` (``null`` for non-finite values) and
  the seed's swept hyperparameters as ``hp/<name>`` (:func:`metric_rows`);
* ``metrics.jsonl``: those rows as JSON Lines, appended after every
  evaluation (:func:`append_metrics`); :func:`read_metrics` also reads the
  gzip of an exported folder (``metrics.jsonl.gz``) and ignores a final line
  cut short by a killed append;
* :func:`summarize`: per method and seed the steps to 95%/99% test accuracy
  (``THRESHOLDS``), ``diverged_at``, the final accuracy; median / IQR /
  success rate over seeds and per sweep value; early stop;
* :func:`load_run`: a folder's spec, config, rows and summary (plots,
  reports and :mod:`ngrok_jax.stats` read folders through it).
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ngrok_jax._src.core import metrics as metrics_lib
from ngrok_jax._src.core.fileio import (append_text, atomic_write, enc_float,
                                        json_value)
from ngrok_jax._src.storage.spec import FORMAT, RunSpec, load_spec
from ngrok_jax._src.core.tables import steps_cells

__all__ = ["THRESHOLDS", "METRICS_FILE", "metric_rows", "write_metrics",
           "append_metrics", "read_metrics", "seed_curve", "sweep_label",
           "row_sweep", "summarize", "held_evaluations", "step_stats",
           "summary_line", "RunData", "load_run"]

THRESHOLDS = (0.95, 0.99)
METRICS_FILE = "metrics.jsonl"


# ------------------------------------------------------------ metric rows
def metric_rows(method: str, seeds: Sequence[int], step: int,
                ev: Mapping[str, np.ndarray],
                hparams: Mapping[str, Sequence[float]]) -> List[dict]:
  """One row per seed from per-seed arrays ``ev`` (its ``step`` is left
  out: ``step`` is given) and the per-seed sweep values ``hparams``.

  Args:
    method: the method's name.
    seeds: the seeds, in the arrays' order.
    step: the evaluated step.
    ev: ``{name: (S,) array}``, e.g. from ``evaluate``.
    hparams: ``{name: per-seed values}`` of the swept hyperparameters.

  Returns:
    A list of dicts, one per seed.
  """
  rows = []
  for i, seed in enumerate(seeds):
    row = dict(method=method, seed=int(seed), step=int(step))
    for k, v in hparams.items():
      row[f"hp/{k}"] = enc_float(float(v[i]))
    for k, v in ev.items():
      if k != "step":
        row[k] = json_value(np.asarray(v)[i])
    rows.append(row)
  return rows


def _lines(rows: Sequence[dict]) -> str:
  return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)


def write_metrics(out_dir: str, rows: Sequence[dict]) -> None:
  """Replaces the folder's ``metrics.jsonl`` by ``rows`` (atomically).

  Args:
    out_dir: the run folder.
    rows: the metric rows.
  """
  atomic_write(os.path.join(out_dir, METRICS_FILE), _lines(rows))


def append_metrics(out_dir: str, rows: Sequence[dict]) -> None:
  """Appends ``rows`` to the folder's ``metrics.jsonl`` (one write).

  Args:
    out_dir: the run folder.
    rows: the metric rows to append.
  """
  if rows:
    append_text(os.path.join(out_dir, METRICS_FILE), _lines(rows))


def read_metrics(path: str) -> List[dict]:
  """Rows of ``metrics.jsonl`` (path of the file or of the run folder).

  A run folder without ``metrics.jsonl`` but with ``metrics.jsonl.gz`` (as
  exported by ``experiments/export_results.py``) is read from the gzip.  A
  last line without its newline that is not valid JSON (an append cut by a
  kill) is ignored; any other bad line is a ValueError.

  Args:
    path: ``metrics.jsonl`` (or its ``.gz``) or the run folder holding it.

  Returns:
    A list of dicts, one per (method, seed, evaluated step), in file order.

  Raises:
    ValueError: a bad line other than a cut-off last one.
  """
  if os.path.isdir(path):
    plain = os.path.join(path, METRICS_FILE)
    gz = plain + ".gz"
    path = gz if not os.path.exists(plain) and os.path.exists(gz) else plain
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    lines = f.read().split("\n")
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:  # no newline after it: a torn append
        break
      raise ValueError(f"{path}, line {i + 1}: not JSON ({e})") from None
  return rows


# ----------------------------------------------------------------- curves
def _diverged_at(sel: Sequence[dict]) -> Optional[int]:
  v = sel[-1].get("diverged_at") if sel else None
  return int(v) if v is not None and np.isfinite(v) and v >= 0 else None


def _seed_rows(rows, method: str, seed: int) -> List[dict]:
  return sorted((r for r in rows if r["method"] == method and
                 r["seed"] == seed), key=lambda r: r["step"])


def _curve(sel: Sequence[dict], key: str, mask_diverged: bool):
  steps = np.array([r["step"] for r in sel], np.int64)
  vals = np.array([np.nan if r.get(key) is None else r[key] for r in sel],
                  np.float64)
  d = _diverged_at(sel) if mask_diverged else None
  if d is not None:
    vals = np.where(steps <= d, vals, np.nan)
  return steps, vals


def seed_curve(rows, method: str, seed: int, key: str = "test/acc",
               mask_diverged: bool = True):
  """Sorted ``(steps, values)`` of one seed (``None`` values -> NaN); with
  ``mask_diverged``, NaN after the seed's ``diverged_at`` (its parameters
  are frozen from there on).

  Args:
    rows: metric rows.
    method: the method.
    seed: the seed.
    key: the metric.
    mask_diverged: NaN after the seed diverged.

  Returns:
    ``(steps, values)``, two NumPy arrays.
  """
  return _curve(_seed_rows(rows, method, seed), key, mask_diverged)


def sweep_label(values: Mapping[str, Any]) -> str:
  """``"c=0.5,wd=0.001"``: swept hyperparameter values (numbers as ``%g``,
  strings such as ``"inf"`` as they are).

  Args:
    values: ``{name: value}`` of the swept hyperparameters.

  Returns:
    The label, ``""`` for no values.
  """
  return ",".join(f"{k}={v if isinstance(v, str) else format(v, 'g')}"
                  for k, v in values.items())


def row_sweep(row: Mapping[str, Any]) -> Dict[str, Any]:
  """The swept values of a metric row: its ``hp/<name>`` keys, by name.

  Args:
    row: a metric row.

  Returns:
    ``{name: value}``.
  """
  return {k[3:]: row[k] for k in sorted(row) if k.startswith("hp/")}


# -------------------------------------------------------------- summaries
def step_stats(values: Sequence[Optional[int]]) -> Dict[str, Any]:
  """:func:`ngrok_jax.summarize_steps` plus ``iqr``.

  Args:
    values: steps to a threshold per seed (None: never).

  Returns:
    The dict of :func:`ngrok_jax.summarize_steps` with ``iqr`` added.
  """
  s = metrics_lib.summarize_steps(values)
  s["iqr"] = (s["q75"] - s["q25"]) if s["median"] is not None else None
  return s


def held_evaluations(rows: Sequence[dict], method: str, seeds: Sequence[int],
                     acc: float = 0.99) -> int:
  """The number of most recent evaluations in which *every* seed of
  ``method`` had test accuracy >= ``acc``.

  Args:
    rows: metric rows.
    method: the method.
    seeds: its seeds.
    acc: the accuracy to hold.

  Returns:
    The number of evaluations (0 if the last one missed).
  """
  held = None
  for seed in seeds:
    _, vals = seed_curve(rows, method, seed, mask_diverged=False)
    n = 0
    for v in vals[::-1]:
      if not v >= acc:
        break
      n += 1
    held = n if held is None else min(held, n)
  return held or 0


def _thresholds(per: Dict[str, Any], idx: Sequence[int], out: Dict[str, Any]):
  for t in THRESHOLDS:
    name = f"steps_to_{int(t * 100)}"
    out[name] = [per[name][i] for i in idx]
    out[f"t{int(t * 100)}"] = step_stats(out[name])


def summarize(rows: Sequence[dict], spec: RunSpec,
              wall_time: Optional[Mapping[str, float]] = None,
              complete: Optional[Mapping[str, bool]] = None) -> Dict[str, Any]:
  """Summary of a run from its metric rows.

  Per method and seed: the first evaluated step with test accuracy >= 0.95
  and >= 0.99 (``None``: never), ``diverged_at`` (``None``: never) and the
  final test accuracy; per method: median, quartiles, IQR and success rate of
  the steps over seeds (:func:`ngrok_jax.summarize_steps`), and per sweep
  value the same for the seeds that share it.  Evaluations after a seed
  diverged (its parameters are frozen) do not count.

  Args:
    rows: the run's metric rows.
    spec: the run's spec.
    wall_time: training seconds per method.
    complete: per method, whether it finished (its budget or an early
      stop).

  Returns:
    The summary dict that ``summary.json`` holds.
  """
  wall_time = wall_time or {}
  complete = complete or {}
  out = dict(format=FORMAT, steps=spec.steps, eval_every=spec.eval_every,
             seeds=list(spec.seeds), thresholds=list(THRESHOLDS), methods={})
  everyone = range(len(spec.seeds))
  for m in spec.methods:
    per = dict(seeds=list(spec.seeds), diverged_at=[], final_test_acc=[],
               last_step=[])
    for t in THRESHOLDS:
      per[f"steps_to_{int(t * 100)}"] = []
    for seed in spec.seeds:
      sel = _seed_rows(rows, m, seed)
      steps, acc = _curve(sel, "test/acc", mask_diverged=True)
      per["diverged_at"].append(_diverged_at(sel))
      for t in THRESHOLDS:
        per[f"steps_to_{int(t * 100)}"].append(
            metrics_lib.steps_to_threshold(steps, acc, t))
      per["final_test_acc"].append(json_value(acc[-1]) if acc.size else None)
      per["last_step"].append(int(steps[-1]) if steps.size else 0)
    _thresholds(per, everyone, per)
    per["num_diverged"] = sum(d is not None for d in per["diverged_at"])
    if spec.hparams:
      groups: Dict[str, List[int]] = {}
      for i in everyone:
        label = sweep_label({k: v[i] for k, v in spec.hparams.items()})
        groups.setdefault(label, []).append(i)
      per["groups"] = {}
      for label, idx in groups.items():
        g = dict(seeds=[spec.seeds[i] for i in idx])
        _thresholds(per, idx, g)
        g["diverged_at"] = [per["diverged_at"][i] for i in idx]
        g["num_diverged"] = sum(d is not None for d in g["diverged_at"])
        per["groups"][label] = g
    held = held_evaluations(rows, m, spec.seeds, spec.stop_acc)
    per["stopped_early_at"] = (
        max(per["last_step"]) if spec.stop_after and held >= spec.stop_after
        and max(per["last_step"]) < spec.steps else None)
    per["wall_time_s"] = round(float(wall_time.get(m, 0.0)), 3)
    per["complete"] = bool(complete.get(m, False))
    out["methods"][m] = per
  return out


def summary_line(method: str, per: Mapping[str, Any]) -> str:
  """One line: success and median steps to 95% / 99%, divergences, time.

  Args:
    method: the method's name.
    per: the method's entry of the summary (``summary["methods"][method]``).

  Returns:
    The line, without a newline.
  """
  parts = []
  for t in THRESHOLDS:
    s = per[f"t{int(t * 100)}"]
    med, iqr, ok = steps_cells(s)
    parts.append(f"{int(t * 100)}% never ({ok})" if s["median"] is None else
                 f"{int(t * 100)}% {ok} seeds, median {med} (IQR {iqr})")
  parts.append(f"diverged {per['num_diverged']}")
  parts.append(f"{per['wall_time_s']:.1f} s")
  return f"{method:>17}: " + "; ".join(parts)


# ------------------------------------------------------------ run folders
class RunData(dict):
  """``load_run`` result: keys ``spec``, ``config``, ``rows``, ``summary``,
  ``out_dir``."""


def load_run(out_dir: str) -> RunData:
  """Reads a run folder: its spec, config dict, metric rows and summary
  (computed from the rows if the folder has no summary.json).

  Args:
    out_dir: the run folder.

  Returns:
    A :class:`RunData`: ``spec`` (the run spec), ``config`` (config.json as
    a dict), ``rows`` (:func:`read_metrics`), ``summary`` and ``out_dir``.
  """
  spec = load_spec(out_dir, need_methods=False)  # results need no optimizer
  with open(os.path.join(out_dir, "config.json")) as f:
    config = json.load(f)
  rows = read_metrics(out_dir) if any(os.path.exists(
      os.path.join(out_dir, f)) for f in (METRICS_FILE,
                                          METRICS_FILE + ".gz")) else []
  sp = os.path.join(out_dir, "summary.json")
  if os.path.exists(sp):
    with open(sp) as f:
      summary = json.load(f)
  else:
    summary = summarize(rows, spec)
  return RunData(spec=spec, config=config, rows=rows, summary=summary,
                 out_dir=out_dir)
