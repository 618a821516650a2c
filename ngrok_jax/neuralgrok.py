r"""NeuralGrok's whole bilevel update as one optax transformation.

:func:`neuralgrok` wraps an inner optimizer (e.g. clip + Adam) so that every
update is computed from the amplified gradient, and every ``meta_every``
steps the amplifier itself takes a meta step on an outer objective that the
caller supplies.  It works for any pytree model and any loss::

    amp = ngrok_jax.Amplifier(hidden=(32, 32))
    tx = ngrok_jax.neuralgrok(optax.adam(1e-3), amp.apply,
                              amp.init(jax.random.key(0), jnp.zeros((1,))),
                              meta_every=4)
    opt_state = tx.init(params)
    loss, g = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(
        g, opt_state, params,
        train_loss=lambda p: loss_fn(p, batch),      # the step's batch
        outer_loss=lambda p: loss_fn(p, held_out))   # the meta objective
    params = optax.apply_updates(params, updates)

The learned amplifier is ``ngrok_jax.amplifier_params(opt_state)``; save it
and use it frozen with :func:`ngrok_jax.scale_by_amplifier`.

References: Z. Zhou et al., "NeuralGrok: Accelerate Grokking by Neural
Gradient Transformation" (2025), Algorithm 1, and the authors' final code
(NeuralOptGrok, commit a7490be), whose step order ``placement="after"``
follows.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import chex
import jax
import jax.numpy as jnp
import optax

from ngrok_jax.amplifier import amplify

__all__ = ["NeuralGrokState", "neuralgrok", "amplifier_params",
           "is_meta_step", "PLACEMENTS"]

#: Where the meta step sits relative to the inner step (see :func:`neuralgrok`).
PLACEMENTS = ("after", "before")


class NeuralGrokState(NamedTuple):
  """State of :func:`neuralgrok`.

  Attributes:
    count: inner steps taken so far (int32 scalar).
    amplifier_params: the amplifier's parameters :math:`\\phi` (learned by
      the meta steps; constant when ``meta_every=0``).
    meta_state: the meta optimizer's state (``optax.EmptyState()`` when
      ``meta_every=0``).
    inner_state: the inner optimizer's state.
    outer_loss: the outer loss of the last meta step (NaN before the first).
  """
  count: chex.Array
  amplifier_params: Any
  meta_state: Any
  inner_state: Any
  outer_loss: chex.Array


def is_meta_step(count, meta_every: int, placement: str = "after"):
  """Whether the update with 0-indexed step number ``count`` has a meta step.

  ``"after"``: steps T-1, 2T-1, ... (1-indexed T, 2T, ...: after every T-th
  inner step); ``"before"``: steps 0, T, 2T, ...  ``meta_every=0``: never.
  """
  if meta_every == 0:
    return False
  if placement == "after":
    return (count + 1) % meta_every == 0
  return count % meta_every == 0


def neuralgrok(
    inner: optax.GradientTransformation,
    amplifier: Callable[[Any, jax.Array], jax.Array],
    amplifier_init: Any,
    *,
    meta_every: int = 4,
    c: Union[float, jax.Array] = 0.2,
    lookahead: Union[optax.GradientTransformation, str, None] = None,
    meta_optimizer: Optional[optax.GradientTransformation] = None,
    placement: str = "after",
) -> optax.GradientTransformationExtraArgs:
  r"""NeuralGrok: a learned amplifier in front of ``inner``, meta-trained.

  Inner step (every update), with :math:`g` the gradient passed to
  ``update``:

  .. math::
      G(g;\phi) = c\,\frac{s \odot g}{\lVert s \odot g \rVert_2},\quad
      s = \mathrm{softmax}(f_\phi(g)) \text{ per tensor},\qquad
      u = \mathrm{inner}(G(g;\phi)).

  Meta step (every ``meta_every`` updates), at parameters :math:`\theta`
  with training gradient :math:`g_\theta`:

  .. math::
      \theta'(\phi) = \theta + \mathrm{lookahead}(G(g_\theta;\phi)),\qquad
      \phi \leftarrow \phi + \mathrm{meta}\big(\nabla_\phi\,
      \mathcal{L}_{outer}(\theta'(\phi))\big).

  ``placement="after"`` (default, the authors' final code): the meta step
  follows the inner step of updates T, 2T, ... (1-indexed), at the updated
  parameters :math:`\theta+u`, with :math:`g_\theta` recomputed there by
  ``train_loss`` (the same batch).  ``"before"``: the meta step precedes the
  inner step of updates 1, T+1, 2T+1, ..., at the current parameters,
  reusing ``g`` (one backward pass fewer; the paper's Algorithm 1), and the
  inner step then uses the new :math:`\phi`.

  Whether an update has a meta step: by default the state's own count
  decides (``lax.cond``).  Under ``jax.vmap`` over seeds that predicate is
  batched, so ``vmap`` turns the ``cond`` into a ``select`` and computes the
  meta step on every update.  To keep a real branch, pass ``meta_step=``
  from outside the ``vmap`` (a scalar shared by all seeds, e.g.
  ``is_meta_step(step, T)`` with ``in_axes=None``), or a Python bool.

  Args:
    inner: the optimizer applied to the amplified gradient (e.g.
      ``optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))``).
    amplifier: ``amplifier(phi, x)``, scores of the (n,) components ``x``
      (e.g. ``ngrok_jax.Amplifier(...).apply``).
    amplifier_init: the initial amplifier parameters :math:`\phi_0`.
    meta_every: T; ``0`` keeps the amplifier frozen (no meta step, no meta
      state; ``outer_loss`` is not needed).
    c: the norm of every amplified tensor (0.2 in the authors' final code).
    lookahead: the look-ahead step: an optax transformation started fresh at
      every meta step (default ``optax.sgd(1e-3)``), or ``"inner"`` to step
      ``inner`` itself from its current state (differentiating through
      Adam needs ``eps_root > 0``).
    meta_optimizer: updates :math:`\phi` (default ``optax.adam(1e-4)``).
    placement: ``"after"`` or ``"before"`` (see above).

  Returns:
    A ``GradientTransformationExtraArgs``.  Its
    ``update(grads, state, params, *, outer_loss=None, train_loss=None,
    meta_step=None, **extra)`` needs ``params``; ``outer_loss(params) ->
    scalar`` on updates that may have a meta step; ``train_loss(params) ->
    scalar`` (the step's batch loss) as well with ``placement="after"``.
    Other keywords are passed on to ``inner``.
  """
  if not callable(amplifier):
    raise ValueError(f"amplifier must be callable, got {amplifier!r}")
  if isinstance(meta_every, bool) or not isinstance(meta_every, int) or (
      meta_every < 0):
    raise ValueError(f"meta_every must be an integer >= 0, got {meta_every!r}")
  if placement not in PLACEMENTS:
    raise ValueError(f"unknown placement {placement!r}; valid: "
                     f"{', '.join(PLACEMENTS)}")
  if isinstance(lookahead, str) and lookahead != "inner":
    raise ValueError(f"lookahead must be an optax transformation or 'inner', "
                     f"got {lookahead!r}")
  if not isinstance(c, jax.Array) and not isinstance(c, jax.core.Tracer) and (
      isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0):
    raise ValueError(f"c must be a number > 0, got {c!r}")
  inner = optax.with_extra_args_support(inner)
  if lookahead is None:
    lookahead = optax.sgd(1e-3)
  if meta_optimizer is None:
    meta_optimizer = optax.adam(1e-4)
  frozen = meta_every == 0

  def amplified(g, phi):
    return amplify(g, lambda x: amplifier(phi, x), c)

  def init_fn(params):
    phi = amplifier_init
    return NeuralGrokState(
        count=jnp.zeros([], jnp.int32), amplifier_params=phi,
        meta_state=optax.EmptyState() if frozen else meta_optimizer.init(phi),
        inner_state=inner.init(params),
        # float64 under jax_enable_x64, else float32
        outer_loss=jnp.full([], jnp.nan,
                            jax.dtypes.canonicalize_dtype(jnp.float64)))

  def meta(state, params, g, inner_state, outer_loss):
    """phi's meta step at ``params`` with training gradient ``g``."""
    def objective(phi):
      ga = amplified(g, phi)
      if lookahead == "inner":
        upd, _ = inner.update(ga, inner_state, params)
      else:
        upd, _ = lookahead.update(ga, lookahead.init(params), params)
      return outer_loss(optax.apply_updates(params, upd))

    phi = state.amplifier_params
    val, mg = jax.value_and_grad(objective)(phi)
    upd, meta_state = meta_optimizer.update(mg, state.meta_state, phi)
    return (optax.apply_updates(phi, upd), meta_state,
            val.astype(state.outer_loss.dtype))

  def update_fn(updates, state, params=None, *, outer_loss=None,
                train_loss=None, meta_step=None, **extra_args):
    if params is None:
      raise ValueError("neuralgrok needs params in update(grads, state, "
                       "params)")
    do = is_meta_step(state.count, meta_every, placement) if (
        meta_step is None) else meta_step
    if frozen:
      do = False
    if do is not False:
      if outer_loss is None:
        raise ValueError("neuralgrok: pass outer_loss=lambda params: ... to "
                         "update (the meta objective), or meta_step=False")
      if placement == "after" and train_loss is None:
        raise ValueError("neuralgrok with placement='after' needs "
                         "train_loss=lambda params: ... (the batch loss, "
                         "recomputed at the updated parameters)")

    def cond(pred, yes, no):
      if pred is True:
        return yes()
      if pred is False:
        return no()
      return jax.lax.cond(pred, yes, no)

    keep = (state.amplifier_params, state.meta_state, state.outer_loss)
    if placement == "before":
      state = state._replace(**dict(zip(
          ("amplifier_params", "meta_state", "outer_loss"),
          cond(do, lambda: meta(state, params, updates, state.inner_state,
                                outer_loss), lambda: keep))))
    u, inner_state = inner.update(amplified(updates, state.amplifier_params),
                                  state.inner_state, params, **extra_args)
    if placement == "after":
      def after():
        new_params = optax.apply_updates(params, u)
        g2 = jax.grad(train_loss)(new_params)
        return meta(state, new_params, g2, inner_state, outer_loss)
      phi, meta_state, val = cond(do, after, lambda: keep)
      state = state._replace(amplifier_params=phi, meta_state=meta_state,
                             outer_loss=val)
    return u, state._replace(count=optax.safe_increment(state.count),
                             inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def amplifier_params(opt_state) -> Any:
  """The amplifier parameters held in ``opt_state`` (a :class:`NeuralGrokState`
  or any optimizer state containing exactly one, e.g. inside a chain)."""
  found = [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, NeuralGrokState))
           if isinstance(s, NeuralGrokState)]
  if len(found) != 1:
    raise ValueError(f"expected one NeuralGrokState in the optimizer state, "
                     f"found {len(found)}")
  return found[0].amplifier_params
