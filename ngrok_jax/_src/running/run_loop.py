"""The training loop of the runner: one run folder's state while it trains
(:class:`RunLoop`), each method trained in chunks of ``eval_every`` steps,
evaluated after every chunk, the per-chunk hooks called, checkpoints resumed
and the trained amplifier saved.  What differs between a run on one task and
a run with a task axis (``RunSpec.tasks``) is the run's layout:
:class:`SingleTask` here, :class:`ngrok_jax._src.running.cross_folder.TaskAxis`.  The
entry points (``run``, ``resume``, ``execute``) are :mod:`ngrok_jax.runner`'s.

The loop itself is :func:`run_chunks`: it drives an :class:`Engine` (a
``typing.Protocol``: ``advance`` runs a chunk's steps, ``checkpoint`` says
what a checkpoint holds), here one method's training, in
``experiments/meta_train.py`` a meta-training's outer steps; the hooks do
the rest (metrics, checkpoints, progress, signals, time limits).
"""
from __future__ import annotations

import os
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Protocol,
                    Sequence, Tuple, runtime_checkable)

import jax
import numpy as np

from ngrok_jax._src.storage import ampfile, runfolder
from ngrok_jax._src.analysis import results
from ngrok_jax._src.storage.ampfile import load_amplifier, save_amplifier
from ngrok_jax._src.core.distributed import is_primary, to_host
from ngrok_jax._src.core.fileio import atomic_write, dumps
from ngrok_jax._src.running.hooks import (AgreeOnStop, CheckpointSaver, Chunk,
                                          DivergenceBound, EarlyStop,
                                          MetricsWriter, ProgressBar, StopFlag,
                                          StopOnSignal, close_hooks)
from ngrok_jax._src.core.metrics import chunk_losses
from ngrok_jax._src.analysis.results import summarize, summary_line
from ngrok_jax._src.core.sharding import shard_count
from ngrok_jax._src.storage.spec import EACH, RunSpec
from ngrok_jax._src.training.trainer import Trainer

__all__ = ["RunLoop", "SingleTask", "Engine", "run_chunks"]

Hook = Callable[[Chunk], None]


@runtime_checkable
class Engine(Protocol):
  """What :func:`run_chunks` drives: a training that advances by chunks of
  steps and says what a checkpoint holds.  The runner's training of one
  method is one, and so is ``experiments/meta_train.py``'s meta-training
  (its outer steps and probes); the loop and its hooks do the rest (the
  metrics file, checkpoint cadence, progress, signals, time limits).
  """

  def advance(self, state: Any, step: int, n: int
              ) -> Tuple[Any, List[dict]]:
    """Runs steps ``step + 1`` to ``step + n``.

    Args:
      state: the state after ``step`` steps.
      step: the steps done.
      n: the steps to run.

    Returns:
      ``(the state after step + n steps, the chunk's metric rows)``.
    """

  def checkpoint(self, chunk: Chunk) -> Optional[Tuple[Any, Dict[str, Any]]]:
    """What a checkpoint taken after ``chunk`` holds.

    Args:
      chunk: the chunk just run (its state and the history so far).

    Returns:
      ``(the state to save, its meta)``, or None where no checkpoint can
      be taken after this chunk (the run then only stops where one can).
    """


def run_chunks(engine: Engine, name: str, state: Any, step: int, steps: int,
               every: int, history: List[dict], wall: float,
               hooks: Sequence[Hook], out_dir: Optional[str] = None
               ) -> Tuple[Any, Optional[Chunk]]:
  """The loop: chunks of ``every`` steps until ``steps`` are done or a hook
  ends the run (``chunk.done``); after each, every hook is called (in
  order) and the run folder marked as holding progress.

  Args:
    engine: what runs the steps.
    name: the run's name in the chunks (the method).
    state: the state after ``step`` steps.
    step: the steps done.
    steps: the step budget.
    every: the steps of a chunk.
    history: the metric rows so far; each chunk's rows are appended to it.
    wall: the seconds of training so far (the chunks' ``wall_time`` adds
      this loop's).
    hooks: called with every :class:`ngrok_jax.hooks.Chunk`; closed
      (``close()``) when the loop ends, whatever the reason.
    out_dir: the run folder (:func:`ngrok_jax.runfolder.mark_progress`).

  Returns:
    ``(the last state, the last chunk or None if none ran)``.
  """
  t0, chunk = time.perf_counter(), None
  try:
    while step < steps:
      n = min(every, steps - step)
      state, rows = engine.advance(state, step, n)
      step += n
      history += rows
      chunk = Chunk(name, step, steps, n, state, rows, history,
                    wall + time.perf_counter() - t0, done=step >= steps)
      for hook in hooks:
        hook(chunk)
      runfolder.mark_progress(out_dir)
      if chunk.done:
        break
  finally:
    close_hooks(hooks)
  return state, chunk


class _Training:
  """:class:`Engine` of one method of a run: its trainer's chunks, the
  layout's rows, checkpoints of the state and the history."""

  def __init__(self, lay, method: str, trainer, data, extra):
    self.lay, self.method, self.trainer = lay, method, trainer
    self.data, self.extra = data, extra

  def advance(self, state, step, n):
    state, out = self.trainer.train_steps(state, self.data, n)
    at, rows = self.lay.rows(self.method, step + n, self.trainer, state,
                             self.data, out)
    if at != step + n:
      raise RuntimeError(f"{self.method}: the state is at step {at} after "
                         f"{step + n} steps")
    return state, rows

  def checkpoint(self, chunk):
    return chunk.state, dict(rows=list(chunk.history),
                             wall_time=chunk.wall_time, extra=self.extra)


def _evaluation(trainer: Trainer, state, data, out) -> Dict[str, np.ndarray]:
  """Per-seed metrics after a chunk: ``evaluate`` plus the chunk's mean
  batch loss and mean outer loss (NaN where no meta step ran)."""
  ev, out = to_host((trainer.evaluate(state, data),
                     {k: out[k] for k in ("loss", "outer_loss")}))
  ev.update(chunk_losses(out["loss"], out["outer_loss"]))
  return ev


class SingleTask:
  """The layout of a run on one task (``spec.tasks`` empty): each method's
  :class:`ngrok_jax.Trainer`, its seeds sharded over devices, the run
  folder's ``metrics.jsonl`` and ``summary.json``, ``checkpoints/<method>``
  and the trained amplifier.  :class:`ngrok_jax._src.running.cross_folder.TaskAxis` is
  the layout of a run with a task axis.

  Args:
    spec: the run spec.
    devices: the device cap.
    seed_group: as :func:`ngrok_jax.train.train_steps`.
  """

  def __init__(self, spec: RunSpec, devices: Optional[int], seed_group):
    self.spec, self.devices = spec, devices
    # sharded seeds: every device vmaps its own seeds at once
    self.seed_group = None if self.shards() > 1 else seed_group

  def shards(self) -> int:
    """The number of devices the seed axis is sharded over."""
    return shard_count(len(self.spec.seeds), self.devices)

  def start(self, method: str):
    """``(trainer, state, data)`` of ``method`` at step 0."""
    spec = self.spec
    trainer = Trainer(spec.configs[method], seed_group=self.seed_group)
    each = spec.amplifier_seed == EACH
    amp = (load_amplifier(spec.amplifier, None if each else
                          spec.amplifier_seed)[0]
           if spec.configs[method].record.needs_trained_amplifier else None)
    hp = {k: np.asarray(v, np.float32) for k, v in spec.hparams.items()}
    state, data = trainer.init(list(spec.seeds), hparams=hp or None,
                               amp_params=amp, amp_per_seed=each)
    return trainer, state, data

  def place(self, state, data):
    """Shards the seed axis over :meth:`shards` devices (the same number in
    every process); checkpoints stay layout independent (restored to the
    host, then placed here)."""
    n = self.shards()
    if n <= 1:
      return state, data
    from ngrok_jax._src.core.sharding import (global_seed_mesh, seed_mesh,
                                              shard_seeds)
    mesh = (global_seed_mesh(n // jax.process_count())
            if jax.process_count() > 1 else
            seed_mesh(jax.local_devices()[:n]))
    return shard_seeds(state, data, mesh=mesh)

  def rows(self, method, step, trainer, state, data, out):
    """``(the state's step, the chunk's metric rows)``."""
    ev = _evaluation(trainer, state, data, out)
    return int(ev["step"]), results.metric_rows(
        method, self.spec.seeds, step, ev, self.spec.hparams)

  def checkpoint_dir(self, method: str) -> Tuple[str, ...]:
    return ("checkpoints", method)

  def rows_of(self, meta) -> List[dict]:
    """The metric rows saved in a checkpoint's ``meta``."""
    return list(meta["rows"])

  def begin(self, out_dir: str) -> None:
    """Nothing to prepare (the runner writes config.json)."""
    del out_dir

  def write_metrics(self, out_dir: str, rows: Sequence[dict]) -> None:
    results.write_metrics(out_dir, rows)

  def metrics_hook(self, out_dir: str) -> Hook:
    return MetricsWriter(out_dir)

  def summary(self, rows, wall, complete) -> Dict[str, Any]:
    return summarize(rows, self.spec, wall, complete)

  def write_summary(self, out_dir: str, s: Mapping[str, Any]) -> None:
    atomic_write(os.path.join(out_dir, "summary.json"), dumps(s))

  def summary_lines(self, s: Mapping[str, Any], method: str) -> List[str]:
    return [summary_line(method, s["methods"][method])]

  def grad_range0(self, trainer, state, data) -> List[float]:
    lo, hi, _ = to_host(ampfile.grad_range_fn(trainer)(state, data))
    return [float(np.min(lo)), float(np.max(hi))]

  def save_amplifier(self, out_dir, method, trainer, state, data, extra,
                     s) -> None:
    """Writes ``amplifier.msgpack`` (every process takes part)."""
    host, ranges = to_host((state, ampfile.grad_range_fn(trainer)(state,
                                                                  data)))
    meta = ampfile.run_amplifier_meta(
        self.spec.configs[method], self.spec.seeds, host, ranges,
        extra.get("grad_range0"), s["methods"][method]["steps_to_95"])
    if is_primary():
      save_amplifier(os.path.join(out_dir, ampfile.FILE),
                     host.seeds.amp_params, meta)

  def plot(self, out_dir: str, report) -> None:
    from ngrok_jax._src.analysis import plots as plots_lib
    try:
      plots_lib.plot_run(out_dir)
    except Exception as e:  # noqa: BLE001 - plotting never loses a run
      report(f"plotting failed: {type(e).__name__}: {e}")


class RunLoop:
  """The state of one run (folder) while training, and the training loop
  of each of its methods (used by :func:`ngrok_jax.runner.execute`).

  Args:
    spec: the run spec.
    out_dir: the run folder, or None for none.
    progress: whether to draw progress bars.
    report: called with each one-line message.
    devices: the device cap.
    hooks: extra per-chunk hooks.
    seed_group: as :func:`ngrok_jax.train.train_steps`.
  """

  def __init__(self, spec: RunSpec, out_dir: Optional[str], progress: bool,
               report, devices: Optional[int], hooks: Sequence[Hook],
               seed_group="auto"):
    self.spec, self.out_dir, self.progress = spec, out_dir, progress
    self.report, self.devices, self.hooks = report, devices, list(hooks)
    if spec.tasks:
      from ngrok_jax._src.running.cross_folder import TaskAxis
      self.layout = TaskAxis(spec)
    else:
      self.layout = SingleTask(spec, devices, seed_group)
    self.rows: Dict[str, List[dict]] = {m: [] for m in spec.methods}
    self.wall: Dict[str, float] = {m: 0.0 for m in spec.methods}
    self.complete: Dict[str, bool] = {m: False for m in spec.methods}
    self.force = False

  def path(self, *names) -> str:
    return os.path.join(self.out_dir, *names)

  def all_rows(self) -> List[dict]:
    return [r for m in self.spec.methods for r in self.rows[m]]

  def summary(self) -> Dict[str, Any]:
    return self.layout.summary(self.all_rows(), self.wall, self.complete)

  def write_summary(self) -> Dict[str, Any]:
    s = self.summary()
    if self.out_dir is not None and is_primary():
      self.layout.write_summary(self.out_dir, s)
    return s

  def train_method(self, method: str, stop: StopFlag, resume: bool) -> None:
    spec, saves, lay = self.spec, self.out_dir is not None, self.layout
    t0 = time.perf_counter()
    if not resume:  # the initialisation compiles too: part of the stage
      self.report(f"{method}: compiling the training step...")
    trainer, state, data = lay.start(method)
    meta_range = trainer.has_meta and saves
    ckpt = None
    if saves:
      from ngrok_jax._src.storage.checkpoint import Checkpointer, resume_from
      ckpt = Checkpointer(self.path(*lay.checkpoint_dir(method)),
                          spec.keep_checkpoints)
    early = EarlyStop(spec.stop_after, spec.stop_acc, spec.seeds, self.report)
    extra: Dict[str, Any] = {}
    step = 0
    try:
      got = resume_from(ckpt, state, method, self.force, self.report,
                        self.out_dir) if resume and ckpt is not None else None
      if got is not None:
        step, state, meta = got
        runfolder.record_resume(self.out_dir if is_primary() else None,
                                method, step)
        self.rows[method] = lay.rows_of(meta)
        self.wall[method] = float(meta["wall_time"])
        extra = dict(meta.get("extra", {}))
        if step >= spec.steps or early.held(method, self.rows[method]):
          self.complete[method] = True
        else:
          self.report(f"{method}: resuming from step {step}")
      if saves and is_primary():  # drops rows appended after the checkpoint
        lay.write_metrics(self.out_dir, self.all_rows())
      state, data = lay.place(state, data)
      if meta_range and "grad_range0" not in extra:
        extra["grad_range0"] = lay.grad_range0(trainer, state, data)
      if not self.complete[method]:
        if resume:
          self.report(f"{method}: compiling the training step...")
        self._compile(trainer, state, data, step)
        self.report(f"{method}: compiled in {time.perf_counter() - t0:.1f} s")
        engine = _Training(lay, method, trainer, data, extra)
        hooks = [self._wall_of(method), DivergenceBound(),
                 ProgressBar(spec.steps, step, method, self.progress), early,
                 *self.hooks]
        if jax.process_count() > 1:
          hooks.insert(0, AgreeOnStop(stop))
        if saves:
          if is_primary():
            hooks.append(lay.metrics_hook(self.out_dir))
          hooks.append(CheckpointSaver(ckpt, spec.checkpoint_every, stop,
                                       extra, engine.checkpoint))
        hooks.append(StopOnSignal(stop, self.out_dir, saves))
        state, _ = run_chunks(engine, method, state, step, spec.steps,
                              spec.eval_every, self.rows[method],
                              self.wall[method], hooks, self.out_dir)
        self.complete[method] = True
      if meta_range:
        lay.save_amplifier(self.out_dir, method, trainer, state, data, extra,
                           self.summary())
    finally:
      if ckpt is not None:
        ckpt.close()

  def _compile(self, trainer, state, data, step) -> None:
    """Compiles the chunk's programs ahead of time (with the state's
    initialisation before it, the stage the caller times and reports), so
    that the progress bar's rate and ETA measure the training alone."""
    compile_ = getattr(trainer, "compile", None)
    if compile_ is not None:
      compile_(state, data, min(self.spec.eval_every, self.spec.steps - step))

  def _wall_of(self, method: str) -> Hook:
    """The first hook: records the method's training time (kept by an
    interrupted run's summary)."""
    def record(chunk: Chunk) -> None:
      self.wall[method] = chunk.wall_time
    return record
