r"""Egalitarian gradient descent (EGD; Pasand and Dohmatob, ICLR 2026) as an
optax transformation.

EGD replaces each weight matrix's gradient :math:`G = U S V^\top` by

.. math::
    \tilde G = (G G^\top)^{-1/2} G = U V^\top,

its polar factor: the same singular directions, every singular value 1, so
the dynamics along all principal directions of the gradient advance at the
same speed.  There is no momentum: the update is
:math:`\Delta W = -\eta\,\tilde G`.  A rank-deficient :math:`G` uses the
Moore-Penrose inverse: singular values at most
:math:`\max(m, n)\,\epsilon\,s_{\max}` (NumPy's ``matrix_rank`` tolerance)
count as zero and their directions are dropped; a zero gradient gives a
zero update.

Leaves that are not matrices are viewed as one: a vector :math:`g`
(biases, LayerNorm scales) as the :math:`1 \times n` matrix, whose polar
factor is :math:`g / \lVert g \rVert` (the unit vector); a scalar as a
:math:`1 \times 1` matrix (its sign); a leaf of more than two axes as the
matrix of its first axis by the others.  Embedding tables are matrices and
get the polar factor too.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ngrok_jax._src.optim.guards import (check_float_leaves,
                                         zero_nonfinite_leaves)

__all__ = ["polar_factor", "scale_by_egd"]


def polar_factor(g: jax.Array) -> jax.Array:
  r"""The polar factor :math:`U V^\top` of ``g`` viewed as a matrix.

  Args:
    g: an array of any shape: 2-D as is, 1-D as a :math:`1 \times n` row,
      0-D as :math:`1 \times 1`, more axes as ``(g.shape[0], -1)``.

  Returns:
    :math:`U V^\top` of the thin SVD :math:`g = U S V^\top` with the
    singular values below :math:`\max(m, n)\,\epsilon\,s_{\max}` dropped,
    in ``g``'s shape and dtype (zeros for a zero ``g``).
  """
  shape, dtype = g.shape, g.dtype
  if g.size == 0:  # nothing to orthogonalise (a zero-size leaf)
    return g
  if g.ndim == 2:
    m = g
  elif g.ndim < 2:
    m = g.reshape(1, -1)
  else:
    m = g.reshape(shape[0], -1)
  m = m.astype(jnp.promote_types(dtype, jnp.float32))
  u, s, vh = jnp.linalg.svd(m, full_matrices=False)
  tol = max(m.shape) * jnp.finfo(m.dtype).eps * jnp.max(s)
  keep = (s > tol).astype(m.dtype)
  out = (u * keep) @ vh
  return out.reshape(shape).astype(dtype)


def scale_by_egd() -> optax.GradientTransformation:
  r"""EGD's gradient transformation: every leaf replaced by its polar
  factor :func:`polar_factor` (stateless; no momentum).

  Follow it with ``optax.scale_by_learning_rate(lr)`` for EGD's step
  :math:`\Delta W = -\eta\, U V^\top`.  The polar factor does not change
  when the gradient is scaled, so a global-norm clip before it has no
  effect.

  A leaf holding a NaN or an infinity gets a zero update (the others
  theirs); zero-size leaves pass through; integer leaves are refused.

  Returns:
    An ``optax.GradientTransformation`` with an empty state.
  """

  def update_fn(updates, state, params=None):
    del params
    check_float_leaves(updates, "scale_by_egd")
    return jax.tree.map(polar_factor, zero_nonfinite_leaves(updates)), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)

