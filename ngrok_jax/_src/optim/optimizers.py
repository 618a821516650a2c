"""The inner optimizers of the training methods: :func:`coupled_adam`
(PyTorch-style ``Adam(weight_decay=wd)``, the decay added to the gradient,
after a global-norm clip and with a linear warm-up; or AdamW) and
:func:`clip_by_global_norm` (the norm accumulated in float32).  Both are
optax factories; :mod:`ngrok_jax._src.optim.transforms` re-exports them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ngrok_jax._src.optim.guards import (all_finite, check_float_leaves,
                                         skip_nonfinite)

__all__ = ["coupled_adam", "clip_by_global_norm"]


def coupled_adam(learning_rate, weight_decay=0.0, b1=0.9, b2=0.98, eps=1e-8,
                 eps_root=0.0, warmup_steps: int = 10, clip_norm=1.0,
                 decoupled: bool = False) -> optax.GradientTransformation:
  r"""PyTorch ``Adam(weight_decay=wd)`` after a global-norm clip, with warm-up.

  .. math::
      g \leftarrow \mathrm{clip}(g, \text{clip\_norm}) + \mathrm{wd}\,\theta,
      \qquad \Delta\theta = -\eta_t\, \hat m / (\sqrt{\hat v + \epsilon_{root}}
      + \epsilon), \qquad \eta_t = \eta \min(1, t / \text{warmup}).

  All numeric arguments may be traced arrays (no recompilation when they
  change); ``warmup_steps`` is static. ``clip_norm=inf`` disables clipping.
  Mixed precision: the clip's norm is accumulated in float32, and bfloat16
  leaves keep their dtype (updates and state) with array hyperparameters.
  ``eps_root > 0`` is needed to differentiate through this step.
  A step whose gradient holds a NaN or an infinity is skipped: zero
  update, the state (moments, counts) unchanged.
  ``decoupled=True`` gives AdamW instead (decay added after the Adam scaling:
  :math:`\Delta\theta = -\eta_t(\hat m/(\sqrt{\hat v}+\epsilon) + \mathrm{wd}\,\theta)`).

  Args:
    learning_rate: the peak learning rate :math:`\eta`.
    weight_decay: the weight decay; added to the gradient (coupled, L2) or,
      with ``decoupled=True``, to the Adam step.
    b1: Adam's first-moment decay.
    b2: Adam's second-moment decay (0.98, the reference code's value).
    eps: added to :math:`\sqrt{\hat v}`.
    eps_root: added to :math:`\hat v` inside the square root.
    warmup_steps: the length of the linear warm-up from 0 (0: none).
    clip_norm: the global-norm clip applied first (``inf``: no clip).
    decoupled: AdamW (decoupled decay) instead of coupled decay.

  Returns:
    An ``optax.GradientTransformation`` (a chain of the clip, the decay,
    Adam's scaling and the scheduled learning rate) whose updates keep the
    incoming updates' dtypes.
  """
  if warmup_steps > 0:
    lr = optax.linear_schedule(0.0, learning_rate, int(warmup_steps))
  else:
    lr = learning_rate
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
  decay = optax.add_decayed_weights(weight_decay)
  return _keep_dtypes(optax.chain(
      clip_by_global_norm(clip_norm),
      *((adam, decay) if decoupled else (decay, adam)),
      optax.scale_by_learning_rate(lr),
  ))


def clip_by_global_norm(max_norm) -> optax.GradientTransformation:
  """``optax.clip_by_global_norm`` (same operations and empty state; the
  same result for float32 leaves) for mixed precision: the norm is
  accumulated in float32 (optax sums a bfloat16 leaf's squares in bfloat16,
  so the clip factor of every leaf, float32 ones included, had bfloat16
  precision), and clipped leaves keep their dtype when ``max_norm`` is a
  float32 array (optax's ``lax.select`` raises a TypeError for a bfloat16
  leaf then).  Updates holding a NaN or an infinity anywhere give zero
  updates (optax's would be NaN everywhere).

  Args:
    max_norm: the largest global L2 norm of the updates (a number or an
      array; ``inf`` leaves them unchanged).

  Returns:
    An ``optax.GradientTransformation`` with an empty state.
  """

  def update_fn(updates, state, params=None):
    del params
    check_float_leaves(updates, "clip_by_global_norm")
    ok = all_finite(updates)  # a global norm: a bad leaf zeroes the step
    g_norm = optax.tree.norm(jax.tree.map(
        lambda t: t.astype(jnp.promote_types(t.dtype, jnp.float32)), updates))
    trigger = jnp.squeeze(g_norm < max_norm)

    def clip(t):
      scaled = (t / g_norm.astype(t.dtype)) * max_norm
      return jnp.where(ok, jax.lax.select(trigger, t, scaled.astype(t.dtype)),
                       jnp.zeros_like(t))

    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _keep_dtypes(tx: optax.GradientTransformation
                 ) -> optax.GradientTransformationExtraArgs:
  """``tx`` with its updates cast to the incoming updates' dtypes and its new
  state to the old state's.  optax promotes a bfloat16 leaf (its update and
  its Adam moments) to float32 when a hyperparameter is a float32 array, so
  the state's dtypes would change after the first update (a recompilation,
  a ``lax.cond`` type error).  A no-op where nothing was promoted."""
  tx = optax.with_extra_args_support(tx)

  def update_fn(updates, state, params=None, **extra_args):
    new, new_state = tx.update(updates, state, params, **extra_args)
    new = jax.tree.map(lambda n, g: n.astype(g.dtype), new, updates)
    new_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_state, state)
    return new, new_state

  return optax.GradientTransformationExtraArgs(
      tx.init, skip_nonfinite(update_fn, "coupled_adam"))
