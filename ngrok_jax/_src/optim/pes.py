r"""Outer training of a learned rule's parameters over truncated unrolls.

An *inner problem* (:class:`InnerTask`) is a pair of pure functions: ``init
(key, index)`` starts a fresh inner run (new initialisation, new data
split; ``index`` picks e.g. its task) and ``step(theta, inner)`` advances it
by one step with rule parameters ``theta``, returning the new inner state
and ``{"meta_loss", "train_loss"}`` (the loss on a held-out *meta* split,
never the test split, and the training loss).  The meta parameters
``theta`` are kept apart from the inner states (as in learned_optimization).

The *particles* are a leading array axis: every particle is one persistent
inner run, and one truncation of ``K`` steps of all of them is one jitted
program (``vmap`` of a ``lax.scan``).  A particle whose run reaches its
horizon restarts from ``init`` with a fresh key, inside the truncation, at
that step; with ``stagger`` the first runs are shortened so the particles
reset at different steps.  The per-step meta-objective is the meta loss
(``objective="meta"``) or that plus ``gap_weight`` times the gap
``meta_loss - train_loss`` (``"meta+gap"``), clipped to ``loss_clip``; a
truncation's objective is its sum over the ``K`` steps.

Estimators (``estimator``):

* ``"tbptt"``: truncated back-propagation, :math:`\nabla_\theta` of each
  particle's truncation objective with the state at the truncation's start
  held constant (biased: it ignores how ``theta`` shaped that state).
* ``"pes"``: Persistent Evolution Strategies with antithetic pairs (Vicol,
  Metz and Sohl-Dickstein 2021).  Pair :math:`i` unrolls with
  :math:`\theta \pm \epsilon_i`, :math:`\epsilon_i \sim N(0, \sigma^2 I)`
  drawn afresh each truncation, and keeps :math:`\xi_i = \sum \epsilon_i`
  over the truncations of its current run.  With :math:`\Delta L_i` the
  difference of the + and - objectives,

  .. math::
      \hat g = \frac{1}{2\sigma^2 N}\sum_{i=1}^{N}
      \big[\Delta L_i^{pre}\,(\xi_i + \epsilon_i) + \Delta L_i^{post}\,
      \epsilon_i\big],

  pre/post the steps before/after a reset inside the truncation.  Summed
  over the truncations of one run it is an unbiased estimate of the
  gradient of the whole run's (Gaussian-smoothed) objective.

Example::

    cfg = OuterConfig(estimator="pes", num_particles=16, truncation=50,
                      horizon=1000)
    state = init(cfg, task, theta, jax.random.PRNGKey(0))
    step = make_outer_step(cfg, task, optax.adam(1e-3))
    state, metrics = step(state)
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["ESTIMATORS", "OBJECTIVES", "InnerTask", "OuterConfig",
           "Particles", "OuterState", "init_particles", "init", "unroll",
           "pes_estimate", "tbptt_estimate", "make_outer_step",
           "measure_snr"]

ESTIMATORS = ("pes", "tbptt")
OBJECTIVES = ("meta", "meta+gap")


class InnerTask(NamedTuple):
  """An inner problem: ``init(key, index) -> inner`` and ``step(theta,
  inner) -> (inner, {"meta_loss", "train_loss"})`` (pure, jittable)."""
  init: Callable[[jax.Array, jax.Array], Any]
  step: Callable[[Any, Any], Tuple[Any, Dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class OuterConfig:
  """Static settings of the outer trainer (hashable).

  Attributes:
    estimator: ``"pes"`` or ``"tbptt"``.
    num_particles: persistent inner runs (PES: even, ``num_particles // 2``
      antithetic pairs).
    truncation: inner steps K per outer step.
    horizon: length of every inner run (steps) before it restarts.
    sigma: PES perturbation standard deviation.
    objective: ``"meta"`` or ``"meta+gap"``.
    gap_weight: weight of the train-to-held-out gap (``"meta+gap"``).
    loss_clip: per-step objective clip (non-finite values become it).
    stagger: shorten the first run of each particle (unit) so that the
      particles restart at different steps.
    num_groups: particles get ``index = unit % num_groups`` (e.g. tasks).
  """
  estimator: str = "pes"
  num_particles: int = 8
  truncation: int = 50
  horizon: int = 1000
  sigma: float = 0.01
  objective: str = "meta"
  gap_weight: float = 1.0
  loss_clip: float = 100.0
  stagger: bool = True
  num_groups: int = 1

  def __post_init__(self):
    if self.estimator not in ESTIMATORS:
      raise ValueError(f"unknown estimator {self.estimator!r}; valid: "
                       f"{', '.join(ESTIMATORS)}")
    if self.objective not in OBJECTIVES:
      raise ValueError(f"unknown objective {self.objective!r}; valid: "
                       f"{', '.join(OBJECTIVES)}")
    if self.num_particles < 1 or (self.estimator == "pes"
                                  and self.num_particles % 2):
      raise ValueError(f"num_particles must be >= 1 (even for PES), got "
                       f"{self.num_particles}")
    if self.truncation < 1 or self.horizon < 1:
      raise ValueError("truncation and horizon must be >= 1")
    if not self.sigma > 0:
      raise ValueError(f"sigma must be > 0, got {self.sigma}")

  @property
  def units(self) -> int:
    """Independent units: antithetic pairs (PES) or particles (TBPTT)."""
    return self.num_particles // 2 if self.estimator == "pes" else (
        self.num_particles)


class Particles(NamedTuple):
  r"""Persistent inner runs, leading axis P (PES: particle ``j`` and ``j +
  P/2`` are the + and - members of pair ``j``; they share keys).

  ``t``: steps done in the current run; ``length``: that run's length
  (the horizon, shorter for a staggered first run); ``key``: the key of the
  next restart; ``accum``: PES's :math:`\xi` per pair (leading axis P/2;
  ``()`` for TBPTT).
  """
  inner: Any
  t: jax.Array
  length: jax.Array
  key: jax.Array
  index: jax.Array
  accum: Any


class OuterState(NamedTuple):
  """Meta parameters, the meta optimizer's state, the particles, the PRNG
  key of the perturbations and the outer step count."""
  theta: Any
  meta_opt_state: Any
  particles: Particles
  key: jax.Array
  step: jax.Array


def _pair(cfg: OuterConfig, x):
  """Repeats a per-unit array for both members of every pair (PES)."""
  return jnp.concatenate([x, x]) if cfg.estimator == "pes" else x


def init_particles(cfg: OuterConfig, task: InnerTask, theta, key) -> Particles:
  """Fresh particles; unit ``u``'s first run has length ``horizon - u *
  horizon // units`` when ``stagger`` (else ``horizon``).

  Args:
    cfg: the outer trainer's :class:`OuterConfig`.
    task: the inner task (:class:`InnerTask`).
    theta: the rule's parameters (shapes of the PES accumulators).
    key: a PRNG key (initialisations, data splits, restarts).

  Returns:
    :class:`Particles` (2 per unit with PES's antithetic pairs).
  """
  n = cfg.units
  keys = jax.random.split(key, n)
  nxt, first = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
  index = jnp.arange(n, dtype=jnp.int32) % cfg.num_groups
  off = (np.arange(n) * cfg.horizon) // n if cfg.stagger else np.zeros(n)
  length = jnp.asarray(cfg.horizon - off, jnp.int32)
  inner = jax.vmap(task.init)(first, index)
  accum = (jax.tree.map(lambda x: jnp.zeros((n,) + jnp.shape(x), jnp.float32),
                        theta) if cfg.estimator == "pes" else ())
  inner = jax.tree.map(lambda x: _pair(cfg, x), inner)
  return Particles(inner, _pair(cfg, jnp.zeros((n,), jnp.int32)),
                   _pair(cfg, length), _pair(cfg, nxt), _pair(cfg, index),
                   accum)


def init(cfg: OuterConfig, task: InnerTask, theta, key,
         meta_opt: Optional[optax.GradientTransformation] = None
         ) -> OuterState:
  """The initial outer state.

  Args:
    cfg: the outer trainer's :class:`OuterConfig`.
    task: the inner task (:class:`InnerTask`).
    theta: the rule's initial parameters.
    key: a PRNG key.
    meta_opt: the meta optimizer (default: Adam 1e-3); pass the same one
      to :func:`make_outer_step`.

  Returns:
    :class:`OuterState`: parameters, meta-optimizer state, particles, key
    and step 0.
  """
  meta_opt = meta_opt or optax.adam(1e-3)
  theta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), theta)
  k_part, k_run = jax.random.split(key)
  return OuterState(theta, meta_opt.init(theta),
                    init_particles(cfg, task, theta, k_part), k_run,
                    jnp.zeros((), jnp.int32))


def _objective(cfg: OuterConfig, m) -> jax.Array:
  obj = m["meta_loss"]
  if cfg.objective == "meta+gap":
    obj = obj + cfg.gap_weight * (m["meta_loss"] - m["train_loss"])
  obj = jnp.nan_to_num(obj, nan=cfg.loss_clip, posinf=cfg.loss_clip)
  return jnp.minimum(obj, cfg.loss_clip)


def _unroll(cfg: OuterConfig, task: InnerTask, thetas, p: Particles):
  """``lax.scan`` over the K steps of the vmapped particles.  A fresh
  initialisation is computed only at steps where some particle restarts
  (``lax.cond`` outside the ``vmap``)."""
  init_all = jax.vmap(task.init)
  step_all = jax.vmap(task.step)
  split_all = jax.vmap(lambda k: tuple(jax.random.split(k)))

  def body(carry, _):
    inner, t, length, key, seen = carry
    reset = t >= length
    nxt, first = split_all(key)
    inner = jax.lax.cond(
        jnp.any(reset),
        lambda: jax.tree.map(
            lambda a, b: jnp.where(reset.reshape((-1,) + (1,) * (a.ndim - 1)),
                                   a, b), init_all(first, p.index), inner),
        lambda: inner)
    key = jnp.where(reset[:, None], nxt, key)
    t = jnp.where(reset, 0, t)
    length = jnp.where(reset, cfg.horizon, length)
    seen = seen | reset
    inner, m = step_all(thetas, inner)
    return (inner, t + 1, length, key, seen), (_objective(cfg, m), seen,
                                               m["meta_loss"])
  carry, outs = jax.lax.scan(
      body, (p.inner, p.t, p.length, p.key, jnp.zeros(p.t.shape, bool)),
      None, length=cfg.truncation)
  inner, t, length, key, _ = carry
  obj, seen, meta = (o.T for o in outs)  # (P, K)
  return p._replace(inner=inner, t=t, length=length, key=key), obj, seen, meta


def unroll(cfg: OuterConfig, task: InnerTask, thetas, particles: Particles):
  """One truncation of every particle, particle ``j`` with ``thetas[j]``.

  Args:
    cfg: the outer trainer's :class:`OuterConfig`.
    task: the inner task (:class:`InnerTask`).
    thetas: the rule parameters per particle (leading axis P).
    particles: the :class:`Particles` at the truncation's start.

  Returns:
    ``(particles, obj, seen, meta_loss)``: the advanced particles (``accum``
    unchanged), the per-step objective (P, K), whether the particle has
    restarted at or before each step (P, K) and the raw meta loss (P, K).
  """
  return _unroll(cfg, task, thetas, particles)


def _variance(per_unit) -> jax.Array:
  """Trace of the covariance of the mean of the per-unit estimates."""
  n = jax.tree.leaves(per_unit)[0].shape[0]
  if n < 2:
    return jnp.asarray(jnp.nan, jnp.float32)
  return sum(jnp.sum(jnp.var(x, axis=0, ddof=1)) / n
             for x in jax.tree.leaves(per_unit))


def pes_estimate(cfg: OuterConfig, task: InnerTask, theta,
                 particles: Particles, key):
  """The antithetic PES gradient estimate of one truncation.

  Args:
    cfg: the outer trainer's :class:`OuterConfig` (``estimator="pes"``).
    task: the inner task (:class:`InnerTask`).
    theta: the rule's parameters.
    particles: the :class:`Particles` (with their PES accumulators).
    key: a PRNG key for the perturbations (shared by each pair).

  Returns:
    ``(grad, particles, aux)``; ``aux``: ``per_unit`` (each pair's
    estimate, leading axis P/2), ``eps`` (the + perturbations), ``thetas``
    (the perturbed parameters, leading axis P), ``obj`` (P, K), ``seen``,
    ``meta_loss``.
  """
  n = cfg.units
  leaves, treedef = jax.tree.flatten(theta)
  keys = jax.random.split(key, len(leaves))
  eps = jax.tree.unflatten(treedef, [
      cfg.sigma * jax.random.normal(k, (n,) + x.shape, jnp.float32)
      for k, x in zip(keys, leaves)])
  thetas = jax.tree.map(lambda th, e: jnp.concatenate([th + e, th - e]),
                        theta, eps)
  new, obj, seen, meta = unroll(cfg, task, thetas, particles)
  delta = obj[:n] - obj[n:]
  reset = seen[:n]
  pre = jnp.sum(jnp.where(reset, 0.0, delta), axis=1)
  post = jnp.sum(jnp.where(reset, delta, 0.0), axis=1)
  acc = jax.tree.map(jnp.add, particles.accum, eps)
  bc = lambda v, x: v.reshape((n,) + (1,) * (x.ndim - 1))
  factor = 1.0 / (2.0 * cfg.sigma ** 2)
  per_unit = jax.tree.map(
      lambda a, e: factor * (bc(pre, a) * a + bc(post, e) * e), acc, eps)
  grad = jax.tree.map(lambda x: jnp.mean(x, axis=0), per_unit)
  ended = reset[:, -1]
  accum = jax.tree.map(lambda a, e: jnp.where(bc(ended, e), e, a), acc, eps)
  aux = dict(per_unit=per_unit, eps=eps, thetas=thetas, obj=obj, seen=seen,
             meta_loss=meta)
  return grad, new._replace(accum=accum), aux


def tbptt_estimate(cfg: OuterConfig, task: InnerTask, theta,
                   particles: Particles, key=None):
  """Truncated back-propagation: each particle's gradient of its
  truncation objective, the state at the truncation's start held constant.

  Args:
    cfg: the outer trainer's :class:`OuterConfig`.
    task: the inner task (:class:`InnerTask`).
    theta: the rule's parameters.
    particles: the :class:`Particles` at the truncation's start.
    key: unused (the signature of :func:`pes_estimate`).

  Returns:
    ``(grad, particles, aux)`` as :func:`pes_estimate` (``per_unit``: one
    per particle).
  """
  del key
  n = particles.t.shape[0]
  thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), theta)

  def total(ths):
    p = particles._replace(inner=jax.lax.stop_gradient(particles.inner))
    new, obj, seen, meta = _unroll(cfg, task, ths, p)
    return jnp.sum(obj), (new, obj, seen, meta)

  # particles are independent: d(sum)/d(thetas[j]) is particle j's gradient
  per_unit, (new, obj, seen, meta) = jax.grad(total, has_aux=True)(thetas)
  grad = jax.tree.map(lambda x: jnp.mean(x, axis=0), per_unit)
  return grad, new, dict(per_unit=per_unit, obj=obj, seen=seen,
                         meta_loss=meta)


def make_outer_step(cfg: OuterConfig, task: InnerTask,
                    meta_opt: Optional[optax.GradientTransformation] = None
                    ) -> Callable[[OuterState], Tuple[OuterState, dict]]:
  """A jitted ``step(state) -> (state, metrics)``: one truncation of every
  particle, the gradient estimate and one ``meta_opt`` update (default
  Adam 1e-3; use the one given to :func:`init`).

  Args:
    cfg: the outer trainer's :class:`OuterConfig`.
    task: the inner task (:class:`InnerTask`).
    meta_opt: the meta optimizer (default: Adam 1e-3).

  Returns:
    The jitted step.  Its ``metrics``: ``meta_loss`` (mean per-step
    held-out loss), ``objective`` (mean truncation objective),
    ``grad_norm``, ``grad_var`` (trace of the estimate's covariance),
    ``resets`` (particles restarted).
  """
  meta_opt = meta_opt or optax.adam(1e-3)
  estimate = pes_estimate if cfg.estimator == "pes" else tbptt_estimate

  def step(state: OuterState):
    key, sub = jax.random.split(state.key)
    grad, particles, aux = estimate(cfg, task, state.theta, state.particles,
                                    sub)
    updates, opt_state = meta_opt.update(grad, state.meta_opt_state,
                                         state.theta)
    theta = optax.apply_updates(state.theta, updates)
    metrics = dict(meta_loss=jnp.mean(aux["meta_loss"]),
                   objective=jnp.mean(jnp.sum(aux["obj"], axis=1)),
                   grad_norm=optax.tree.norm(grad),
                   grad_var=_variance(aux["per_unit"]),
                   resets=jnp.sum(aux["seen"][:, -1]))
    return OuterState(theta, opt_state, particles, key, state.step + 1), metrics

  return jax.jit(step)


@functools.lru_cache(maxsize=8)
def _snr_step(cfg: OuterConfig, task: InnerTask):
  """One jitted truncation of :func:`measure_snr` (one program per config
  and task; ``theta`` is an argument, not a constant)."""
  estimate = pes_estimate if cfg.estimator == "pes" else tbptt_estimate
  half = cfg.units // 2

  @jax.jit
  def one(theta, particles, key):
    grad, particles, aux = estimate(cfg, task, theta, particles, key)
    dot = sum(jnp.sum(jnp.mean(x[:half], 0) * jnp.mean(x[half:2 * half], 0))
              for x in jax.tree.leaves(aux["per_unit"]))
    var = _variance(aux["per_unit"])
    norm2 = optax.tree.norm(grad, squared=True)
    return particles, dot, var, norm2, grad
  return one


def measure_snr(cfg: OuterConfig, task: InnerTask, theta, key, *,
                steps: int, particles: Optional[Particles] = None
                ) -> Dict[str, Any]:
  r"""The signal-to-noise ratio of the gradient estimate at a fixed
  ``theta`` (no meta update), over ``steps`` truncations of persistent
  particles (so over every phase of the inner runs).

  With :math:`\hat g_A, \hat g_B` the means of the two halves of a
  truncation's independent units (pairs for PES), :math:`\hat g_A \cdot
  \hat g_B` estimates :math:`\lVert g\rVert^2` without bias; the noise of
  the N-unit mean estimate is :math:`\mathrm{tr}\,\Sigma / N`, estimated by
  the units' sample variance.  Averaged over the truncations:

  .. math::
      \mathrm{SNR}_N = \frac{\overline{\hat g_A\cdot\hat g_B}}
      {\overline{\mathrm{tr}\,\hat\Sigma} / N},

  and :math:`\mathrm{SNR}_{N'} = (N'/N)\,\mathrm{SNR}_N` for another
  number of units (they are independent).  ``ratio`` is the naive
  :math:`\overline{\lVert \hat g\rVert^2 / (\mathrm{tr}\hat\Sigma/N)}`
  (the meta-training metrics' ``grad_norm**2 / grad_var``), which is about
  :math:`1 + \mathrm{SNR}_N`: near 1 means noise.

  Args:
    cfg: the outer trainer's :class:`OuterConfig` (at least 4 units).
    task: the inner task.
    theta: the rule's parameters (held fixed).
    key: a PRNG key (particles and perturbations).
    steps: truncations to average over.
    particles: start from these particles (default: fresh ones from
      ``key``).

  Returns:
    ``snr`` (per truncation, for the N units of ``cfg``), ``snr_se`` (its
    standard error over the truncations, as if independent), ``signal``
    (mean :math:`\hat g_A\cdot\hat g_B`), ``noise`` (mean trace of the
    N-unit estimate's covariance), ``ratio`` (naive), ``units`` (N),
    ``mean_grad`` (the estimates' mean over the truncations), and
    ``particles`` (to continue).
  """
  n = cfg.units
  if n < 4:
    raise ValueError(f"measure_snr needs at least 4 units, got {n}")
  k_part, key = jax.random.split(key)
  if particles is None:
    particles = init_particles(cfg, task, theta, k_part)
  one = _snr_step(cfg, task)
  dots, vars_, ratios, total = [], [], [], None
  for _ in range(int(steps)):
    key, sub = jax.random.split(key)
    particles, dot, var, norm2, grad = one(theta, particles, sub)
    dots.append(float(dot))
    vars_.append(float(var))
    ratios.append(float(norm2) / float(var))
    total = grad if total is None else jax.tree.map(jnp.add, total, grad)
  signal, noise = float(np.mean(dots)), float(np.mean(vars_))
  se = (float(np.std(dots, ddof=1)) / np.sqrt(len(dots)) / noise
        if len(dots) > 1 else float("nan"))
  return dict(snr=signal / noise, snr_se=se, signal=signal, noise=noise,
              ratio=float(np.mean(ratios)), units=n,
              mean_grad=jax.tree.map(lambda x: x / steps, total),
              particles=particles)
