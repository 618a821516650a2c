"""The multi-seed experiment runner: the training loop over methods.

One call trains several methods on one task, all seeds of a method vmapped
in one compiled program (one :class:`ngrok_jax.Trainer` per method), in
chunks of ``eval_every`` steps (one ``lax.scan`` each), evaluating every seed
after every chunk and calling the per-chunk hooks (:mod:`ngrok_jax.hooks`:
progress bar, early stop, metrics writer, checkpoint, stop signal, and any
passed in), and leaves a *run folder*::

    out_dir/
      config.json       the resolved run (RunSpec: per-method TrainConfig, ...)
      metrics.jsonl     one row per (method, seed, step), every metric key
      summary.json      per method: steps to 95%/99% per seed, diverged_at,
                        median / IQR / success rate, wall time
      amplifier.msgpack trained NeuralGrok amplifier (all seeds) + metadata
      amplifier.json    its metadata, readable
      plots/*.png       curves, AGE, the learned amplifier
      checkpoints/<method>/<step>/   orbax checkpoints (state + metrics)
      changes.jsonl     changes by --resume --force, the steps they apply from
      errors.log        orbax/asyncio log noise of failed checkpoint I/O

What each piece owns: :mod:`ngrok_jax.spec` the run spec and config.json,
:mod:`ngrok_jax.results` the metric rows, metrics.jsonl, summaries and
reading a folder back, :mod:`ngrok_jax.ampfile` the amplifier files,
:mod:`ngrok_jax.checkpoint` the checkpoints, :mod:`ngrok_jax._src.storage.runfolder`
the checks before the first write, the rollback of a failed start, what a
resume may change, resource limits, the noise log.  Public names are
re-exported here (the stable API)::

    from ngrok_jax import runner
    summary = runner.run(config, methods=("neuralgrok", "adam"), seeds=4,
                         steps=3000, eval_every=100, out_dir="runs/x")
    summary = runner.resume("runs/x")
    rows = runner.read_metrics("runs/x")          # list of dicts
    run = runner.load_run("runs/x")               # config, rows, summary

One process writes a run folder at a time: :func:`execute` holds the
folder's OS lock (``runfolder.Guard``) for the whole run and checks the
folder again under it; a second writer gets a ValueError naming the holder.

config.json, summary.json and the amplifier files are written atomically
(temporary file, then ``os.replace``); ``metrics.jsonl`` gets each chunk's
rows appended (one write), and is rewritten once at the start of each method
from the rows known then (on resume: those of the checkpoints).

Resume is exact: the checkpoint holds the whole state (the batches are a
pure function of the per-seed key and the step) and the metrics history, so
a run interrupted anywhere (even by SIGKILL) and resumed produces the same
``metrics.jsonl``, bit for bit on CPU, as an uninterrupted run.  SIGINT and
SIGTERM set a flag; the runner saves a checkpoint at the next chunk boundary
and raises :class:`RunInterrupted`.

Several local devices: the seed axis of the state and data is sharded over
a 1-D ``jax.sharding`` mesh (``NamedSharding``, :mod:`ngrok_jax.sharding`;
the jitted, state-donating ``train_steps`` / ``evaluate`` follow it), over
the largest number of devices (at most ``devices=``, default all) that
divides the number of seeds; if no count above 1 does, the run stays on
one device with a one-line note.  ``devices=1`` turns sharding off.
Checkpoints are host (NumPy) arrays, restored to the host and then placed,
so a run may resume on another device count.  Results equal the
single-device run up to float rounding (programs over fewer seeds per device
round differently; ``tests/test_sharding.py``).

Several processes (:func:`ngrok_jax.distributed.initialize` called first in
each; the CLI's ``--coordinator/--num-processes/--process-id``): every
process runs this same loop; the seed axis is sharded over every process's
devices (the same number in each, :func:`ngrok_jax.sharding.shard_count`),
the per-chunk evaluation is gathered to every process (so all of them keep
the same rows and take the same early-stop decisions), a stop signal seen
by any process stops all of them at the same chunk, every process takes
part in each checkpoint save and restore (the state is gathered to NumPy
first, so a checkpoint does not depend on the process count), and only
process 0 writes config.json, metrics.jsonl, summary.json, the amplifier
and the plots, and prints (the default ``report``, the progress bar).
Hooks passed in are called in every process (write from
:func:`ngrok_jax.distributed.is_primary` only; ``chunk.state`` is then a
global array: :func:`ngrok_jax.distributed.to_host` gathers it).
``tests/test_multiprocess.py``.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import jax

from ngrok_jax._src.storage import runfolder
from ngrok_jax._src.core.distributed import barrier, is_primary
from ngrok_jax._src.storage.ampfile import load_amplifier, save_amplifier
from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.core.fileio import atomic_write, dumps
from ngrok_jax._src.running.hooks import (Chunk, RunInterrupted, StopFlag,
                                          sync_stop)
from ngrok_jax._src.analysis.results import (THRESHOLDS, held_evaluations,
                                             load_run, read_metrics, summarize,
                                             summary_line)
from ngrok_jax._src.running.run_loop import RunLoop
from ngrok_jax._src.storage.run_noise import Noise
from ngrok_jax._src.storage.spec import (STOP_ACC, RunSpec, check_resume,
                                         load_spec)
from ngrok_jax._src.storage.spec import make_spec
from ngrok_jax._src.core.sharding import shard_count
from ngrok_jax._src.training.train import resolve_seed_group

__all__ = ["RunSpec", "RunInterrupted", "Chunk", "run", "resume",
           "make_spec", "check_resume", "check_devices", "load_spec",
           "summary_line", "read_metrics", "load_run", "summarize",
           "held_evaluations", "load_amplifier", "save_amplifier",
           "atomic_write", "THRESHOLDS", "STOP_ACC"]

Hook = Callable[[Chunk], None]


def _default_report(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


_shard_count = shard_count  # the largest count <= devices dividing the seeds


def _notice(report):
  """The stop notices' printer: above the progress bar (``tqdm.write``)
  for the default report, else ``report`` itself."""
  if report is not _default_report:
    return report
  from tqdm.auto import tqdm
  return lambda msg: tqdm.write(msg, file=sys.stderr)


def _quiet(msg: str) -> None:
  del msg


def check_devices(devices: Optional[int]) -> None:
  """ValueError unless ``devices`` is None or a positive integer.

  Args:
    devices: the device cap to check.
  """
  if devices is not None and (isinstance(devices, bool) or
                              not isinstance(devices, int) or devices < 1):
    raise ValueError(f"devices must be a positive integer, got {devices!r}")


def run(config: Union[TrainConfig, Mapping[str, Any], None] = None,
        methods: Union[str, Sequence[str], None] = None,
        seeds: Union[int, Sequence[int], None] = None,
        steps: Optional[int] = None, eval_every: Optional[int] = None,
        out_dir: Optional[str] = None, *,
        preset: Union[str, Mapping[str, Any], None] = None,
        method_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
        hparams: Optional[Mapping[str, Any]] = None,
        checkpoint_every: Optional[int] = None,
        keep_checkpoints: Optional[int] = None,
        amplifier: Optional[str] = None,
        amplifier_seed: Union[int, str, None] = None,
        resume: bool = False, force: bool = False, progress: bool = True,
        plots: bool = True, report=None,
        devices: Optional[int] = None,
        stop_after: Optional[int] = None, stop_acc: Optional[float] = None,
        hooks: Sequence[Hook] = (), seed_group="auto",
        tasks: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Trains ``methods`` on one task for all ``seeds`` (or, with ``tasks``,
  one amplifier per seed across several tasks); returns the summary.

  The configuration is assembled by :func:`make_spec` (these arguments
  passed on): an argument left as None takes the ``preset``'s value, else
  the default given below.

  Args:
    config: the base :class:`TrainConfig` (or its dict); its ``method`` is
      replaced by each of ``methods``.  With ``preset``: the fields set
      over the preset's (and over its per-method settings).
    methods: method names (list or comma-separated string), run in order,
      each as one vmapped program over the seeds; None: the preset's, else
      ``neuralgrok, adam`` (with ``tasks``: ``neuralgrok``).
    seeds: number of seeds (0..n-1) or the list of seeds; None: the
      preset's, else 4.
    steps: training steps per method; None: the preset's, else 1000.
    eval_every: evaluate every seed after every ``eval_every`` steps (one
      ``lax.scan`` chunk); must be <= steps; None: the preset's, else 100.
    out_dir: the run folder (created); ``None`` keeps everything in memory
      (no files, no checkpoints).
    preset: a preset name or dict (:mod:`ngrok_jax.presets`): the starting
      point (config, per-method settings, methods, seeds, steps,
      eval_every, checkpoint_every, stop_after), as ``ngrok-jax train
      --preset``.
    method_overrides: ``{method: {TrainConfig field: value}}`` (over the
      preset's per-method settings).
    hparams: per-seed hyperparameter sweep ``{name: value or [one per
      seed]}`` (names in :data:`ngrok_jax.HPARAMS`), same for every method
      (:func:`ngrok_jax.spec.sweep_seeds` builds seeds x values).
    checkpoint_every: checkpoint interval (multiple of ``eval_every``);
      0 (or None without a preset): only at the end of each method and on
      SIGINT/SIGTERM; None: the preset's.
    keep_checkpoints: newest checkpoints kept per method (None: 3).
    amplifier: run folder or ``amplifier.msgpack`` of a NeuralGrok run, for
      ``neuralgrok-frozen`` (its ``amp_hidden`` is taken from the file).
    amplifier_seed: index of the seed whose amplifier is used, or
      ``"each"``: seed i uses the file's i-th amplifier (paired); None: 0.
    resume: continue the run in ``out_dir`` from its newest good checkpoint
      (the given arguments must match its config.json unless ``force``).
    force: resume even if the arguments differ from the saved config.
    progress: show a tqdm progress bar per method.
    plots: write PNG plots into ``out_dir/plots`` at the end.
    report: callable for one-line messages (default: print to stderr).
    devices: shard the seed axis over at most this many local devices
      (``None``: all of them; 1: no sharding).  The count used is the
      largest that divides the number of seeds (``jax.sharding`` Mesh +
      NamedSharding, :mod:`ngrok_jax.sharding`).  Not part of the run's
      configuration: results do not depend on it beyond float rounding, and
      a run may resume on a different number of devices.
    stop_after: stop a method once every seed has held test accuracy >=
      ``stop_acc`` for this many consecutive evaluations (0, or None
      without a preset: never; None: the preset's); part of the run's
      configuration, reported as ``stopped_early_at``.
    stop_acc: the accuracy of ``stop_after`` (None: the preset's, else
      0.99).
    hooks: extra per-chunk hooks ``hook(chunk)`` (:class:`Chunk`, see
      :mod:`ngrok_jax.hooks`), called after the progress bar and the early
      stop, before the metrics writer and the checkpoint; not part of the
      run's configuration.
    seed_group: run the seeds in groups of this many vmapped seeds, one
      group after another (``"auto"``: one at a time on a CPU, all at once
      on accelerators; ``None``: all at once); same results, not part of
      the run's configuration.
    tasks: a task axis (:mod:`ngrok_jax.cross_task`): >= 2 tasks sharing
      the transformer's shapes, trained at once by method ``neuralgrok``
      (the only method), one amplifier per seed meta-trained across them;
      the run folder is laid out as :mod:`ngrok_jax._src.running.cross_folder` says.
      ``None``: the config's task.

  Returns:
    The summary dict (also ``out_dir/summary.json``); with ``tasks``,
    ``{task: summary}`` (each in ``out_dir/<task>/summary.json``):
    ``summary["methods"][m]["steps_to_95"]`` is the per-seed list (``None``
    = never), ``["t95"]`` has ``median``, ``q25``, ``q75``, ``iqr``,
    ``success_rate``; likewise ``99``; ``diverged_at``; ``wall_time_s``.

  Raises:
    ValueError: invalid arguments (the message names the field), or a resume
      whose arguments differ from the saved config (names the fields).
    RunInterrupted: SIGINT/SIGTERM; a checkpoint was saved first.
  """
  spec = make_spec(config, methods, seeds, steps, eval_every, preset=preset,
                   method_overrides=method_overrides, hparams=hparams,
                   checkpoint_every=checkpoint_every,
                   keep_checkpoints=keep_checkpoints, amplifier=amplifier,
                   amplifier_seed=amplifier_seed, stop_after=stop_after,
                   stop_acc=stop_acc, tasks=tasks)
  return execute(spec, out_dir, resume=resume, force=force,
                 progress=progress, plots=plots, report=report,
                 devices=devices, hooks=hooks, seed_group=seed_group)


def resume(out_dir: str, *, force: bool = False, progress: bool = True,
           plots: bool = True, report=None,
           spec: Optional[RunSpec] = None,
           devices: Optional[int] = None,
           hooks: Sequence[Hook] = (), seed_group="auto") -> Dict[str, Any]:
  """Continues the run in ``out_dir`` from its newest good checkpoint.

  ``spec`` (optional) is checked against the saved config: differing fields
  are refused with a ValueError naming them, unless ``force``.  ``devices``
  and ``hooks`` as in :func:`run` (the run may have been started on another
  device count).

  Args:
    out_dir: the run folder.
    force: resume even if ``spec`` differs from the saved config.
    progress: show a tqdm progress bar per method.
    plots: write the plots at the end.
    report: callable for one-line messages (default: print to stderr).
    spec: the run spec the caller expects, checked against the saved one.
    devices: shard the seed axis over at most this many local devices.
    hooks: extra per-chunk hooks, as in :func:`run`.
    seed_group: as in :func:`run`.

  Returns:
    The run's summary, as :func:`run` returns it.
  """
  saved = load_spec(out_dir)
  return execute(spec or saved, out_dir, resume=True, force=force,
                 progress=progress, plots=plots, report=report,
                 devices=devices, hooks=hooks, seed_group=seed_group)


def execute(spec: RunSpec, out_dir: Optional[str], *, resume: bool = False,
            force: bool = False, progress: bool = True, plots: bool = True,
            report=None, devices: Optional[int] = None,
            hooks: Sequence[Hook] = (), seed_group="auto") -> Dict[str, Any]:
  """Runs a validated :class:`RunSpec` (:func:`run` and :func:`resume` with
  the spec already built; arguments as there)."""
  if report is None and not is_primary():
    report, progress = _quiet, False
  report = report or _default_report
  cross = [m for m, c in spec.configs.items() if c.meta_axis_name]
  if cross:
    raise ValueError(f"method {cross[0]!r} has meta_axis_name="
                     f"{spec.configs[cross[0]].meta_axis_name!r}: a cross-task"
                     " amplifier is trained by a run with tasks (runner.run("
                     "..., tasks=[...])), not alone")
  check_devices(devices)
  seed_group = resolve_seed_group(seed_group)  # checked before any write
  procs = jax.process_count()
  if spec.tasks and procs > 1:
    raise ValueError("a run with tasks runs in one process")
  # multi-process: may refuse
  n = 1 if spec.tasks else _shard_count(len(spec.seeds), devices)
  diff = check_resume(spec, out_dir, resume, force)
  changes = runfolder.check_change(load_spec(out_dir), spec, out_dir) if (
      diff and out_dir is not None) else {}
  runfolder.check_resources(spec, memory=out_dir is not None)
  barrier("ngrok_jax.execute: folder checked")  # before process 0 writes
  primary = is_primary()
  with runfolder.Guard(out_dir if primary else None), Noise(
      out_dir if primary else None):
    if out_dir is not None and primary:  # again, now that the folder is ours
      check_resume(spec, out_dir, resume, force)
    if out_dir is not None:
      out_dir = os.fspath(out_dir)
      if diff:
        report(f"resuming with a different configuration ({', '.join(diff)})"
               " because of --force")
      os.makedirs(out_dir, exist_ok=True)
      if primary:
        atomic_write(os.path.join(out_dir, "config.json"),
                     dumps(spec.to_dict()))
        if changes:
          runfolder.record_change(out_dir, changes)
    r = RunLoop(spec, out_dir, progress, report, devices, hooks, seed_group)
    r.force = force
    if out_dir is not None and primary:
      r.layout.begin(out_dir)
    return _execute_run(r, spec, out_dir, resume, progress, report, plots,
                        devices, hooks, n, procs)


def _execute_run(r, spec, out_dir, resume, progress, report, plots, devices,
                 hooks, n, procs):
  """:func:`execute` once the folder is written: the methods, then the
  ``end_run`` of the hooks."""
  if n > 1:
    report(f"seeds sharded over {n} devices" +
           (f" of {procs} processes" if procs > 1 else ""))
  elif jax.local_device_count() > 1 and devices != 1 and not spec.tasks:
    report(f"{len(spec.seeds)} seeds do not split evenly over the "
           f"{jax.local_device_count()} devices: running on one device")
  summary = None
  try:
    summary = _execute_methods(r, spec, out_dir, resume, progress,
                               report, plots)
  finally:
    for h in hooks:
      end = getattr(h, "end_run", None)
      if callable(end):
        end(out_dir, summary)
  return summary


def _execute_methods(r: RunLoop, spec: RunSpec, out_dir: Optional[str],
                     resume: bool, progress: bool, report,
                     plots: bool) -> Dict[str, Any]:
  """The methods of :func:`execute` in order, then the summary and plots."""
  with StopFlag(notify=_notice(report)) as stop:
    try:
      for m in spec.methods:
        if sync_stop(stop):
          break
        r.train_method(m, stop, resume)
        s = r.write_summary()
        if r.complete[m] and (progress or report is not _default_report):
          for line in r.layout.summary_lines(s, m):
            report(line)
    except RunInterrupted:
      r.write_summary()
      raise
  summary = r.write_summary()
  if sync_stop(stop):
    # The signal arrived during the last chunk of a method: that method
    # finished and was saved, but later ones were not started.  Never return
    # as if the run were done (a caller would go on to its next job).
    left = [m for m in spec.methods if not r.complete[m]]
    name = signal.Signals(stop.signum).name
    if left:
      where = (f"resume with: ngrok-jax train --resume {out_dir}"
               if out_dir is not None else "no run folder, nothing saved")
      raise RunInterrupted(f"{name} received: stopped before {left[0]} "
                           f"(not started: {', '.join(left)}); {where}",
                           stop.signum, out_dir)
    raise RunInterrupted(f"{name} received as the run finished: every "
                         "method is complete and saved", stop.signum, out_dir)
  if out_dir is not None and plots and is_primary():
    r.layout.plot(out_dir, report)
  return summary
