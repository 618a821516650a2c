"""Per-chunk hooks of the runner loop.

In the style of google-deepmind/nanodo's training hooks (clu periodic
actions): the loop of :mod:`ngrok_jax.runner` trains a chunk of
``eval_every`` steps, evaluates every seed, and calls each hook with a
:class:`Chunk` (the step, the state, this chunk's metric rows and the
method's history).  A hook is any callable ``hook(chunk)``; it may set
``chunk.done`` to end the method after this chunk, or raise to stop the run.
A hook with a ``close()`` method has it called when the method's loop ends;
one with an ``end_run(out_dir, summary)`` method has it called once when
the run ends, after the summary and the plots are written (``summary`` is
None when the run was interrupted or failed): the experiment trackers of
:mod:`ngrok_jax.trackers` log the plots there.  In a multi-process run every
process calls the hooks it was given (the CLI gives the trackers to process
0 only).

The runner's own hooks, in the order it calls them (extra hooks passed to
:func:`ngrok_jax.runner.run` run between the early stop and the metrics
writer, so a stop signal they raise is seen at this chunk's boundary):

* :class:`ProgressBar`: tqdm bar with the median test accuracy;
* :class:`EarlyStop`: ends the method once every seed has held
  ``stop_acc`` for ``stop_after`` evaluations;
* :class:`MetricsWriter`: appends the chunk's rows to ``metrics.jsonl``;
* :class:`CheckpointSaver`: saves at the interval, at the method's end and
  when a stop signal is pending;
* :class:`StopOnSignal`: raises :class:`RunInterrupted` after the save when
  SIGINT/SIGTERM arrived during the chunk.

:class:`TimeLimit` (``experiments/meta_train.py --max-minutes``) ends a
run after a wall-time limit, before the checkpoint hook.
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ngrok_jax._src.analysis import results

__all__ = ["Chunk", "RunInterrupted", "StopFlag", "STOP_NOTICE", "ABORT_NOTICE", "ProgressBar", "EarlyStop",
           "MetricsWriter", "CheckpointSaver", "StopOnSignal", "close_hooks",
           "DivergenceBound", "DIVERGED_LOSS", "sync_stop", "AgreeOnStop",
           "TimeLimit"]

#: A seed whose mean training loss over a chunk exceeds this (or is not
#: finite) counts as diverged (``diverged_at``; chance level is ln p).
DIVERGED_LOSS = 1e4


class RunInterrupted(RuntimeError):
  """Raised after SIGINT/SIGTERM once a checkpoint has been saved."""

  def __init__(self, message: str, signum: int, out_dir: Optional[str]):
    super().__init__(message)
    self.signum = signum
    self.out_dir = out_dir


@dataclasses.dataclass
class Chunk:
  """What a hook sees after one chunk of training.

  Attributes:
    method: the method being trained.
    step: steps done (after this chunk).
    steps: the method's step budget.
    size: steps in this chunk.
    state: the :class:`ngrok_jax.TrainState` after the chunk.
    rows: this chunk's metric rows (one per seed).
    history: every metric row of this method so far, this chunk's included.
    wall_time: training seconds of this method so far.
    done: the method ends after this chunk (budget spent; hooks may set it).
  """
  method: str
  step: int
  steps: int
  size: int
  state: Any
  rows: List[dict]
  history: List[dict]
  wall_time: float
  done: bool = False


Hook = Callable[[Chunk], None]


def close_hooks(hooks: Sequence[Hook]) -> None:
  """Calls ``close()`` on every hook that has one.

  Args:
    hooks: the hooks.
  """
  for h in hooks:
    close = getattr(h, "close", None)
    if callable(close):
      close()


#: What the first and the second signal do, said at once (``{name}``:
#: SIGINT or SIGTERM).
STOP_NOTICE = ("{name} received: stopping at the next checkpoint (the end of "
               "the current chunk, or of the compilation); Ctrl-C again to "
               "abort")
ABORT_NOTICE = "Ctrl-C again: aborting without a new checkpoint"


class StopFlag:
  """SIGINT/SIGTERM handler that only sets ``signum`` (installed in the main
  thread for the ``with`` block; a second SIGINT raises KeyboardInterrupt).

  ``notify`` (a callable taking one line) is told at once what a signal will
  do (:data:`STOP_NOTICE`, then :data:`ABORT_NOTICE`), whatever the main
  thread is doing, compiling included: the C-level handler writes the
  signal to a wakeup socket (:func:`signal.set_wakeup_fd`) that a helper
  thread reads, where Python's own handler only runs once the main thread
  is back in Python code.
  """

  def __init__(self, notify: Optional[Callable[[str], None]] = None):
    self.signum: Optional[int] = None
    self.notify = notify
    self._old: Dict[int, Any] = {}
    self._wakeup: Optional[tuple] = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in (signal.SIGINT, signal.SIGTERM):
        self._old[s] = signal.signal(s, self._handle)
      if self.notify is not None:
        self._start_notices()
    return self

  def _start_notices(self) -> None:
    import socket
    r, w = socket.socketpair()
    w.setblocking(False)
    try:
      old_fd = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
      r.close(), w.close()
      return
    self._wakeup = (r, w, old_fd)
    threading.Thread(target=self._notices, args=(r,), daemon=True,
                     name="ngrok_jax-stop-notices").start()

  def _notices(self, r) -> None:
    seen = 0
    while True:
      try:
        data = r.recv(64)
      except OSError:
        return
      if not data:
        return
      for signum in data:
        if signum not in (signal.SIGINT, signal.SIGTERM):
          continue
        seen += 1
        if seen == 1:
          self.notify(STOP_NOTICE.format(name=signal.Signals(signum).name))
        elif signum == signal.SIGINT:
          self.notify(ABORT_NOTICE)

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # second Ctrl-C: stop waiting for the chunk
    self.signum = signum

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)
    if self._wakeup is not None:
      r, w, old_fd = self._wakeup
      signal.set_wakeup_fd(old_fd)
      w.close()
      r.close()
      self._wakeup = None
    return False


class DivergenceBound:
  """Marks a seed diverged (``diverged_at``, in this chunk's rows and every
  later one) once its mean training loss over a chunk is above ``limit``
  (default :data:`DIVERGED_LOSS`) or not finite.

  "Diverged" in a run's rows and summary: the seed's loss or weights became
  non-finite (the state then freezes its parameters, ``diverged_at`` the
  step) or its training loss exceeded the finite bound at an evaluation
  (``diverged_at`` that evaluation's step; it keeps training, but counts
  as diverged and its curves are masked from there on).  Runs first, so the
  metrics file and the checkpoint see the marked rows.
  """

  def __init__(self, limit: float = DIVERGED_LOSS):
    self.limit = limit

  def __call__(self, chunk: Chunk) -> None:
    earlier = {}  # (task, seed): a run with tasks has a row per both
    for r in chunk.history[:len(chunk.history) - len(chunk.rows)]:
      d = r.get("diverged_at")
      if d is not None and d >= 0:
        earlier[r.get("task"), r["seed"]] = int(d)
    for r in chunk.rows:
      loss, d = r.get("batch_loss"), r.get("diverged_at")
      if d is not None and d >= 0:
        continue
      if (r.get("task"), r["seed"]) in earlier:
        r["diverged_at"] = earlier[r.get("task"), r["seed"]]
      elif loss is None or not loss <= self.limit:
        r["diverged_at"] = int(chunk.step)


def sync_stop(stop: StopFlag) -> bool:
  """Whether any process has a stop signal.

  Sets ``stop.signum`` (SIGTERM if this process saw none) so that every
  process stops at the same chunk.  Every process must call it.

  Args:
    stop: this process's stop flag (set by SIGINT/SIGTERM).

  Returns:
    True when some process has seen a stop signal.
  """
  import jax
  from ngrok_jax._src.core.distributed import any_process
  if jax.process_count() > 1 and stop.signum is None and any_process(False):
    stop.signum = signal.SIGTERM
  elif jax.process_count() > 1 and stop.signum is not None:
    any_process(True)
  return stop.signum is not None


class AgreeOnStop:
  """First hook of a multi-process run: :func:`sync_stop` at every chunk
  boundary, before the checkpoint hook decides whether to save."""

  def __init__(self, stop: StopFlag):
    self.stop = stop

  def __call__(self, chunk: Chunk) -> None:
    del chunk
    sync_stop(self.stop)


def _median_test_acc(chunk: Chunk) -> str:
  acc = [r.get("test/acc") for r in chunk.rows]
  acc = np.array([np.nan if a is None else a for a in acc], np.float64)
  med = np.nanmedian(acc) if np.isfinite(acc).any() else np.nan
  return f"median test acc {med:.3f}"


class ProgressBar:
  """A tqdm bar per method (disabled: no output), postfix: median test
  accuracy over seeds, or ``postfix(chunk)``; ``unit``: what a step is
  called."""

  def __init__(self, total: int, initial: int, desc: str, enabled: bool,
               unit: str = "step",
               postfix: Optional[Callable[[Chunk], str]] = None):
    from tqdm.auto import tqdm
    self.postfix = postfix or _median_test_acc
    self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                    disable=not enabled, dynamic_ncols=True, leave=True,
                    file=sys.stderr, mininterval=0.5)

  def __call__(self, chunk: Chunk) -> None:
    self.bar.set_postfix_str(self.postfix(chunk), refresh=False)
    self.bar.update(chunk.size)

  def close(self) -> None:
    self.bar.close()


class EarlyStop:
  """Sets ``chunk.done`` once every seed has held test accuracy >=
  ``stop_acc`` for the ``stop_after`` most recent evaluations."""

  def __init__(self, stop_after: Optional[int], stop_acc: float,
               seeds: Sequence[int], report: Callable[[str], None]):
    self.stop_after, self.stop_acc = stop_after, stop_acc
    self.seeds, self.report = list(seeds), report

  def held(self, method: str, history: Sequence[dict]) -> bool:
    """Whether every seed has held the accuracy long enough to stop.

    Args:
      method: the method.
      history: its metric rows so far.

    Returns:
      True once ``stop_after`` evaluations in a row held ``stop_acc``.
    """
    return bool(self.stop_after) and results.held_evaluations(
        history, method, self.seeds, self.stop_acc) >= self.stop_after

  def __call__(self, chunk: Chunk) -> None:
    if chunk.done or not self.held(chunk.method, chunk.history):
      return
    chunk.done = True
    self.report(f"{chunk.method}: every seed held test accuracy >= "
                f"{self.stop_acc} for {self.stop_after} evaluations; "
                f"stopped at step {chunk.step} of {chunk.steps}")


class MetricsWriter:
  """Appends each chunk's rows to ``out_dir/metrics.jsonl``."""

  def __init__(self, out_dir: str):
    self.out_dir = out_dir

  def __call__(self, chunk: Chunk) -> None:
    results.append_metrics(self.out_dir, chunk.rows)


class CheckpointSaver:
  """Saves a checkpoint every ``every`` steps (``None``/0: never on an
  interval), at the method's last chunk and when ``stop`` has a signal;
  the save is asynchronous (awaited by ``close``).  What it holds is
  ``contents(chunk)``, a ``(state, meta)`` pair or None where no
  checkpoint can be taken (:meth:`ngrok_jax.runner.Engine.checkpoint`);
  without ``contents``: the state and the method's history (``meta``:
  ``rows``, ``wall_time``, ``extra``)."""

  def __init__(self, checkpointer, every: Optional[int], stop: StopFlag,
               extra: Dict[str, Any],
               contents: Optional[Callable[[Chunk], Any]] = None):
    self.ckpt, self.every, self.stop, self.extra = (checkpointer, every, stop,
                                                    extra)
    self.contents = contents or self._history

  def _history(self, chunk: Chunk):
    return chunk.state, dict(rows=list(chunk.history),
                             wall_time=chunk.wall_time, extra=self.extra)

  def __call__(self, chunk: Chunk) -> None:
    if (chunk.done or self.stop.signum is not None or
        (self.every and chunk.step % self.every == 0)):
      got = self.contents(chunk)
      if got is not None:
        self.ckpt.save(chunk.step, *got)

  def close(self) -> None:
    self.ckpt.wait()


class StopOnSignal:
  """Raises :class:`RunInterrupted` when a signal arrived and the method is
  not done (the checkpoint hook has saved this chunk first); its line is
  ``message(chunk, signal name)`` if given."""

  def __init__(self, stop: StopFlag, out_dir: Optional[str], saves: bool,
               message: Optional[Callable[[Chunk, str], str]] = None):
    self.stop, self.out_dir, self.saves = stop, out_dir, saves
    self.message = message or self._message

  def _message(self, chunk: Chunk, name: str) -> str:
    where = (f"checkpoint saved; resume with: ngrok-jax train --resume "
             f"{self.out_dir}" if self.saves else
             "no run folder, nothing saved")
    return (f"{name} received: stopped {chunk.method} at step "
            f"{chunk.step}/{chunk.steps}; {where}")

  def __call__(self, chunk: Chunk) -> None:
    if self.stop.signum is None or chunk.done:
      return
    name = signal.Signals(self.stop.signum).name
    raise RunInterrupted(self.message(chunk, name), self.stop.signum,
                         self.out_dir)


class TimeLimit:
  """Ends the run (``chunk.done``, so that the checkpoint hook after it
  saves) at the first chunk past ``minutes`` of wall time from the hook's
  making where ``can_stop(chunk)`` allows (default: any chunk); 0: no
  limit.  A pending stop signal takes precedence (the run is interrupted,
  not ended).

  Args:
    minutes: the limit (0: none).
    stop: the run's stop flag.
    can_stop: whether the run may end after this chunk.
  """

  def __init__(self, minutes: float, stop: StopFlag,
               can_stop: Optional[Callable[[Chunk], bool]] = None):
    self.limit, self.stop = 60.0 * minutes, stop
    self.can_stop = can_stop or (lambda chunk: True)
    self.t0 = time.perf_counter()

  def __call__(self, chunk: Chunk) -> None:
    if (not self.limit or chunk.done or self.stop.signum is not None or
        time.perf_counter() - self.t0 <= self.limit):
      return
    if self.can_stop(chunk):
      chunk.done = True
