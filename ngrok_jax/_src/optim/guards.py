"""What every public transform does with the leaves it is given.

* Float leaves only: :func:`check_float_leaves` raises a one-line
  ``ValueError`` naming the first other leaf by its pytree path (at trace
  time, so it costs nothing in a compiled step).
* Zero-size leaves pass through (as in optax's own transforms).
* Non-finite gradients are confined to their step (docs/transforms.md,
  "Non-finite gradients"): a stateless transform that works per tensor
  zeroes the update of a tensor holding a NaN or an infinity
  (:func:`zero_nonfinite_leaves`); a stateful transform, or one that mixes
  tensors (a global norm), skips the whole step (:func:`skip_nonfinite`):
  its update is zero and its state is the state it was given, so its step
  count does not advance (steps seen minus the state's count is the number
  of skipped steps) and later clean steps are exactly those of a run
  without the bad step.  On a clean step every guard is a ``jnp.where``
  that selects the computed value, bit for bit.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp

__all__ = ["check_float_leaves", "all_finite", "zero_nonfinite_leaves",
           "select_tree", "skip_nonfinite"]


def check_float_leaves(tree, owner: str) -> None:
  """Raises ``ValueError`` (one line, naming the leaf's pytree path) if a
  leaf of ``tree`` is not a floating-point array.

  Args:
    tree: the updates (gradients) given to a transform.
    owner: the transform's name, for the message.
  """
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      where = jax.tree_util.keystr(path) or "(the root)"
      raise ValueError(f"{owner}: leaf {where} is {dtype}; gradients must "
                       f"be floating-point arrays (cast it, or leave it out "
                       f"of the tree with optax.masked)")


def all_finite(tree) -> jax.Array:
  """A bool scalar: every entry of every leaf of ``tree`` is finite (True
  for a tree without entries)."""
  leaves = [l for l in jax.tree.leaves(tree) if jnp.size(l)]
  if not leaves:
    return jnp.asarray(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(l)) for l in leaves]))


def zero_nonfinite_leaves(tree):
  """``tree`` with every leaf that holds a NaN or an infinity replaced by
  zeros (the others untouched, bit for bit)."""
  return jax.tree.map(
      lambda l: jnp.where(jnp.all(jnp.isfinite(l)), l, jnp.zeros_like(l)),
      tree)


def select_tree(ok, new, old):
  """Leafwise ``new`` where ``ok`` (a bool scalar) else ``old``, in
  ``new``'s dtypes."""
  return jax.tree.map(
      lambda n, o: jnp.where(ok, n, o).astype(jnp.result_type(n)), new, old)


def skip_nonfinite(update_fn: Callable[..., Tuple[Any, Any]], owner: str
                   ) -> Callable[..., Tuple[Any, Any]]:
  """``update_fn(updates, state, params, **kw)`` made to skip a step whose
  updates hold a NaN or an infinity: zero updates, the state unchanged.

  The wrapped function sees zeros in place of such updates (so that nothing
  it computes on the way is non-finite, gradients through it included) and
  its results are then discarded.  Float leaves are checked first
  (:func:`check_float_leaves`).

  Args:
    update_fn: a transform's update function.
    owner: the transform's name, for the messages.

  Returns:
    The guarded update function (same signature).
  """
  def update(updates, state, params=None, **kwargs):
    check_float_leaves(updates, owner)
    ok = all_finite(updates)
    safe = jax.tree.map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)),
                        updates)
    out, new_state = update_fn(safe, state, params, **kwargs)
    out = jax.tree.map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), out)
    return out, select_tree(ok, new_state, state)
  return update
