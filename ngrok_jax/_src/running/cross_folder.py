"""The layout of a run with a task axis (``RunSpec.tasks``): what the
runner's loop (:class:`ngrok_jax._src.running.run_loop.RunLoop`) does differently when
one amplifier per seed is meta-trained across several tasks at once
(:mod:`ngrok_jax.cross_task`).

A run with tasks is a run folder like any other (``config.json`` holds the
spec with its ``tasks``; hooks, checkpoints, the rollback of a failed start,
the memory check, signals, the progress bar and resume are the runner's),
laid out as::

    out_dir/config.json                the run spec (with tasks)
    out_dir/<task>/                    a run folder per training task
                                       (config.json, metrics.jsonl,
                                       summary.json, plots/: ngrok-jax
                                       report and experiments.paired read
                                       it)
    out_dir/amplifier.msgpack          the trained amplifier, one per seed
    out_dir/amplifier_init.msgpack     the initial one (a control)
    out_dir/checkpoints/<step>         the state (resume)

Every metric row carries its ``task``.  The first cross-task folders (a
``cross_task.json`` header instead of ``config.json``) are read by
:func:`ngrok_jax.spec.load_spec` and resume as they are.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import jax
import numpy as np

from ngrok_jax._src.storage import ampfile
from ngrok_jax._src.training import cross_task
from ngrok_jax._src.analysis import results
from ngrok_jax._src.core.distributed import is_primary, to_host
from ngrok_jax._src.core.fileio import atomic_write, dumps
from ngrok_jax._src.core.metrics import chunk_losses
from ngrok_jax._src.storage.spec import RunSpec
from ngrok_jax._src.training.train import TrainState
from ngrok_jax._src.training.trainer import Trainer

__all__ = ["TaskAxis", "TaskMetricsWriter", "task_specs"]

METHOD = cross_task.METHOD


def task_specs(spec: RunSpec) -> Dict[str, RunSpec]:
  """The run spec of each task's folder (``<task>/config.json``).

  Args:
    spec: a validated spec with ``tasks``.

  Returns:
    ``{task: spec}``: method :data:`METHOD` with that task's config
    (``meta_axis_name`` set: the runner refuses to train it alone).
  """
  cfgs = cross_task.configs(spec.configs[METHOD], spec.tasks)
  return {t: dataclasses.replace(spec, configs={METHOD: c}, tasks=())
          for t, c in cfgs.items()}


class _Program:
  """The task-vmapped program in the shape of a :class:`Trainer`."""

  has_meta = True

  def __init__(self, config, tasks):
    self.config, self.tasks = config, list(tasks)

  def train_steps(self, state, data, num_steps: int):
    return cross_task.train_steps(self.config, self.tasks, state, data,
                                  num_steps)

  def evaluate(self, state, data):
    return cross_task.evaluate(self.config, self.tasks, state, data)


class TaskMetricsWriter:
  """Appends each chunk's rows to their task folder's ``metrics.jsonl``.

  Args:
    out_dir: the run folder.
  """

  def __init__(self, out_dir: str):
    self.out_dir = out_dir

  def __call__(self, chunk) -> None:
    by: Dict[str, List[dict]] = {}
    for r in chunk.rows:
      by.setdefault(r["task"], []).append(r)
    for t, rows in by.items():
      results.append_metrics(
          os.path.join(self.out_dir, cross_task.task_folder(t)), rows)


class TaskAxis:
  """The layout of a run with ``spec.tasks`` (the interface of
  :class:`ngrok_jax._src.running.run_loop.SingleTask`): one program vmapped over the
  tasks on one device, per-task rows, summaries and folders, the shared
  amplifier of every seed.

  Args:
    spec: a validated spec with ``tasks``.
  """

  def __init__(self, spec: RunSpec):
    self.spec, self.tasks = spec, list(spec.tasks)
    self.specs = task_specs(spec)
    self.config = spec.configs[METHOD]

  def shards(self) -> int:
    """1: the task-vmapped program runs on one device."""
    return 1

  def start(self, method: str):
    """``(program, state, data)`` at step 0, every leaf with a leading
    task axis (:func:`ngrok_jax.cross_task.init`)."""
    del method
    state, data = cross_task.init(self.config, self.tasks,
                                  list(self.spec.seeds),
                                  dict(self.spec.hparams) or None)
    return _Program(self.config, self.tasks), state, data

  def place(self, state, data):
    return state, data

  def rows(self, method, step, program, state, data, out):
    """``(the state's step, every task's metric rows)``."""
    ev, out = to_host((program.evaluate(state, data),
                       {k: out[k] for k in ("loss", "outer_loss")}))
    rows = []
    for i, t in enumerate(self.tasks):
      e = {k: np.asarray(v)[i] for k, v in ev.items() if k != "step"}
      e.update(chunk_losses(out["loss"][i], out["outer_loss"][i]))
      new = results.metric_rows(method, self.spec.seeds, step, e,
                                self.spec.hparams)
      for r in new:
        r["task"] = t
      rows += new
    return int(np.asarray(ev["step"])[0]), rows

  def checkpoint_dir(self, method: str) -> Tuple[str, ...]:
    del method
    return ("checkpoints",)

  def rows_of(self, meta) -> List[dict]:
    """The rows of a checkpoint; the first format kept ``{task: rows}``."""
    rows = meta["rows"]
    if isinstance(rows, Mapping):
      flat = [r for t in self.tasks for r in rows[t]]
      return sorted(flat, key=lambda r: r["step"])  # stable: task order
    return list(rows)

  def _by_task(self, rows: Sequence[dict]) -> Dict[str, List[dict]]:
    return {t: [r for r in rows if r.get("task") == t] for t in self.tasks}

  def _folder(self, out_dir: str, task: str) -> str:
    return os.path.join(out_dir, cross_task.task_folder(task))

  def begin(self, out_dir: str) -> None:
    """Writes each task folder's ``config.json``."""
    for t, s in self.specs.items():
      os.makedirs(self._folder(out_dir, t), exist_ok=True)
      atomic_write(os.path.join(self._folder(out_dir, t), "config.json"),
                   dumps(s.to_dict()))

  def write_metrics(self, out_dir: str, rows: Sequence[dict]) -> None:
    for t, r in self._by_task(rows).items():
      results.write_metrics(self._folder(out_dir, t), r)

  def metrics_hook(self, out_dir: str) -> TaskMetricsWriter:
    return TaskMetricsWriter(out_dir)

  def summary(self, rows, wall, complete) -> Dict[str, Any]:
    """``{task: that task's run summary}``."""
    return {t: results.summarize(r, self.specs[t], wall, complete)
            for t, r in self._by_task(rows).items()}

  def write_summary(self, out_dir: str, s: Mapping[str, Any]) -> None:
    for t, per in s.items():
      atomic_write(os.path.join(self._folder(out_dir, t), "summary.json"),
                   dumps(per))

  def summary_lines(self, s: Mapping[str, Any], method: str) -> List[str]:
    return [f"{t}: " + results.summary_line(method,
                                            per["methods"][method]).strip()
            for t, per in s.items()]

  def _grad_range(self, state, data):
    """(lo, hi, seed-0 gradient of the first task) over every task."""
    los, his, g0 = [], [], None
    for i, c in enumerate(self.specs.values()):
      fn = ampfile.grad_range_fn(Trainer(c.configs[METHOD]))
      sl = jax.tree.map(lambda x: x[i], (state.seeds, data))
      lo, hi, g = to_host(fn(TrainState(state.step, sl[0]), sl[1]))
      los.append(lo)
      his.append(hi)
      g0 = g if g0 is None else g0
    return np.min(los, axis=0), np.max(his, axis=0), g0

  def grad_range0(self, program, state, data) -> List[float]:
    del program
    lo, hi, _ = self._grad_range(state, data)
    return [float(np.min(lo)), float(np.max(hi))]

  def save_amplifier(self, out_dir, method, program, state, data, extra,
                     s) -> None:
    """Writes ``amplifier.msgpack`` (the shared amplifier of every seed,
    :func:`ngrok_jax.cross_task.amplifier`) and ``amplifier_init.msgpack``."""
    del program
    host = to_host(jax.tree.map(lambda x: x[0], state.seeds))
    ranges = self._grad_range(state, data)
    to95 = {t: s[t]["methods"][method]["steps_to_95"] for t in self.tasks}
    meta = ampfile.run_amplifier_meta(
        self.config, list(self.spec.seeds), TrainState(state.step, host),
        ranges, extra.get("grad_range0"), to95[self.tasks[0]])
    meta.update(task=",".join(self.tasks), cross_task=self.tasks,
                steps_to_95=to95)
    if is_primary():
      ampfile.save_amplifier(os.path.join(out_dir, ampfile.FILE),
                             cross_task.amplifier(state), meta)
      ampfile.save_amplifier(os.path.join(out_dir, "amplifier_init.msgpack"),
                             cross_task.amplifier(state, "init"),
                             dict(meta, step=0))

  def plot(self, out_dir: str, report) -> None:
    from ngrok_jax._src.analysis import plots as plots_lib
    for t in self.tasks:
      try:
        plots_lib.plot_run(self._folder(out_dir, t))
      except Exception as e:  # noqa: BLE001 - plotting never loses a run
        report(f"plotting {t} failed: {type(e).__name__}: {e}")
