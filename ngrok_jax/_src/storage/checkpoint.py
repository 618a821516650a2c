"""Checkpoints of the whole vmapped training state with orbax-checkpoint.

One :class:`Checkpointer` per (run folder, method) wraps an
``ocp.CheckpointManager`` whose checkpoints are composites of

* ``state``: the :class:`ngrok_jax.TrainState` pytree as it is
  (``StandardSave``; all seeds: model params, optimizer states, GrokFast
  buffers, amplifier params, meta optimizer state, RNG keys, per-seed
  hyperparameters, ``diverged_at``, the step counter), its leaves named by
  their path (``seeds/params/params/head/kernel``, ...), so plain orbax
  reads it without this module: ``ocp.CheckpointManager(dir,
  item_names=("state", "meta")).restore(step, args=ocp.args.Composite(
  state=ocp.args.StandardRestore()))["state"]`` is a nested dict
  (``["seeds"]["params"]``, ...);
* ``meta``: JSON (``JsonSave``) with the step, the metrics history so far,
  the accumulated wall time, a SHA-256 checksum of the state leaves and
  ``layout: "tree"``.

Checkpoints written before the state was saved as a tree (no ``layout``:
the leaves flattened to ``{"0000": array, ...}``) are still restored, into
the structure of the template.

Saves are asynchronous (the arrays are copied to host memory first, so the
donated device buffers can be reused at once); :meth:`Checkpointer.close`
waits for them.  :meth:`Checkpointer.restore_latest` walks the checkpoints
from the newest down and returns the first one that restores and whose
checksum matches, reporting every one it had to skip, so a truncated or
corrupted newest checkpoint falls back to the previous good one.

Several processes (:mod:`ngrok_jax.distributed`): every process calls
:meth:`Checkpointer.save` and :meth:`Checkpointer.restore_latest`.  The
state is gathered to NumPy in every process before a save (orbax writes
host arrays from process 0 and keeps the processes in step with its
barriers), so a checkpoint is the same files whatever the process count and
resumes on any other; on restore every process reads the checkpoint, they
agree on whether it is usable, and only process 0 moves a bad one aside.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from ngrok_jax._src.core.distributed import (any_process, barrier, is_primary,
                                             to_host)
from ngrok_jax._src.optim.neuralgrok import NeuralGrokState

__all__ = ["Checkpointer", "state_checksum", "CheckpointError",
           "CheckpointMismatch", "Unusable", "resume_from"]

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """No usable checkpoint (all missing, truncated or corrupted)."""


class CheckpointMismatch(CheckpointError):
  """The checkpoint is readable but its state does not fit this
  configuration (never moved aside: it belongs to another configuration)."""


class Unusable(CheckpointError):
  """Every checkpoint is unreadable or corrupted (moved aside)."""


class _Mismatch(Exception):
  """The checkpoint's state does not fit the template."""


#: ``meta["layout"]`` of a checkpoint whose state is the pytree as it is.
TREE = "tree"


def _abstract(tree):
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), tree)


def _legacy_abstract(template) -> dict:
  """The abstract state of a checkpoint of the old flat layout."""
  return {f"{i:04d}": jax.ShapeDtypeStruct(np.shape(l), np.asarray(l).dtype)
          for i, l in enumerate(jax.tree.leaves(template))}


class _NeuralGrokStateV1(NamedTuple):
  """:class:`NeuralGrokState` before it had ``amplifier_init``,
  ``outer_loss_after`` and ``meta_grad_norm`` (checkpoints of that time)."""
  count: Any
  amplifier_params: Any
  meta_state: Any
  inner_state: Any
  outer_loss: Any


def _is_ng(x) -> bool:
  return isinstance(x, NeuralGrokState)


def _v1_template(template):
  """``template`` with every NeuralGrokState in its first form, or None if
  it has none."""
  if not any(_is_ng(x) for x in jax.tree.leaves(template, is_leaf=_is_ng)):
    return None
  return jax.tree.map(lambda x: _NeuralGrokStateV1(*x[:5]) if _is_ng(x)
                      else x, template, is_leaf=_is_ng)


def _from_v1(state):
  """A state restored in the first form, completed: the initial amplifier
  is unknown (NaN: ``amp/dist_init`` reads NaN), no meta step stored."""
  is_v1 = lambda x: isinstance(x, _NeuralGrokStateV1)

  def up(x):
    if not is_v1(x):
      return x
    nan = lambda a: np.full(np.shape(a), np.nan, np.asarray(a).dtype)
    return NeuralGrokState(*x, amplifier_init=jax.tree.map(
        nan, x.amplifier_params), outer_loss_after=nan(x.outer_loss),
                           meta_grad_norm=nan(x.outer_loss))
  return jax.tree.map(up, state, is_leaf=is_v1)


def state_checksum(state) -> str:
  """SHA-256 over dtype, shape and bytes of every leaf (host copy)."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
  return h.hexdigest()


class Checkpointer:
  """Keeps the last ``max_to_keep`` checkpoints of one training state.

  Args:
    directory: folder of this state's checkpoints (created if missing).
    max_to_keep: number of newest checkpoints kept (>= 1).
    async_save: save in a background thread (awaited by :meth:`wait` /
      :meth:`close` and before the next save).
  """

  def __init__(self, directory: str, max_to_keep: int = 3,
               async_save: bool = True):
    if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or (
        max_to_keep < 1):
      raise ValueError(f"max_to_keep must be a positive integer, got "
                       f"{max_to_keep!r}")
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "meta"))

  # ------------------------------------------------------------------ save
  def save(self, step: int, state, meta: Mapping[str, Any]) -> None:
    """Saves ``state`` (any pytree) and JSON-able ``meta`` at ``step``."""
    host = to_host(state)  # a copy (the buffers may be donated), gathered
    meta = dict(meta, step=int(step), checksum=state_checksum(host),
                num_leaves=len(jax.tree.leaves(host)), layout=TREE)
    self.manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(meta)),
        force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # --------------------------------------------------------------- restore
  def steps(self) -> List[int]:
    self.manager.reload()
    return sorted(self.manager.all_steps())

  def restore(self, step: int, template) -> Tuple[Any, dict]:
    """Restores checkpoint ``step`` into the structure of ``template``.

    Raises :class:`CheckpointError` if it cannot be read, does not match the
    template's leaves (shape, dtype) or fails its checksum.  A NeuralGrok
    checkpoint written before ``NeuralGrokState`` had its three last fields
    is restored too, with those fields NaN (the initial amplifier is not
    known any more).
    """
    try:
      return self._restore(step, template)
    except CheckpointError as e:
      v1 = _v1_template(template)
      if v1 is None:
        raise
      try:
        state, meta = self._restore(step, v1)
      except CheckpointError:
        raise e from None
      state = _from_v1(jax.tree.map(np.asarray, state))
      return jax.tree.map(jax.numpy.asarray, state), meta

  def _restore(self, step: int, template) -> Tuple[Any, dict]:
    want = _abstract(template)
    try:
      meta = dict(self.manager.restore(int(step), args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))["meta"])
      tree = meta.get("layout") == TREE
      n = len(jax.tree.leaves(want))
      if meta.get("num_leaves", n) != n:
        raise _Mismatch(f"{meta['num_leaves']} leaves, this configuration's "
                        f"state has {n}")
      abstract = want if tree else _legacy_abstract(template)
      got = self.manager.restore(int(step), args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))["state"]
    except _Mismatch as e:
      raise CheckpointMismatch(f"checkpoint {step} in {self.directory} has a "
                            f"different state structure ({e})") from None
    except Exception as e:  # noqa: BLE001 - any read failure means unusable
      msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
      log.info("checkpoint %s in %s cannot be read", step, self.directory,
               exc_info=True)
      raise CheckpointError(f"checkpoint {step} in {self.directory} cannot "
                            f"be read ({type(e).__name__}: {msg})") from e
    if not tree:  # the old flat layout: leaves in the template's order
      if set(got) != set(abstract):
        raise CheckpointMismatch(f"checkpoint {step} has a different state "
                              "structure than this configuration")
      got = jax.tree.unflatten(jax.tree.structure(template),
                               [got[k] for k in sorted(got)])
    if jax.tree.structure(got) != jax.tree.structure(want):
      raise CheckpointMismatch(f"checkpoint {step} has a different state "
                            "structure than this configuration")
    paths = jax.tree_util.tree_flatten_with_path(want)[0]
    leaves = []
    for (path, w), a in zip(paths, jax.tree.leaves(got)):
      a = np.asarray(a)
      if a.shape != w.shape or a.dtype != w.dtype:
        raise CheckpointMismatch(
            f"checkpoint {step} in {self.directory}: leaf {jax.tree_util.keystr(path)} is "
            f"{a.dtype}{list(a.shape)}, expected {w.dtype}{list(w.shape)}")
      leaves.append(a)
    state = jax.tree.unflatten(jax.tree.structure(template), leaves)
    if meta.get("checksum") != state_checksum(state):
      raise CheckpointError(f"checkpoint {step} in {self.directory} fails "
                            "its checksum (corrupted)")
    state = jax.tree.map(jax.numpy.asarray, state)
    return state, meta

  def _quarantine(self, step: int) -> Optional[str]:
    """Renames a bad checkpoint folder so that a later save of the same
    step can happen (orbax ignores non-numeric folder names)."""
    src = os.path.join(self.directory, str(int(step)))
    if not os.path.isdir(src):
      return None
    dst = os.path.join(self.directory, f"corrupt.{int(step)}.{os.getpid()}")
    n = 0
    while os.path.exists(dst):
      n += 1
      dst = os.path.join(self.directory,
                         f"corrupt.{int(step)}.{os.getpid()}.{n}")
    os.replace(src, dst)
    return dst

  def restore_latest(self, template, report: Optional[Callable[[str], None]]
                     = None) -> Optional[Tuple[int, Any, dict]]:
    """The newest good checkpoint as ``(step, state, meta)``, or None if none.

    Unreadable or corrupted checkpoints are skipped (newest first),
    described through ``report`` (default: ``logging.warning``) and renamed
    to ``corrupt.<step>.<pid>`` (kept for inspection; a new checkpoint of
    that step can then be saved).  If every checkpoint is bad, or there is
    none but earlier ones were moved aside, :class:`Unusable` is raised
    (the same answer every time).  A readable checkpoint whose state does
    not fit ``template`` (another configuration) is never moved:
    :class:`CheckpointMismatch` is raised.
    """
    report = report or log.warning
    steps = self.steps()
    if not steps:
      aside = sorted(n for n in os.listdir(self.directory)
                     if n.startswith("corrupt.")) if os.path.isdir(
                         self.directory) else []
      if aside:
        raise Unusable(f"no usable checkpoint in {self.directory}: the "
                       f"earlier ones were unreadable and moved aside "
                       f"({', '.join(aside)})")
      return None
    errors = []
    for step in reversed(steps):
      error = None
      try:
        state, meta = self.restore(step, template)
      except CheckpointMismatch:
        raise
      except CheckpointError as e:
        error = e
      if any_process(error is not None):  # every process agrees
        error = error or CheckpointError(
            f"checkpoint {step} in {self.directory} cannot be read by "
            "another process")
        errors.append(str(error))
        moved = self._quarantine(step) if is_primary() else None
        barrier(f"ngrok_jax.checkpoint: {step} moved aside")
        report(f"skipping bad checkpoint: {error}" +
               (f"; moved aside to {moved}" if moved else ""))
        continue
      if errors:
        self.manager.reload()
      return step, state, meta
    raise Unusable("no usable checkpoint: " + "; ".join(errors))


def resume_from(ckpt: Checkpointer, fresh, method: str, force: bool,
                report: Callable[[str], None], out_dir: Optional[str]
                ) -> Optional[Tuple[int, Any, dict]]:
  """The runner's resume of one method: the newest good checkpoint of
  ``ckpt`` with the per-seed hyperparameters of ``fresh`` (the initial
  state of the current configuration: a ``--force`` change of a
  hyperparameter takes effect from the resumed step), or None.

  Raises :class:`CheckpointError` when no checkpoint is usable unless
  ``force`` (then the method restarts from step 0, reported and recorded in
  the folder's ``changes.jsonl``).
  """
  from ngrok_jax._src.storage import runfolder
  try:
    got = ckpt.restore_latest(fresh, report=report)
  except Unusable as e:
    if not force:
      raise CheckpointError(f"{method}: {e}; --resume --force restarts "
                            f"{method} from step 0 (its rows are replaced)"
                            ) from None
    report(f"{method}: {e}; restarting it from step 0 because of --force")
    if out_dir is not None and is_primary():
      runfolder.record_change(out_dir, {f"{method}.restart": dict(
          old="no usable checkpoint", new="step 0")})
    return None
  if got is None:
    return None
  step, state, meta = got
  seeds = state.seeds._replace(hparams=fresh.seeds.hparams)
  return step, state._replace(seeds=seeds), meta
