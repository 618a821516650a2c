"""Run folders that are never lost: checks before the first byte, rollback
of a failed start, what ``--resume --force`` may change, resource limits,
and orbax's log noise kept out of the terminal.

* :func:`check_new_folder`: a new run goes into a missing or empty folder
  (never one holding files the library did not write: refused, naming
  them), never below a regular file.
* :func:`check_change`: a resume with a different configuration may change
  only what the checkpointed state does not fix: the numeric
  hyperparameters (:data:`ngrok_jax.HPARAMS`; the state carries them,
  and :func:`ngrok_jax.runner` replaces them after the restore so that the
  new values take effect from the resumed step), the step budget (raised,
  never below a step already reached), intervals, the early stop, and
  the fields that are compiled into the program without changing the
  state's shapes.  A change to :data:`FIXED` is refused, naming the field.
  Accepted changes are appended to ``changes.jsonl`` (:data:`HISTORY`), and
  each method's resume after them with its step.
* :class:`Guard`: one writer per folder and no half-made run.  It takes
  the folder's exclusive lock (:mod:`ngrok_jax._src.storage.folderlock`)
  for its whole life, before it looks at the folder: a second writer is
  refused (:class:`FolderBusy`, naming the holder) having touched nothing.
  A failed start (an exception before the first chunk is trained) leaves
  the folder as it was: files and folders this process created are
  removed (but the ``errors.log`` of an existing run), the run files it
  changed are written back.  Checkpoints found unreadable stay renamed
  ``corrupt.*``.
* :func:`check_resources`: bounds on ``p`` and the example count, and an
  estimate of the memory of the data and the state, refused with the
  estimate when it exceeds the memory available.

The log noise of a run (``errors.log``) and the full-disk check are
:mod:`ngrok_jax._src.storage.run_noise`'s.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Dict, Optional

from ngrok_jax._src.core.fileio import append_text
from ngrok_jax._src.storage.folderlock import FolderBusy, lock_folder
from ngrok_jax._src.storage.run_noise import NOISE_LOG

__all__ = ["FIXED", "HISTORY", "MAX_EXAMPLES", "MAX_P", "check_new_folder",
           "check_change", "record_resume", "Guard", "FolderBusy",
           "mark_progress", "check_resources", "estimate_bytes"]

#: TrainConfig fields that fix the state's shapes or the data: a resume
#: refuses to change them (also the run-level ``methods``, ``seeds``,
#: ``amplifier`` and ``amplifier_seed``).
FIXED = ("task", "p", "fractions", "split_seed", "depth", "dim", "heads",
         "init", "batching", "batch_size", "train_on_outer", "amp_hidden",
         "amp_method", "amp_inputs", "window", "meta_axis_name")
_FIXED_RUN = ("methods", "seeds", "amplifier", "amplifier_seed", "tasks")
#: The run folder's record of configuration changes made by a resume.
HISTORY = "changes.jsonl"
#: Largest number of examples of a task (p^2 for a binary operation).
MAX_EXAMPLES = 1 << 22
#: Largest modulus (the vocabulary is about p tokens).
MAX_P = 1 << 16
_SNAPSHOT = ("config.json", "metrics.jsonl", "summary.json", HISTORY)


# ------------------------------------------------------------ new folders
def _check_path(out_dir) -> str:
  if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir).strip():
    raise ValueError(f"out_dir must be a folder path, got {out_dir!r}")
  out_dir = os.fspath(out_dir)
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"out_dir {out_dir!r} exists and is not a folder")
  parent = os.path.dirname(os.path.abspath(out_dir))
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if parent and not os.path.isdir(parent):
    raise ValueError(f"out_dir {out_dir!r} lies below {parent!r}, which is "
                     "a file, not a folder")
  return out_dir


def check_new_folder(out_dir) -> None:
  """ValueError unless ``out_dir`` can take a new run: missing or empty
  (a folder holding a run, or files of something else, is refused; the
  message names the files)."""
  out_dir = _check_path(out_dir)
  if not os.path.isdir(out_dir):
    return
  if any(os.path.exists(os.path.join(out_dir, n))
         for n in ("config.json", "cross_task.json")):
    raise ValueError(f"{out_dir!r} already holds a run; resume it with "
                     f"--resume {out_dir} or choose a new --out")
  names = sorted(os.listdir(out_dir))
  if names:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more"
                                    if len(names) > 5 else "")
    raise ValueError(f"{out_dir!r} holds files that are not a run of "
                     f"ngrok_jax ({shown}); choose a new or empty --out")


# --------------------------------------------------------------- resuming
def _field_value(d: Dict[str, Any], name: str):
  for part in name.split("."):
    d = d.get(part) if isinstance(d, dict) else None
  return d


def _reached(out_dir: str, method: str) -> int:
  """The newest checkpoint step of ``method`` in ``out_dir`` (0: none);
  a run with tasks keeps its steps in ``checkpoints/`` itself."""
  steps = []
  for d in (os.path.join(out_dir, "checkpoints", method),
            os.path.join(out_dir, "checkpoints")):
    if os.path.isdir(d):
      steps += [int(n) for n in os.listdir(d) if n.isdigit()]
  return max(steps, default=0)


def check_change(saved, spec, out_dir: str) -> Dict[str, Any]:
  """What a resume with ``spec`` changes in the run saved as ``saved``.

  Returns:
    ``{field: {"old": v, "new": v}}`` (``configs.<method>.<field>`` for
    per-method fields); empty when nothing changes.

  Raises:
    ValueError: a change to a field that fixes the state's shapes or the
      data (:data:`FIXED`, methods, seeds, the frozen amplifier), or
      ``steps`` below a step a method has already reached; the message
      names the field.
  """
  names = saved.diff(spec)
  fixed = []
  for n in names:
    parts = n.split(".")
    if parts[0] in _FIXED_RUN or (parts[0] == "configs" and (
        len(parts) == 2 or parts[2] in FIXED)):
      fixed.append("methods" if len(parts) == 2 else n)
  if fixed:
    raise ValueError(
        f"cannot change {', '.join(dict.fromkeys(fixed))} of the run in "
        f"{out_dir}: the checkpoints' state and data depend on "
        f"{'it' if len(fixed) == 1 else 'them'} (start a new run with "
        "--out instead)")
  if "steps" in names:
    for m in spec.methods:
      at = _reached(out_dir, m)
      if at > spec.steps:
        raise ValueError(f"steps {spec.steps} is below step {at} that "
                         f"{m} has reached in {out_dir}; a run can be "
                         "extended, not shortened (start a new run with "
                         "--out instead)")
  a, b = saved.to_dict(), spec.to_dict()
  return {n: {"old": _field_value(a, n), "new": _field_value(b, n)}
          for n in names}


def record_change(out_dir: str, changes: Dict[str, Any]) -> None:
  """Appends a configuration change to the folder's :data:`HISTORY`."""
  append_text(os.path.join(out_dir, HISTORY), json.dumps(dict(
      event="change", time=time.strftime("%Y-%m-%dT%H:%M:%S"),
      fields=changes)) + "\n")


def record_resume(out_dir: Optional[str], method: str, step: int) -> None:
  """Appends ``method`` resumed at ``step`` to :data:`HISTORY` if the folder
  has one (the changes before it apply to the method from this step)."""
  path = os.path.join(out_dir or "", HISTORY)
  if out_dir is not None and os.path.isfile(path):
    append_text(path, json.dumps(dict(event="resume", method=method,
                                      step=int(step))) + "\n")


# ---------------------------------------------------------------- rollback
_ACTIVE: Dict[str, "Guard"] = {}


class Guard:
  """Holds a run folder's lock (creating the folder) and restores the
  folder as it was if the run fails before it trains a chunk (``with
  Guard(out_dir): ...``; nested guards of the same folder are one, the
  outermost holds the lock).  :func:`mark_progress` ends the guarding;
  the lock is held until the ``with`` ends.

  Args:
    out_dir: the run folder (``None``: nothing guarded).

  Raises:
    FolderBusy: on entry, when another process holds the folder.
  """

  def __init__(self, out_dir: Optional[str]):
    self.key = None if out_dir is None else os.path.abspath(out_dir)
    self.outer = self.key is not None and self.key not in _ACTIVE
    self.progress = False

  def __enter__(self):
    if not self.outer:
      return self
    self.lock = lock_folder(self.key)  # first: then the folder is ours
    try:
      self.existed = not self.lock.created
      self.entries = set(os.listdir(self.key))
      self.saved = {}
      for n in _SNAPSHOT:
        p = os.path.join(self.key, n)
        if os.path.isfile(p):
          with open(p, "rb") as f:
            self.saved[n] = f.read()
    except BaseException:
      self.lock.release()
      raise
    _ACTIVE[self.key] = self
    return self

  def __exit__(self, typ, exc, tb):
    if not self.outer:
      return False
    del _ACTIVE[self.key]
    try:
      if typ is not None and not self.progress and issubclass(typ,
                                                              Exception):
        self._rollback()
    except OSError:  # e.g. the disk is full: keep the first error
      pass
    finally:
      self.lock.release()
    return False

  def _rollback(self) -> None:
    if not self.existed:
      shutil.rmtree(self.key, ignore_errors=True)
      return
    ours = "config.json" in self.entries  # a run folder keeps its log
    for n in set(os.listdir(self.key)) - self.entries:
      if ours and n == NOISE_LOG:
        continue
      p = os.path.join(self.key, n)
      if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
      else:
        os.remove(p)
    for n, data in self.saved.items():
      p = os.path.join(self.key, n)
      if os.path.isfile(p):
        with open(p, "rb") as f:
          if f.read() == data:
            continue  # unchanged: not written again
      with open(p, "wb") as f:
        f.write(data)


def mark_progress(out_dir: Optional[str]) -> None:
  """A chunk of training is saved in ``out_dir``: from now on a failure
  keeps the folder (it can be resumed)."""
  g = _ACTIVE.get(os.path.abspath(out_dir)) if out_dir else None
  if g is not None:
    g.progress = True


# --------------------------------------------------------------- resources
def _available_bytes() -> Optional[int]:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return None


def estimate_bytes(spec) -> int:
  """Estimated peak memory of one method's data and state (the largest of
  the run's methods): the examples (built as Python tuples first), each
  seed's index rows, and three copies of the per-seed state (the state, the
  step's new state and gradients), whose shapes come from
  ``jax.eval_shape`` (nothing allocated); a run with tasks holds all of
  that once per task."""
  import jax
  import numpy as np
  from ngrok_jax._src.training.config import num_examples
  from ngrok_jax._src.training.methods import model_of, task_of
  from ngrok_jax._src.training.train import seed_state
  worst = 0
  for cfg in spec.configs.values():
    n = num_examples(cfg.task, cfg.p)
    seq = task_of(cfg).seq_len if cfg.p <= MAX_P else 4
    s = len(spec.seeds)
    data = n * (seq + 1) * 4 + s * n * 4 + n * 150

    def one(key, cfg=cfg, seq=seq):
      params = model_of(cfg).init(key, jax.numpy.zeros((1, seq), "int32"))
      return seed_state(cfg, params, key=key)
    shapes = jax.eval_shape(one, jax.random.PRNGKey(0))
    per_seed = sum(int(np.prod(l.shape)) * l.dtype.itemsize
                   for l in jax.tree.leaves(shapes))
    worst = max(worst, data + 3 * s * per_seed)
  return worst * max(1, len(getattr(spec, "tasks", ())))


_ESTIMATES: Dict[Any, int] = {}


def check_resources(spec, memory: bool = True) -> None:
  """ValueError when a method's task is beyond :data:`MAX_P` /
  :data:`MAX_EXAMPLES`, or (``memory``) the estimated memory of data and
  state (:func:`estimate_bytes`, about a second) exceeds the memory
  available."""
  from ngrok_jax._src.training.config import num_examples
  from ngrok_jax._src.training.methods import program_config
  for m, cfg in spec.configs.items():
    if cfg.p > MAX_P:
      raise ValueError(f"p must be <= {MAX_P}, got {cfg.p}")
    n = num_examples(cfg.task, cfg.p)
    if n > MAX_EXAMPLES:
      raise ValueError(f"task {cfg.task} mod {cfg.p} has {n} examples, "
                       f"more than the {MAX_EXAMPLES} allowed: choose a "
                       "smaller p")
  if not memory:
    return
  # the shapes decide: the configs' structure (not their per-seed
  # hyperparameters, which would trace the state again), seeds and tasks
  key = (tuple((m, program_config(c)) for m, c in spec.configs.items()),
         len(spec.seeds), len(getattr(spec, "tasks", None) or ()))
  if key not in _ESTIMATES:  # the CLI checks before its trackers, then run
    _ESTIMATES[key] = estimate_bytes(spec)
  need, have = _ESTIMATES[key], _available_bytes()
  if have is not None and need > have:
    raise ValueError(f"the data and state need about {need / 2**30:.2f} GiB "
                     f"of memory, {have / 2**30:.2f} GiB is available: "
                     "fewer seeds, a smaller model or a smaller p")
