"""Optax gradient transformations: the amplifier, rescaling, GrokFast, the
orthogonal gradient (⊥Grad) and the weight-norm projection (Omnigrok).

Every transform here is a factory returning an ``optax`` transformation, so
it chains with any other::

    tx = optax.chain(
        ngrok_jax.scale_by_amplifier(amp.apply, amp_params),
        optax.clip_by_global_norm(1.0),
        optax.adam(1e-3))
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngrok_jax._src.optim.amplifier import amplify, safe_normalize
from ngrok_jax._src.optim.guards import (all_finite, check_float_leaves,
                                         skip_nonfinite, zero_nonfinite_leaves)
# documented here too (the API page of the transforms)
from ngrok_jax._src.optim.optimizers import clip_by_global_norm, coupled_adam

__all__ = [
    "ScaleByAmplifierState", "scale_by_amplifier",
    "NormalizeGradientsState", "normalize_gradients",
    "GrokfastEmaState", "grokfast_ema",
    "GrokfastMaState", "grokfast_ma",
    "OrthogonalizeGradientsState", "orthogonalize_gradients",
    "ProjectWeightNormState", "project_weight_norm",
    "coupled_adam", "clip_by_global_norm",
]


def _check_scalar(name, value, *, positive=False, unit=False, integer=False):
  """Validates a Python-number hyperparameter; traced values pass through."""
  if isinstance(value, jax.core.Tracer) or isinstance(value, jax.Array):
    return
  if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
    value = value.item()  # a NumPy scalar (np.float32(0.2)): its number
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f"{name} must be a number, got {value!r}")
  if integer and int(value) != value:
    raise ValueError(f"{name} must be an integer, got {value!r}")
  if value != value or value in (float("inf"), float("-inf")):
    raise ValueError(f"{name} must be finite, got {value!r}")
  if positive and value <= 0:
    raise ValueError(f"{name} must be > 0, got {value!r}")
  if unit and not 0 <= value < 1:
    raise ValueError(f"{name} must be in [0, 1), got {value!r}")


class ScaleByAmplifierState(NamedTuple):
  """The amplifier keeps no state (its parameters are frozen or an argument)."""


def scale_by_amplifier(apply_fn: Callable[[Any, jax.Array], jax.Array],
                       params: Optional[Any] = None, *, c: float = 0.2
                       ) -> optax.GradientTransformationExtraArgs:
  r"""Reweights gradient components by a learned score function.

  For every parameter tensor with gradient :math:`g`,

  .. math::
      s = \mathrm{softmax}(f_\phi(g)), \qquad
      g' = c \, \frac{s \odot g}{\lVert s \odot g \rVert_2},

  where :math:`f_\phi` = ``apply_fn(phi, .)`` maps a 1-D array of components
  to a 1-D array of scores of the same length (called once on all components
  of the update).  An all-zero tensor maps to zeros (finite value and
  gradient); a tensor holding a NaN or an infinity gets a zero update (the
  others theirs); a zero-size tensor passes through; an integer leaf is a
  one-line ``ValueError`` naming it (docs/transforms.md, "Non-finite
  gradients").

  Two uses:

  * frozen: ``scale_by_amplifier(amp.apply, phi)`` -- ``phi`` is a constant.
  * learnable: ``scale_by_amplifier(amp.apply)`` and
    ``tx.update(g, state, params, amplifier_params=phi)``; gradients with
    respect to ``phi`` flow through the whole chain.

  Example::

      amp = ngrok_jax.Amplifier(hidden=(128, 128))
      phi = amp.init(jax.random.key(0), jnp.zeros((1,)))
      tx = optax.chain(ngrok_jax.scale_by_amplifier(amp.apply, phi),
                       optax.clip_by_global_norm(1.0), optax.adam(1e-3))

  Args:
    apply_fn: ``apply_fn(amp_params, x)`` with ``x`` of shape (n,).
    params: frozen amplifier parameters, or ``None`` for the learnable form.
    c: the rescaling coefficient (norm of every output tensor); 0.2 is the
      authors' final code's value (NeuralOptGrok a7490be).

  Returns:
    A ``GradientTransformationExtraArgs`` whose update takes the keyword
    ``amplifier_params`` (ignored when ``params`` was given).
  """
  if not callable(apply_fn):
    raise ValueError(f"apply_fn must be callable, got {apply_fn!r}")
  _check_scalar("c", c, positive=True)

  def init_fn(updates):
    del updates
    return ScaleByAmplifierState()

  def update_fn(updates, state, params_=None, *, amplifier_params=None,
                **extra_args):
    del params_, extra_args
    phi = params if params is not None else amplifier_params
    if phi is None:
      raise ValueError(
          "scale_by_amplifier was built without params: pass "
          "amplifier_params=... to update (learnable use) or give params to "
          "the factory (frozen use)")
    check_float_leaves(updates, "scale_by_amplifier")
    return amplify(zero_nonfinite_leaves(updates), lambda x: apply_fn(phi, x),
                   c), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class NormalizeGradientsState(NamedTuple):
  """State of :func:`normalize_gradients` (empty: it keeps no state)."""


def normalize_gradients(c: float = 1.0) -> optax.GradientTransformation:
  r"""The "gradient rescaling" ablation: :math:`g' = c\, g / \lVert g\rVert_2`.

  Applied per parameter tensor; an all-zero tensor stays zero, and so
  does one holding a NaN or an infinity (the others are unaffected).
  Equals :func:`scale_by_amplifier` with a constant score function.

  Example::

      tx = optax.chain(ngrok_jax.normalize_gradients(1.0), optax.adam(1e-3))

  Args:
    c: the norm of every output tensor (> 0).

  Returns:
    An ``optax.GradientTransformation`` with an empty state
    (:class:`NormalizeGradientsState`); ``params`` is not needed.
  """
  _check_scalar("c", c, positive=True)

  def init_fn(updates):
    del updates
    return NormalizeGradientsState()

  def update_fn(updates, state, params=None):
    del params
    check_float_leaves(updates, "normalize_gradients")
    out = jax.tree.map(lambda g: safe_normalize(g, c).astype(g.dtype),
                       zero_nonfinite_leaves(updates))
    return out, state

  return optax.GradientTransformation(init_fn, update_fn)


class GrokfastEmaState(NamedTuple):
  r"""State of :func:`grokfast_ema`: the update count and :math:`\mu_t`.

  ``ema`` has the structure, shapes and dtypes of the updates.
  """
  count: chex.Array  # int32 scalar: updates seen
  ema: optax.Updates


def grokfast_ema(alpha: float = 0.98, lamb: float = 2.0
                 ) -> optax.GradientTransformation:
  r"""GrokFast-EMA: amplify the slow component of the gradient.

  .. math::
      \mu_1 = g_1, \quad \mu_t = \alpha \mu_{t-1} + (1-\alpha) g_t,
      \qquad g'_t = g_t + \lambda \mu_t .

  The average starts at the first gradient (as the original code does).
  A step whose gradient holds a NaN or an infinity is skipped: zero
  update, the state unchanged (``count`` does not advance).

  Example::

      tx = optax.chain(ngrok_jax.grokfast_ema(0.98, 2.0), optax.adamw(1e-3))

  Args:
    alpha: the EMA's decay, in [0, 1).
    lamb: the amplification :math:`\lambda` of the average.

  Returns:
    An ``optax.GradientTransformation`` whose state
    (:class:`GrokfastEmaState`) holds the count and the average.
  """
  _check_scalar("alpha", alpha, unit=True)
  _check_scalar("lamb", lamb)

  def init_fn(params):
    return GrokfastEmaState(count=jnp.zeros([], jnp.int32),
                            ema=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    first = state.count == 0
    ema = jax.tree.map(
        lambda m, g: jnp.where(first, g, alpha * m + (1 - alpha) * g
                               ).astype(g.dtype), state.ema, updates)
    out = jax.tree.map(lambda g, m: (g + lamb * m).astype(g.dtype),
                       updates, ema)
    return out, GrokfastEmaState(count=optax.safe_increment(state.count),
                                 ema=ema)

  return optax.GradientTransformation(
      init_fn, skip_nonfinite(update_fn, "grokfast_ema"))


class GrokfastMaState(NamedTuple):
  """State of :func:`grokfast_ma`: the update count and the last ``window``
  updates (leaf ``(window, *shape)``, written at ``count % window``)."""
  count: chex.Array  # int32 scalar: updates seen
  buffer: optax.Updates  # each leaf (window, *shape), a ring buffer


def grokfast_ma(window: int = 100, lamb: float = 5.0
                ) -> optax.GradientTransformation:
  r"""GrokFast-MA: add the mean of the last ``window`` gradients.

  .. math::
      g'_t = g_t + \lambda \frac{1}{w} \sum_{k=t-w+1}^{t} g_k
      \quad\text{once } t \ge w, \qquad g'_t = g_t \text{ before.}

  The window includes the current gradient and lives in a fixed-shape ring
  buffer (memory: ``window`` copies of the parameters).  A step whose
  gradient holds a NaN or an infinity is skipped: zero update, the state
  unchanged (``count`` does not advance).

  Example::

      tx = optax.chain(ngrok_jax.grokfast_ma(100, 5.0), optax.adamw(1e-3))

  Args:
    window: the number of gradients averaged (a positive integer).
    lamb: the amplification :math:`\lambda` of the mean.

  Returns:
    An ``optax.GradientTransformation`` whose state
    (:class:`GrokfastMaState`) holds the count and the ring buffer.
  """
  _check_scalar("window", window, positive=True, integer=True)
  _check_scalar("lamb", lamb)
  window = int(window)

  def init_fn(params):
    return GrokfastMaState(
        count=jnp.zeros([], jnp.int32),
        buffer=jax.tree.map(lambda p: jnp.zeros((window,) + p.shape, p.dtype),
                            params))

  def update_fn(updates, state, params=None):
    del params
    slot = state.count % window
    buffer = jax.tree.map(lambda b, g: b.at[slot].set(g.astype(b.dtype)),
                          state.buffer, updates)
    full = state.count + 1 >= window
    out = jax.tree.map(
        lambda g, b: jnp.where(full, g + lamb * jnp.mean(b, axis=0), g
                               ).astype(g.dtype), updates, buffer)
    return out, GrokfastMaState(count=optax.safe_increment(state.count),
                                buffer=buffer)

  return optax.GradientTransformation(
      init_fn, skip_nonfinite(update_fn, "grokfast_ma"))


class OrthogonalizeGradientsState(NamedTuple):
  """State of :func:`orthogonalize_gradients` (empty: it keeps no state)."""


def orthogonalize_gradients(eps: float = 1e-30
                            ) -> optax.GradientTransformation:
  r"""⊥Grad: the gradient without its component along the weights.

  Per parameter tensor :math:`w` with gradient :math:`g` (both flattened),

  .. math::
      g_\perp = g - \frac{w \cdot g}{w \cdot w + \epsilon}\, w, \qquad
      g' = g_\perp \frac{\lVert g \rVert_2}{\lVert g_\perp \rVert_2 + \epsilon}.

  Prieto et al. 2025, "Grokking at the edge of numerical stability": the
  component along :math:`w` only scales the logits ("naive loss
  minimisation"); removing it, with the gradient's norm kept, lets the model
  generalise without that detour.  A tensor of zeros (e.g. a fresh bias)
  keeps its gradient.  Where :math:`g_\perp` is only rounding error
  (:math:`\lVert g_\perp \rVert \le 10^{-5} \lVert g \rVert`: a
  one-element tensor, or a gradient parallel to its weights) the update is
  0, not that error rescaled to the gradient's norm, as it is for a
  gradient holding a NaN or an infinity.  Needs ``params``.  ⊥AdamW
  (method ``orthograd``)::

      tx = optax.chain(ngrok_jax.orthogonalize_gradients(),
                       optax.adamw(1e-3, weight_decay=0.0))

  Args:
    eps: added to :math:`w \cdot w` and :math:`\lVert g_\perp \rVert`
      against division by zero (> 0).

  Returns:
    An ``optax.GradientTransformation`` with an empty state
    (:class:`OrthogonalizeGradientsState`); its ``update`` raises
    ``ValueError`` without ``params``.
  """
  _check_scalar("eps", eps, positive=True)

  def init_fn(params):
    del params
    return OrthogonalizeGradientsState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("orthogonalize_gradients needs params "
                       "(tx.update(updates, state, params))")

    def one(g, w):
      g32, w32 = g.astype(jnp.float32), w.astype(jnp.float32)
      proj = jnp.vdot(w32, g32) / (jnp.vdot(w32, w32) + eps)
      g_perp = g32 - proj * w32
      g_norm, perp_norm = jnp.linalg.norm(g32), jnp.linalg.norm(g_perp)
      scale = jnp.where(perp_norm > 1e-5 * g_norm,
                        g_norm / (perp_norm + eps), 0.0)
      return (g_perp * scale).astype(g.dtype)

    check_float_leaves(updates, "orthogonalize_gradients")
    return jax.tree.map(one, zero_nonfinite_leaves(updates), params), state

  return optax.GradientTransformation(init_fn, update_fn)


class ProjectWeightNormState(NamedTuple):
  """State of :func:`project_weight_norm` (empty: it keeps no state)."""


def project_weight_norm(norm: float) -> optax.GradientTransformation:
  r"""Keeps the weights on the sphere of global norm ``norm`` (Omnigrok).

  The last transform of a chain: with the incoming update :math:`u` and
  weights :math:`w`,

  .. math::
      u' = R\, \frac{w + u}{\lVert w + u \rVert_2} - w ,

  so ``optax.apply_updates`` gives :math:`w + u'` of global L2 norm
  :math:`R` over all parameters (Liu et al. 2023, "Omnigrok: grokking beyond
  algorithmic data", constrained training at a fixed weight norm).  An
  update holding a NaN or an infinity anywhere gives a zero update (the
  weights stay).  Needs ``params``::

      tx = optax.chain(optax.adam(1e-3), ngrok_jax.project_weight_norm(40.0))

  Args:
    norm: the global L2 norm :math:`R` of the weights after every update
      (> 0).

  Returns:
    An ``optax.GradientTransformation`` with an empty state
    (:class:`ProjectWeightNormState`); its ``update`` raises ``ValueError``
    without ``params``.
  """
  _check_scalar("norm", norm, positive=True)

  def init_fn(params):
    del params
    return ProjectWeightNormState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("project_weight_norm needs params "
                       "(tx.update(updates, state, params))")
    check_float_leaves(updates, "project_weight_norm")
    ok = all_finite(updates)  # a global norm: a bad leaf skips the step
    updates = jax.tree.map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)),
                           updates)
    new = jax.tree.map(lambda w, u: w.astype(jnp.float32) + u, params,
                       updates)
    factor = norm / jnp.maximum(optax.tree.norm(new), 1e-30)
    out = jax.tree.map(
        lambda n, w, u: jnp.where(ok, n * factor - w, 0).astype(u.dtype),
        new, params, updates)
    return out, state

  return optax.GradientTransformation(init_fn, update_fn)
