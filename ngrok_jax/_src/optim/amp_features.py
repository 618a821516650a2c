"""The per-component features of :class:`ngrok_jax.RichAmplifier`
(``amp_inputs="rich"``): :func:`rich_features` (the gradient, the inner
Adam's moments and the parameter, each divided by its tensor's RMS, with
:func:`rms_normalize`) and :func:`adam_moments` (the inner Adam's state).
:mod:`ngrok_jax._src.optim.amplifier` re-exports ``rich_features`` and ``adam_moments``.
"""
from __future__ import annotations

from typing import Any, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["rms_normalize", "rich_features", "adam_moments"]


def rms_normalize(v: jax.Array) -> jax.Array:
  """``v / rms(v)``; an all-zero ``v`` gives zeros, with finite gradients.

  ``v`` is first divided by ``max|v|`` (the result is scale invariant), so
  that neither huge nor tiny entries overflow or underflow the mean square.

  Args:
    v: an array.

  Returns:
    ``v`` scaled to a root mean square of 1 (zeros if ``v`` is all zero).
  """
  if v.size == 0:
    return v
  m = jnp.max(jnp.abs(v))
  zero = m == 0
  u = v / jnp.where(zero, jnp.ones_like(m), m)
  ms = jnp.mean(jnp.square(u))
  return jnp.where(zero, jnp.zeros_like(u),
                   u / jnp.sqrt(jnp.where(zero, jnp.ones_like(ms), ms)))


def rich_features(grads, mu, nu, params) -> Tuple[jax.Array, jax.Array]:
  r"""The per-component inputs of :class:`RichAmplifier`.

  For every tensor :math:`t` (a leaf of ``grads``) and component :math:`i`:

  .. math::
      x_i = \Big(\frac{g_i}{\mathrm{rms}_t(g)}, \frac{m_i}{\mathrm{rms}_t(m)},
      \frac{\sqrt{v_i}}{\mathrm{rms}_t(\sqrt{v})},
      \frac{\theta_i}{\mathrm{rms}_t(\theta)}\Big),\qquad
      \mathrm{rms}_t(u) = \sqrt{\tfrac{1}{n_t}\textstyle\sum_{j \in t} u_j^2},

  with :math:`m, v` the inner Adam's first and second moments
  (:func:`adam_moments`) and :math:`\theta` the parameters; an all-zero
  feature of a tensor (e.g. the moments before the first step) stays zero.
  Every feature is thus scale free per tensor, as the amplified gradient is.
  :math:`\sqrt{v}` is taken as :math:`\sqrt{v + \epsilon} -
  \sqrt{\epsilon}`, :math:`\epsilon = 10^{-30}`, so that it is 0 where
  :math:`v = 0` and its gradient stays finite there.

  Returns:
    ``(x, ids)``: ``x`` (n, 4) in the leaves' flattening order (the order
    :func:`amplify` concatenates them in), ``ids`` (n,) int32, the index of
    each component's tensor.

  Args:
    grads: the gradient pytree.
    mu: Adam's first moment, a pytree of the structure of ``grads``.
    nu: Adam's second moment, the same structure.
    params: the parameters, the same structure.
  """
  gl, treedef = jax.tree.flatten(grads)
  ml, vl, pl = (treedef.flatten_up_to(t) for t in (mu, nu, params))
  ft = jnp.result_type(jnp.float32, *[l.dtype for l in gl])
  cols, ids = [], []
  for t, (g, m, v, p) in enumerate(zip(gl, ml, vl, pl)):
    f = lambda a: rms_normalize(jnp.ravel(a).astype(ft))
    tiny = jnp.asarray(1e-30, ft)
    root = jnp.sqrt(jnp.ravel(v).astype(ft) + tiny) - jnp.sqrt(tiny)
    cols.append(jnp.stack([f(g), f(m), rms_normalize(root), f(p)], axis=1))
    ids.append(np.full((g.size,), t, np.int32))
  return jnp.concatenate(cols), jnp.asarray(np.concatenate(ids))


def adam_moments(opt_state) -> Tuple[Any, Any]:
  """``(mu, nu)`` of the one ``optax.ScaleByAdamState`` inside ``opt_state``
  (e.g. a chain of clip, weight decay and Adam); ValueError if there is not
  exactly one.

  Args:
    opt_state: an optimizer state holding exactly one
      ``optax.ScaleByAdamState``.

  Returns:
    ``(mu, nu)``, Adam's first and second moments (pytrees of the
    parameters' structure).

  Raises:
    ValueError: ``opt_state`` holds no Adam state, or more than one.
  """
  found = [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
           if isinstance(s, optax.ScaleByAdamState)]
  if len(found) != 1:
    raise ValueError(f"expected one Adam state (optax.ScaleByAdamState) in "
                     f"the inner optimizer's state, found {len(found)}")
  return found[0].mu, found[0].nu
