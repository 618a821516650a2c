"""The training loop of the runner: one run folder's state while it trains
(:class:`RunLoop`), each method trained in chunks of ``eval_every`` steps,
evaluated after every chunk, the per-chunk hooks called, checkpoints resumed
and the trained amplifier saved.  The entry points (``run``, ``resume``,
``execute``) are :mod:`ngrok_jax.runner`'s.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import numpy as np

from ngrok_jax import ampfile, results, runfolder
from ngrok_jax.ampfile import load_amplifier, save_amplifier
from ngrok_jax.distributed import is_primary, to_host
from ngrok_jax.fileio import atomic_write, dumps
from ngrok_jax.hooks import (AgreeOnStop, CheckpointSaver, Chunk,
                             DivergenceBound, EarlyStop, MetricsWriter,
                             ProgressBar, StopFlag, StopOnSignal,
                             close_hooks)
from ngrok_jax.results import summarize
from ngrok_jax.sharding import shard_count
from ngrok_jax.spec import EACH, RunSpec
from ngrok_jax.trainer import Trainer

__all__ = ["RunLoop"]

Hook = Callable[[Chunk], None]


def _evaluation(trainer: Trainer, state, data, out) -> Dict[str, np.ndarray]:
  """Per-seed metrics after a chunk: ``evaluate`` plus the chunk's mean
  batch loss and mean outer loss (NaN where no meta step ran)."""
  ev, out = to_host((trainer.evaluate(state, data),
                     {k: out[k] for k in ("loss", "outer_loss")}))
  ev["batch_loss"] = np.mean(np.asarray(out["loss"], np.float64), axis=0)
  outer = np.asarray(out["outer_loss"], np.float64)
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    ev["outer_loss"] = (np.nanmean(outer, axis=0) if np.isfinite(outer).any()
                        else np.full(outer.shape[1], np.nan))
  return ev


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
    # sharded seeds: every device vmaps its own seeds at once
    self.seed_group = None if shard_count(len(spec.seeds), devices) > 1 \
        else seed_group
    self.rows: Dict[str, List[dict]] = {m: [] for m in spec.methods}
    self.wall: Dict[str, float] = {m: 0.0 for m in spec.methods}
    self.complete: Dict[str, bool] = {m: False for m in spec.methods}

  def path(self, *names) -> str:
    return os.path.join(self.out_dir, *names)

  def all_rows(self) -> List[dict]:
    return [r for m in self.spec.methods for r in self.rows[m]]

  def summary(self) -> Dict[str, Any]:
    return summarize(self.all_rows(), self.spec, self.wall, self.complete)

  def write_summary(self) -> Dict[str, Any]:
    s = self.summary()
    if self.out_dir is not None and is_primary():
      atomic_write(self.path("summary.json"), dumps(s))
    return s

  def train_method(self, method: str, stop: StopFlag, resume: bool) -> None:
    spec, saves = self.spec, self.out_dir is not None
    trainer = Trainer(spec.configs[method], seed_group=self.seed_group)
    each = spec.amplifier_seed == EACH
    amp = (load_amplifier(spec.amplifier, None if each else
                          spec.amplifier_seed)[0]
           if spec.configs[method].record.needs_trained_amplifier else None)
    hp = {k: np.asarray(v, np.float32) for k, v in spec.hparams.items()}
    state, data = trainer.init(list(spec.seeds), hparams=hp or None,
                               amp_params=amp, amp_per_seed=each)
    grad_range = (ampfile.grad_range_fn(trainer)
                  if trainer.has_meta and saves else None)
    ckpt = None
    if saves:
      from ngrok_jax.checkpoint import Checkpointer, resume_from
      ckpt = Checkpointer(self.path("checkpoints", method),
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
        self.rows[method] = list(meta["rows"])
        self.wall[method] = float(meta["wall_time"])
        extra = dict(meta.get("extra", {}))
        if step >= spec.steps or early.held(method, self.rows[method]):
          self.complete[method] = True
        else:
          self.report(f"{method}: resuming from step {step}")
      if saves and is_primary():  # drops rows appended after the checkpoint
        results.write_metrics(self.out_dir, self.all_rows())
      state, data = self._place(state, data)
      if grad_range is not None and "grad_range0" not in extra:
        lo, hi, _ = to_host(grad_range(state, data))
        extra["grad_range0"] = [float(np.min(lo)), float(np.max(hi))]
      if not self.complete[method]:
        hooks = [DivergenceBound(), ProgressBar(spec.steps, step, method,
                                                self.progress), early,
                 *self.hooks]
        if jax.process_count() > 1:
          hooks.insert(0, AgreeOnStop(stop))
        if saves:
          if is_primary():
            hooks.append(MetricsWriter(self.out_dir))
          hooks.append(CheckpointSaver(ckpt, spec.checkpoint_every, stop,
                                       extra))
        hooks.append(StopOnSignal(stop, self.out_dir, saves))
        state = self._loop(method, trainer, state, data, step, hooks)
      if grad_range is not None:
        host, ranges = to_host((state, grad_range(state, data)))
        meta = ampfile.run_amplifier_meta(
            spec.configs[method], spec.seeds, host, ranges,
            extra.get("grad_range0"),
            self.summary()["methods"][method]["steps_to_95"])
        if is_primary():
          save_amplifier(self.path(ampfile.FILE), host.seeds.amp_params,
                         meta)
    finally:
      if ckpt is not None:
        ckpt.close()

  def _place(self, state, data):
    """Shards the seed axis over ``self.devices`` devices (the largest count
    <= it that divides the number of seeds, the same number in every
    process); checkpoints stay layout independent (restored to the host,
    then placed here)."""
    n = shard_count(len(self.spec.seeds), self.devices)
    if n <= 1:
      return state, data
    from ngrok_jax.sharding import global_seed_mesh, seed_mesh, shard_seeds
    mesh = (global_seed_mesh(n // jax.process_count())
            if jax.process_count() > 1 else
            seed_mesh(jax.local_devices()[:n]))
    return shard_seeds(state, data, mesh=mesh)

  def _loop(self, method, trainer, state, data, step, hooks):
    """Chunks of ``eval_every`` steps until the budget is spent or a hook
    ends the method (``chunk.done``); every hook is called after each."""
    spec = self.spec
    t0, wall0 = time.perf_counter(), self.wall[method]
    try:
      while step < spec.steps:
        n = min(spec.eval_every, spec.steps - step)
        state, out = trainer.train_steps(state, data, n)
        ev = _evaluation(trainer, state, data, out)
        step += n
        if int(ev["step"]) != step:
          raise RuntimeError(f"{method}: the state is at step "
                             f"{int(ev['step'])} after {step} steps")
        rows = results.metric_rows(method, spec.seeds, step, ev,
                                   spec.hparams)
        self.rows[method] += rows
        self.wall[method] = wall0 + time.perf_counter() - t0
        chunk = Chunk(method, step, spec.steps, n, state, rows,
                      self.rows[method], self.wall[method],
                      done=step >= spec.steps)
        for hook in hooks:
          hook(chunk)
        runfolder.mark_progress(self.out_dir)
        if chunk.done:
          break
    finally:
      close_hooks(hooks)
    self.complete[method] = True
    return state
