"""Checkpoints of the whole vmapped training state with orbax-checkpoint.

One :class:`Checkpointer` per (run folder, method) wraps an
``ocp.CheckpointManager`` whose checkpoints are composites of

* ``state``: every leaf of the :class:`ngrok_jax.TrainState` (all seeds:
  model params, optimizer states, GrokFast buffers, amplifier params, meta
  optimizer state, RNG keys, per-seed hyperparameters, ``diverged_at``, the
  step counter), flattened to ``{"000": array, ...}`` (``StandardSave``);
* ``meta``: JSON (``JsonSave``) with the step, the metrics history so far,
  the accumulated wall time, and a SHA-256 checksum of the state leaves.

Saves are asynchronous (the arrays are copied to host memory first, so the
donated device buffers can be reused at once); :meth:`Checkpointer.close`
waits for them.  :meth:`Checkpointer.restore_latest` walks the checkpoints
from the newest down and returns the first one that restores and whose
checksum matches, reporting every one it had to skip, so a truncated or
corrupted newest checkpoint falls back to the previous good one.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Callable, List, Mapping, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "state_checksum", "CheckpointError"]

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """No usable checkpoint (all missing, truncated or corrupted)."""


def _flatten(state) -> Tuple[dict, Any]:
  leaves, treedef = jax.tree.flatten(state)
  return {f"{i:04d}": np.array(l) for i, l in enumerate(leaves)}, treedef


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
    flat, _ = _flatten(state)
    meta = dict(meta, step=int(step), checksum=state_checksum(state),
                num_leaves=len(flat))
    self.manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)),
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
    template's leaves (shape, dtype) or fails its checksum.
    """
    flat_t, treedef = _flatten(template)
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                for k, v in flat_t.items()}
    try:
      out = self.manager.restore(int(step), args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - any read failure means unusable
      msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise CheckpointError(f"checkpoint {step} in {self.directory} cannot "
                            f"be read ({type(e).__name__}: {msg[:200]})") from e
    meta = dict(out["meta"])
    flat = out["state"]
    if set(flat) != set(flat_t):
      raise CheckpointError(f"checkpoint {step} has a different state "
                            "structure than this configuration")
    leaves = []
    for k in sorted(flat_t):
      a = np.asarray(flat[k])
      if a.shape != flat_t[k].shape or a.dtype != flat_t[k].dtype:
        raise CheckpointError(
            f"checkpoint {step}: leaf {k} is {a.dtype}{list(a.shape)}, "
            f"expected {flat_t[k].dtype}{list(flat_t[k].shape)}")
      leaves.append(a)
    state = jax.tree.unflatten(treedef, leaves)
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
    that step can then be saved); if every checkpoint is bad,
    :class:`CheckpointError` is raised.
    """
    report = report or log.warning
    steps = self.steps()
    if not steps:
      return None
    errors = []
    for step in reversed(steps):
      try:
        state, meta = self.restore(step, template)
      except CheckpointError as e:
        errors.append(str(e))
        moved = self._quarantine(step)
        report(f"skipping bad checkpoint: {e}" +
               (f"; moved aside to {moved}" if moved else ""))
        continue
      if errors:
        self.manager.reload()
      return step, state, meta
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
