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
import numpy as np
import optax

from ngrok_jax._src.optim.amplifier import amplify
from ngrok_jax._src.optim.guards import all_finite, select_tree, skip_nonfinite

__all__ = ["NeuralGrokState", "neuralgrok", "amplifier_params",
           "is_meta_step", "PLACEMENTS"]

#: Where the meta step sits relative to the inner step (see :func:`neuralgrok`).
PLACEMENTS = ("after", "before")


class NeuralGrokState(NamedTuple):
  r"""State of :func:`neuralgrok`.

  Attributes:
    count: the clock of the meta steps: the updates taken so far (int32
      scalar), or, when the caller passes its own clock (``update(...,
      count=step)``), that clock plus one.
    amplifier_params: the amplifier's parameters :math:`\phi` (learned by
      the meta steps; constant when ``meta_every=0``).
    meta_state: the meta optimizer's state (``optax.EmptyState()`` when
      ``meta_every=0``).
    inner_state: the inner optimizer's state.
    outer_loss: the outer loss of the last meta step (NaN before the first):
      :math:`\mathcal{L}_{outer}(\theta'(\phi))` before its update of phi.
    amplifier_init: the amplifier parameters :math:`\phi_0` it started
      from (to measure how far the amplifier has moved).
    outer_loss_after: the same meta step's objective after its update,
      :math:`\mathcal{L}_{outer}(\theta'(\phi_{new}))` at the same
      parameters, gradient and inner state (NaN before the first); the meta
      step's improvement is ``outer_loss - outer_loss_after``.
    meta_grad_norm: the global L2 norm of the last meta-gradient
      :math:`\nabla_\phi \mathcal{L}_{outer}` (NaN before the first).
  """
  count: chex.Array
  amplifier_params: Any
  meta_state: Any
  inner_state: Any
  outer_loss: chex.Array
  amplifier_init: Any
  outer_loss_after: chex.Array
  meta_grad_norm: chex.Array


def is_meta_step(count, meta_every: int, placement: str = "after"):
  """Whether the update with 0-indexed step number ``count`` has a meta step.

  ``"after"``: steps T-1, 2T-1, ... (1-indexed T, 2T, ...: after every T-th
  inner step); ``"before"``: steps 0, T, 2T, ...  ``meta_every=0``: never.

  Args:
    count: the update's 0-indexed step number (an int or an int array,
      e.g. the training step shared by all vmapped seeds).
    meta_every: T, the meta-step period (0: never).
    placement: ``"after"`` or ``"before"`` (see :func:`neuralgrok`).

  Returns:
    ``False`` when ``meta_every`` is 0, else a bool (array) of the shape of
    ``count``; pass it to the update as ``meta_step=``.
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
    lookahead_steps: int = 1,
    features: Optional[Callable[[Any, Any, Any], Any]] = None,
    meta_axis_name: Optional[str] = None,
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

  With ``lookahead_steps=K > 1`` the look-ahead is K steps unrolled
  through the amplifier (truncated back-propagation through K steps), all
  on the step's batch (``train_loss``, repeated: the transformation sees
  only that batch):

  .. math::
      \theta_0 = \theta,\quad g_0 = g_\theta,\quad
      \theta_{k+1} = \theta_k + \mathrm{lookahead}(G(g_k;\phi)),\quad
      g_{k+1} = \nabla\mathcal{L}_{train}(\theta_{k+1}),\qquad
      \phi \leftarrow \phi + \mathrm{meta}\big(\nabla_\phi\,
      \mathcal{L}_{outer}(\theta_K(\phi))\big),

  differentiated through every :math:`g_k` (second order); the K-1 inner
  steps run in a ``lax.scan`` whose body is rematerialised
  (``jax.checkpoint``), so the memory is that of one step plus the K carried
  parameter sets.  With ``lookahead="inner"`` the inner optimizer's state is
  carried through the K steps; SGD starts fresh.

  ``placement="after"`` (default, the authors' final code): the meta step
  follows the inner step of updates T, 2T, ... (1-indexed), at the updated
  parameters :math:`\theta+u`, with :math:`g_\theta` recomputed there by
  ``train_loss`` (the same batch).  ``"before"``: the meta step precedes the
  inner step of updates 1, T+1, 2T+1, ..., at the current parameters,
  reusing ``g`` (one backward pass fewer; the paper's Algorithm 1), and the
  inner step then uses the new :math:`\phi`.

  Whether an update has a meta step: one clock decides,
  ``is_meta_step(count, meta_every, placement)`` with ``count`` the
  update's 0-indexed number: the state's own count, or the caller's clock
  passed as ``update(..., count=step)`` (e.g. the training step, which the
  library's trainer passes), which then becomes the state's count
  (``step + 1`` after the update, a skipped one included), so the state
  and the caller's clock never disagree (after a skipped update, a resume
  or a state started mid-run).  Under ``jax.vmap`` over seeds the state's
  own count is batched, so ``vmap`` turns the ``cond`` into a ``select``
  and computes the meta step on every update; a ``count=`` from outside
  the ``vmap`` (a scalar shared by all seeds, ``in_axes=None``) keeps a
  real branch.  ``meta_step=`` (a bool or a bool scalar) overrides the
  clock's decision.

  Non-finite values: an update whose gradient holds a NaN or an infinity
  is skipped (zero update; the state returned is the state given, so
  ``count`` does not advance unless the caller passes its clock, and no
  NaN reaches phi or the moments); a
  meta step whose outer loss or meta-gradient is not finite leaves phi and
  the meta state unchanged (the inner step is taken) and records that
  value in ``outer_loss`` / ``meta_grad_norm``.

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
    lookahead_steps: K, the look-ahead steps unrolled per meta step (1: the
      paper's one step).
    features: ``features(g, inner_state, params)``, the amplifier's input
      for the gradient ``g`` (then ``amplifier(phi, features(...))`` must
      return the (n,) scores of the components of ``g`` in
      ``jax.tree.leaves`` order; e.g. :func:`ngrok_jax.rich_features` with
      :class:`ngrok_jax.RichAmplifier`).  ``inner_state`` is the inner
      optimizer's state before the step (the look-ahead's own state inside
      a ``lookahead="inner"`` unroll).  ``None``: the concatenated gradient
      components (the paper's amplifier).
    meta_axis_name: average the meta-gradient over this named
      ``jax.vmap`` / ``shard_map`` axis before the meta optimizer uses it
      (``lax.pmean``): copies of the transformation that start from the same
      :math:`\phi_0` along that axis (e.g. one per task, see
      :mod:`ngrok_jax.cross_task`) then update one shared amplifier from
      all their outer losses, :math:`\nabla_\phi \frac{1}{n}\sum_i
      \mathcal{L}^{(i)}_{outer}`, and stay equal.  ``None``: each copy
      learns from its own outer loss (the paper).

  Returns:
    A ``GradientTransformationExtraArgs``.  Its
    ``update(grads, state, params, *, outer_loss=None, train_loss=None,
    meta_step=None, count=None, **extra)`` needs ``params``;
    ``outer_loss(params) -> scalar`` on updates that may have a meta step;
    ``train_loss(params) -> scalar`` (the step's batch loss) as well with
    ``placement="after"`` or ``lookahead_steps > 1``; ``count``: the
    caller's clock (see above).
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
  if isinstance(lookahead_steps, bool) or not isinstance(
      lookahead_steps, int) or lookahead_steps < 1:
    raise ValueError(f"lookahead_steps must be an integer >= 1, got "
                     f"{lookahead_steps!r}")
  if meta_axis_name is not None and not isinstance(meta_axis_name, str):
    raise ValueError(f"meta_axis_name must be None or an axis name (str), "
                     f"got {meta_axis_name!r}")
  if features is not None and not callable(features):
    raise ValueError(f"features must be callable, got {features!r}")
  c_num = c.item() if isinstance(c, (np.ndarray, np.generic)) and (
      np.ndim(c) == 0) else c  # a NumPy scalar (np.float32(0.2)): its number
  if not isinstance(c, jax.Array) and not isinstance(c, jax.core.Tracer) and (
      isinstance(c_num, bool) or not isinstance(c_num, (int, float))
      or not 0 < c_num < float("inf")):
    raise ValueError(f"c must be a number > 0 (finite), got {c!r}")
  inner = optax.with_extra_args_support(inner)
  if lookahead is None:
    lookahead = optax.sgd(1e-3)
  if meta_optimizer is None:
    meta_optimizer = optax.adam(1e-4)
  frozen = meta_every == 0

  def amplified(g, phi, inner_state, params):
    if features is None:
      return amplify(g, lambda x: amplifier(phi, x), c)
    x = features(g, inner_state, params)
    return amplify(g, lambda _: amplifier(phi, x), c)

  def init_fn(params):
    phi = amplifier_init
    # float64 under jax_enable_x64, else float32
    nan = jnp.full([], jnp.nan, jax.dtypes.canonicalize_dtype(jnp.float64))
    return NeuralGrokState(
        count=jnp.zeros([], jnp.int32), amplifier_params=phi,
        meta_state=optax.EmptyState() if frozen else meta_optimizer.init(phi),
        inner_state=inner.init(params), outer_loss=nan,
        amplifier_init=phi, outer_loss_after=nan, meta_grad_norm=nan)

  def meta(state, params, g, inner_state, outer_loss, train_loss):
    """phi's meta step at ``params`` with training gradient ``g``: the new
    phi and meta state, the objective before and after, the meta-gradient
    norm."""
    use_inner = lookahead == "inner"
    la = inner if use_inner else lookahead

    def one(phi, p, st, gk):
      """One look-ahead step from ``p`` with gradient ``gk``."""
      ga = amplified(gk, phi, st if use_inner else inner_state, p)
      upd, st = la.update(ga, st, p)
      return optax.apply_updates(p, upd), st

    def objective(phi):
      p, st, gk = params, inner_state if use_inner else la.init(params), g
      if lookahead_steps > 1:
        @jax.checkpoint
        def body(carry, _):
          p, st, gk = carry
          p, st = one(phi, p, st, gk)
          return (p, st, jax.grad(train_loss)(p)), None
        (p, st, gk), _ = jax.lax.scan(body, (p, st, gk), None,
                                      length=lookahead_steps - 1)
      p, _ = one(phi, p, st, gk)
      return outer_loss(p)

    phi = state.amplifier_params
    val, mg = jax.value_and_grad(objective)(phi)
    if meta_axis_name is not None:
      mg = jax.lax.pmean(mg, meta_axis_name)
    # a non-finite outer loss or meta-gradient skips the meta step (phi and
    # the meta state kept; the diagnostics below show the value seen)
    fin = jnp.isfinite(val) & all_finite(mg)
    if meta_axis_name is not None:  # the copies skip together
      fin = jax.lax.pmin(fin.astype(jnp.int32), meta_axis_name) > 0
    safe = jax.tree.map(lambda x: jnp.where(fin, x, jnp.zeros_like(x)), mg)
    upd, meta_state = meta_optimizer.update(safe, state.meta_state, phi)
    new_phi = select_tree(fin, optax.apply_updates(phi, upd), phi)
    meta_state = select_tree(fin, meta_state, state.meta_state)
    dt = state.outer_loss.dtype
    return (new_phi, meta_state, val.astype(dt),
            objective(new_phi).astype(dt), optax.tree.norm(mg).astype(dt))

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
      if (placement == "after" or lookahead_steps > 1) and (
          train_loss is None):
        raise ValueError("neuralgrok with placement='after' or "
                         "lookahead_steps > 1 needs train_loss=lambda "
                         "params: ... (the batch loss, recomputed at the "
                         "updated or look-ahead parameters)")

    def cond(pred, yes, no):
      if pred is True:
        return yes()
      if pred is False:
        return no()
      return jax.lax.cond(pred, yes, no)

    fields = ("amplifier_params", "meta_state", "outer_loss",
              "outer_loss_after", "meta_grad_norm")
    keep = tuple(getattr(state, f) for f in fields)
    if placement == "before":
      state = state._replace(**dict(zip(fields, cond(
          do, lambda: meta(state, params, updates, state.inner_state,
                           outer_loss, train_loss), lambda: keep))))
    u, inner_state = inner.update(
        amplified(updates, state.amplifier_params, state.inner_state, params),
        state.inner_state, params, **extra_args)
    if placement == "after":
      def after():
        new_params = optax.apply_updates(params, u)
        g2 = jax.grad(train_loss)(new_params)
        return meta(state, new_params, g2, inner_state, outer_loss,
                    train_loss)
      state = state._replace(**dict(zip(fields, cond(do, after,
                                                     lambda: keep))))
    return u, state._replace(count=optax.safe_increment(state.count),
                             inner_state=inner_state)

  guarded = skip_nonfinite(update_fn, "neuralgrok")

  def update_with_clock(updates, state, params=None, *, count=None,
                        **kwargs):
    if count is None:  # the state's own count is the clock
      return guarded(updates, state, params, **kwargs)
    # the caller's clock: it decides and it is the state's count, also
    # after a skipped update
    count = jnp.asarray(count, state.count.dtype)
    u, new = guarded(updates, state._replace(count=count), params, **kwargs)
    return u, new._replace(count=optax.safe_increment(count))

  return optax.GradientTransformationExtraArgs(init_fn, update_with_clock)


def amplifier_params(opt_state) -> Any:
  """The amplifier parameters held in ``opt_state`` (a :class:`NeuralGrokState`
  or any optimizer state containing exactly one, e.g. inside a chain).

  Args:
    opt_state: the state of :func:`neuralgrok`, alone or inside another
      transformation's state.

  Returns:
    The amplifier parameters phi (a pytree, as given to
    ``amplifier``).

  Raises:
    ValueError: ``opt_state`` holds no :class:`NeuralGrokState`, or more
      than one.
  """
  found = [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, NeuralGrokState))
           if isinstance(s, NeuralGrokState)]
  if len(found) != 1:
    raise ValueError(f"expected one NeuralGrokState in the optimizer state, "
                     f"found {len(found)}")
  return found[0].amplifier_params
