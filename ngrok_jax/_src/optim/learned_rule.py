r"""A learned update rule that acts on the update, with bounded output.

The NeuralGrok amplifier reweights the gradient *before* Adam, where any
per-component weight that is constant over time cancels in Adam's division
by the running RMS.  :func:`rule_update` places a learned MLP *after* the
normalisation instead (``placement="update"``, default), or keeps the
paper's amplifier before Adam (``placement="amplifier"``; it reuses
:func:`ngrok_jax.amplify` and :class:`ngrok_jax.Amplifier`), so that which
placement wins is a measurement.

``placement="update"``.  For every parameter tensor :math:`t` and component
:math:`i` the inputs are (each divided by its tensor's RMS, so scale free):
the gradient :math:`g`, momenta :math:`m^{(\beta)}` at the decays
``decays``, :math:`\sqrt{v}` (second moment, decay ``beta2``), the
parameter :math:`\theta`, Adam's direction :math:`\hat m / (\sqrt{\hat v} +
\epsilon)`; per tensor :math:`0.1 \log \mathrm{rms}_t(g)` and :math:`0.1 \log
\mathrm{rms}_t(\theta)`; and the training progress :math:`\tanh(k / s)` for
the time scales ``time_scales`` (:math:`k` the step count).  A ReLU MLP
maps them to two outputs :math:`(a_i, b_i)` and the update is

.. math::
    d_i = \tanh(x^{adam}_i + a_i), \qquad
    u_t = -\,\eta \; 2\sigma\big(\overline{b}_t\big)\;
          \frac{d_t}{\mathrm{rms}(d_t)},

:math:`\overline{b}_t` the mean of :math:`b` over the tensor.  So every
tensor's update has RMS at most :math:`2\eta` whatever the rule's
parameters (a learned rule cannot blow up a run), and at initialisation
(small output layer) it is close to a per-tensor normalised Adam step.

``placement="muon"`` (the orthogonalised harness, after Celo2's recommended
variant: Moudgil, Knyazev and Belilovsky 2026, arXiv 2602.19142).  On every
matrix Muon orthogonalises (``dimension_numbers``: a tree of
``optax.contrib.MuonDimensionNumbers`` or ``None``, or a callable of the
parameters returning one; default every 2-D leaf) the base direction is
Muon's Nesterov momentum :math:`\hat\mu_t` (decay ``muon_beta``); the MLP,
with the features above plus the RMS-normalised base, adds a bounded
residual and the result is orthogonalised by the same Newton-Schulz
iteration as ``optax.contrib.muon`` (``ns_steps``, its default
coefficients), scaled to AdamW's RMS (``consistent_rms``) and by the
learned per-tensor factor:

.. math::
    d_t = \mathrm{NS}\big(\hat\mu_t + \mathrm{rms}(\hat\mu_t)\tanh(a)\big)
          \,\sqrt{\max(n_{in}, n_{out})}\;\rho, \qquad
    u_t = -\,\eta\,\big(2\sigma(\overline{b}_t)\, d_t
          + \lambda\, \theta_t\big).

The other leaves take AdamW's Nesterov direction (``b1``, ``beta2``,
``eps``; ``others="adamw"``, no learned part) or the same residual without
the orthogonalisation (``others="learned"``).  The output layer starts at
zero (``out_scale=0``, :func:`muon_config`), so at initialisation the rule
**is** ``optax.contrib.muon`` with ``consistent_rms`` and decoupled weight
decay :math:`\lambda` (``wd``) on both parts: this library's ``muon``
method at the same learning rate and weight decay.

The trained parameters become a frozen ``optax.GradientTransformation``
that works on any pytree model with :func:`frozen_rule`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from ngrok_jax._src.optim.amp_features import rms_normalize
from ngrok_jax._src.optim.amplifier import Amplifier, amplify
from ngrok_jax._src.optim.guards import skip_nonfinite
from ngrok_jax._src.optim.rule_files import (build_config,
                                             check_config_values, read_json,
                                             read_weights)

__all__ = ["RuleConfig", "LearnedRuleState", "PLACEMENTS", "init_rule",
           "init_rule_state", "rule_update", "frozen_rule", "rule_features",
           "num_features", "rule_distances", "save_rule", "load_rule",
           "muon_config", "OTHERS"]

#: Where the learned function acts: on the update after Adam's
#: normalisation, or (the paper's place) on the gradient before Adam.
PLACEMENTS = ("update", "amplifier", "muon")
#: What the ``"muon"`` placement does on the leaves it does not
#: orthogonalise: AdamW (no learned part) or the learned residual.
OTHERS = ("adamw", "learned")


@dataclasses.dataclass(frozen=True)
class RuleConfig:
  r"""The static shape of a learned rule (hashable: a jit static argument).

  Attributes:
    placement: ``"update"`` (MLP after the normalisation, bounded output) or
      ``"amplifier"`` (the paper's amplifier before Adam).
    hidden: hidden layer sizes of the MLP.
    lr: the inner learning rate :math:`\eta`.
    decays: momentum decays whose momenta are inputs (``placement="update"``;
      the one closest to 0.9 is Adam's first moment).
    beta2: second-moment decay.
    eps: Adam's epsilon.
    time_scales: step scales of the progress features ``tanh(k / s)``.
    out_scale: initial scale of the MLP's output layer.
    c: the amplifier's output norm (``placement="amplifier"``).
    wd: decoupled weight decay :math:`\lambda` (``placement="muon"``;
      times ``lr`` as in ``optax.contrib.muon``).
    muon_beta: Muon's momentum decay (``placement="muon"``).
    b1: AdamW's first-moment decay on the leaves Muon does not
      orthogonalise (``placement="muon"``; ``beta2`` is its second).
    ns_steps: Newton-Schulz iterations (``placement="muon"``).
    consistent_rms: Muon's update RMS relative to AdamW's
      (``placement="muon"``).
    others: ``"adamw"`` or ``"learned"``: the leaves Muon does not
      orthogonalise (``placement="muon"``).
  """
  placement: str = "update"
  hidden: Tuple[int, ...] = (32,)
  lr: float = 3e-3
  decays: Tuple[float, ...] = (0.5, 0.9, 0.99)
  beta2: float = 0.999
  eps: float = 1e-8
  time_scales: Tuple[float, ...] = (100.0, 1000.0, 10000.0)
  out_scale: float = 0.01
  c: float = 1.0
  wd: float = 0.0
  muon_beta: float = 0.95
  b1: float = 0.9
  ns_steps: int = 5
  consistent_rms: float = 0.2
  others: str = "adamw"

  def __post_init__(self):
    if self.placement not in PLACEMENTS:
      raise ValueError(f"unknown placement {self.placement!r}; valid: "
                       f"{', '.join(PLACEMENTS)}")
    check_config_values(self)  # lr, c, eps finite > 0, decays in [0, 1), ...

  @property
  def adam_index(self) -> int:
    """Index in ``decays`` of Adam's first moment (the decay nearest 0.9)."""
    return int(np.argmin([abs(d - 0.9) for d in self.decays]))


class LearnedRuleState(NamedTuple):
  """State of a learned rule: the step count and the moments.

  ``mus`` holds one momentum tree per decay of ``RuleConfig.decays`` (one,
  Adam's, for ``placement="amplifier"``); ``nu`` the second moment.  For the
  amplifier placement the moments are those of the amplified gradient.
  """
  count: jax.Array  # int32 scalar
  mus: Tuple[Any, ...]
  nu: Any


def num_features(config: RuleConfig) -> int:
  """Number of per-component inputs of the ``"update"`` MLP.

  Args:
    config: the rule's :class:`RuleConfig`.

  Returns:
    F, the width of :func:`rule_features`' output.
  """
  # g, the momenta, sqrt(v), param, Adam's direction, 2 log-RMS, progress
  # (and the base direction for the muon placement)
  return (1 + len(config.decays) + 3 + 2 + len(config.time_scales)
          + (config.placement == "muon"))


def muon_config(*, lr: float, wd: float, hidden: Sequence[int] = (32,),
                b2: float = 0.98, **more) -> RuleConfig:
  """The ``"muon"`` placement's config whose initial rule is this library's
  ``muon`` method (``optax.contrib.muon`` with ``consistent_rms=0.2``,
  momentum 0.95, AdamW with ``b1=0.9``, ``b2`` on the other leaves, eps
  1e-8, decoupled weight decay ``wd`` on both) at learning rate ``lr``.

  Args:
    lr: the learning rate.
    wd: the decoupled weight decay.
    hidden: the MLP's hidden sizes.
    b2: AdamW's second-moment decay (the ``muon`` method's default 0.98).
    **more: other :class:`RuleConfig` fields.

  Returns:
    A :class:`RuleConfig` with a zero output layer (``out_scale=0``).
  """
  fields = dict(placement="muon", lr=float(lr), wd=float(wd),
                hidden=tuple(int(h) for h in hidden), beta2=float(b2),
                out_scale=0.0)
  fields.update(more)
  return RuleConfig(**fields)


def init_rule(config: RuleConfig, key) -> Dict[str, Any]:
  """Initial rule parameters (a pytree of float32 arrays).

  ``"update"``: ``{"layers": [(kernel, bias), ...]}``, hidden layers with
  PyTorch's uniform init and the output layer scaled by ``out_scale``;
  ``"amplifier"``: the parameters of ``Amplifier(hidden)``.

  Args:
    config: the rule's :class:`RuleConfig`.
    key: a PRNG key.

  Returns:
    The rule parameters (a pytree of float32 arrays).
  """
  if config.placement == "amplifier":
    return Amplifier(tuple(config.hidden)).init(key, jnp.zeros((4,)))
  sizes = (num_features(config),) + tuple(int(h) for h in config.hidden) + (2,)
  layers = []
  for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
    key, kw, kb = jax.random.split(key, 3)
    bound = 1.0 / np.sqrt(fi)
    w = jax.random.uniform(kw, (fi, fo), jnp.float32, -bound, bound)
    b = jax.random.uniform(kb, (fo,), jnp.float32, -bound, bound)
    if i == len(sizes) - 2:
      w, b = w * config.out_scale, jnp.zeros_like(b)
    layers.append((w, b))
  return {"layers": layers}


def init_rule_state(config: RuleConfig, params) -> LearnedRuleState:
  """Zero moments shaped like ``params`` (float32) and a zero count.

  Args:
    config: the rule's :class:`RuleConfig`.
    params: the model parameters (any pytree of arrays).

  Returns:
    A :class:`LearnedRuleState`.
  """
  zeros = lambda: jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32),
                               params)
  n = {"amplifier": 1, "update": len(config.decays),
       "muon": len(config.decays) + 2}[config.placement]
  return LearnedRuleState(jnp.zeros((), jnp.int32),
                          tuple(zeros() for _ in range(n)), zeros())


def _moments(config: RuleConfig, g, state: LearnedRuleState):
  decays = ((0.9,) if config.placement == "amplifier" else config.decays)
  mus = tuple(jax.tree.map(lambda m, x: d * m + (1 - d) * x, mu, g)
              for d, mu in zip(decays, state.mus))
  nu = jax.tree.map(lambda v, x: config.beta2 * v + (1 - config.beta2) * x * x,
                    state.nu, g)
  return mus, nu


def _adam_direction(config: RuleConfig, m, v, count, b1):
  k = count.astype(jnp.float32)
  mh = m / (1 - b1 ** k)
  vh = v / (1 - config.beta2 ** k)
  return mh / (jnp.sqrt(vh) + config.eps)


def _log_rms(x):
  return 0.1 * jnp.log(jnp.sqrt(jnp.mean(jnp.square(x))) + 1e-12)


def rule_features(config: RuleConfig, g, mus, nu, param, count) -> jax.Array:
  """The (n, F) inputs of one tensor (flattened) for ``placement="update"``.

  Columns: g, each momentum, sqrt(v), the parameter, Adam's direction (all
  RMS-normalised over the tensor), 0.1 log rms(g), 0.1 log rms(param), and
  tanh(count / s) for each time scale (see the module docstring).

  Args:
    config: the rule's :class:`RuleConfig`.
    g: the tensor's gradient.
    mus: its momenta, one per decay in ``config.decays``.
    nu: its second moment.
    param: the parameter tensor.
    count: the step count (a scalar).

  Returns:
    (n, F) float32, n the tensor's size and F :func:`num_features`.
  """
  f = lambda a: rms_normalize(jnp.ravel(a).astype(jnp.float32))
  tiny = jnp.asarray(1e-30, jnp.float32)
  root = jnp.sqrt(jnp.ravel(nu) + tiny) - jnp.sqrt(tiny)
  adam = _adam_direction(config, mus[config.adam_index], nu, count,
                         config.decays[config.adam_index])
  n = g.size
  cols = [f(g)] + [f(m) for m in mus] + [rms_normalize(root), f(param),
                                          f(adam)]
  scal = [_log_rms(g), _log_rms(param)] + [
      jnp.tanh(count.astype(jnp.float32) / s) for s in config.time_scales]
  cols += [jnp.full((n,), s, jnp.float32) for s in scal]
  return jnp.stack(cols, axis=1)


def _mlp(layers, x):
  h = x
  for i, (w, b) in enumerate(layers):
    h = h @ w + b
    if i < len(layers) - 1:
      h = jax.nn.relu(h)
  return h


def _update_leaf(config, layers, g, mus, nu, param, count):
  x = rule_features(config, g, mus, nu, param, count)
  out = _mlp(layers, x)
  adam_col = 1 + len(config.decays) + 2
  d = jnp.tanh(x[:, adam_col] + out[:, 0])
  scale = 2.0 * jax.nn.sigmoid(jnp.mean(out[:, 1]))
  u = -config.lr * scale * rms_normalize(d)
  return u.reshape(jnp.shape(g)).astype(jnp.result_type(g))


def _fans(shape, dim) -> Tuple[int, int]:
  axes = lambda a: (a,) if isinstance(a, int) else tuple(a)
  size = lambda a: int(np.prod([shape[i] for i in axes(a)]))
  return size(dim.reduction_axis), size(dim.output_axis)


def _dimension_numbers(dimension_numbers, params):
  """The tree of ``MuonDimensionNumbers`` or ``None`` (every 2-D leaf when
  ``dimension_numbers`` is ``None``, as ``optax.contrib.muon``)."""
  if dimension_numbers is None:
    return jax.tree.map(lambda p: (optax.contrib.MuonDimensionNumbers()
                                   if jnp.ndim(p) == 2 else None), params)
  return (dimension_numbers(params) if callable(dimension_numbers)
          else dimension_numbers)


def _orthogonalize(config: RuleConfig, x, dim):
  """``optax.contrib.scale_by_muon``'s Newton-Schulz step alone (momentum 0,
  no Nesterov: its moment is ``x`` itself), then the consistent-RMS scale
  ``sqrt(max(fan_in, fan_out)) * consistent_rms`` of ``optax.contrib.muon``."""
  ns = optax.contrib.scale_by_muon(ns_steps=config.ns_steps, beta=0.0,
                                   eps=config.eps, nesterov=False,
                                   weight_dimension_numbers=dim)
  d, _ = ns.update(x, ns.init(x))
  fan_in, fan_out = _fans(jnp.shape(x), dim)
  return jnp.sqrt(jnp.maximum(fan_in, fan_out)) * config.consistent_rms * d


def _muon_update(config: RuleConfig, theta, grads, state: LearnedRuleState,
                 params, dimension_numbers):
  """The ``"muon"`` placement (module docstring)."""
  count = optax.safe_increment(state.count)
  g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
  decays = tuple(config.decays) + (config.muon_beta, config.b1)
  mus = tuple(optax.tree.update_moment(g, mu, d, 1)
              for d, mu in zip(decays, state.mus))
  nu = optax.tree.update_moment(g, state.nu, config.beta2, 2)
  nd = len(config.decays)
  count_next = optax.safe_increment(count)

  def nesterov(mu, x, beta):  # optax's Nesterov momentum, bias-corrected
    return jax.tree.map(lambda m, y: beta * m + (1 - beta) * y,
                        optax.tree.bias_correction(mu, beta, count_next),
                        optax.tree.bias_correction(x, beta, count))
  mu_muon = nesterov(mus[nd], g, config.muon_beta)
  mu_adam = nesterov(mus[nd + 1], g, config.b1)
  nu_hat = optax.tree.bias_correction(nu, config.beta2, count)
  treedef = jax.tree.structure(g)
  flat = lambda t: treedef.flatten_up_to(t)
  dims = flat(_dimension_numbers(dimension_numbers, params))
  gl, pl, vl, rl = flat(g), flat(params), flat(nu), flat(grads)
  ml, al, nl = flat(mu_muon), flat(mu_adam), flat(nu_hat)
  mls = [flat(m) for m in mus[:nd]]
  out = []
  for i, (x, dim) in enumerate(zip(gl, dims)):
    if dim is not None:
      base = ml[i]
    else:
      base = al[i] / (jnp.sqrt(nl[i]) + config.eps)
    scale = None
    if dim is not None or config.others == "learned":
      feats = rule_features(config, x, [m[i] for m in mls], vl[i], pl[i],
                            count)
      feats = jnp.concatenate(
          [feats, rms_normalize(jnp.ravel(base))[:, None]], axis=1)
      o = _mlp(theta["layers"], feats)
      rms = jnp.sqrt(jnp.mean(jnp.square(base)))
      base = base + rms * jnp.tanh(o[:, 0]).reshape(jnp.shape(base))
      scale = 2.0 * jax.nn.sigmoid(jnp.mean(o[:, 1]))
    d = base if dim is None else _orthogonalize(config, base, dim)
    if scale is not None:
      d = scale * d
    u = -config.lr * (d + config.wd * jnp.asarray(pl[i], jnp.float32))
    out.append(u.astype(jnp.result_type(rl[i])))
  return (jax.tree.unflatten(treedef, out),
          LearnedRuleState(count, mus, nu))


def rule_update(config: RuleConfig, theta, grads, state: LearnedRuleState,
                params, *, dimension_numbers=None
                ) -> Tuple[Any, LearnedRuleState]:
  """One step of the rule with parameters ``theta``.

  Args:
    config: the rule's :class:`RuleConfig`.
    theta: rule parameters (:func:`init_rule`).
    grads: gradient pytree (same structure as ``params``).
    state: :class:`LearnedRuleState` (:func:`init_rule_state`).
    params: current model parameters.
    dimension_numbers: ``placement="muon"`` only: which leaves are
      orthogonalised (a tree of ``optax.contrib.MuonDimensionNumbers`` or
      ``None``, or a callable of ``params`` returning one; default: every
      2-D leaf).

  Returns:
    ``(updates, new_state)``; ``params + updates`` is the next iterate
    (``optax.apply_updates``).  ``"update"``: every tensor's update has RMS
    at most ``2 * lr``; ``"amplifier"``: ``-lr * Adam(amplify(g))``;
    ``"muon"``: the orthogonalised harness (module docstring).
  """
  if config.placement == "muon":
    return _muon_update(config, theta, grads, state, params,
                        dimension_numbers)
  count = state.count + 1
  g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
  if config.placement == "amplifier":
    amp = Amplifier(tuple(config.hidden))
    g = amplify(g, lambda x: amp.apply(theta, x), config.c)
    mus, nu = _moments(config, g, state)
    upd = jax.tree.map(
        lambda m, v, x: (-config.lr * _adam_direction(config, m, v, count, 0.9)
                         ).astype(jnp.result_type(x)), mus[0], nu, grads)
    return upd, LearnedRuleState(count, mus, nu)
  mus, nu = _moments(config, g, state)
  leaves, treedef = jax.tree.flatten(g)
  mls = [treedef.flatten_up_to(m) for m in mus]
  vl, pl = treedef.flatten_up_to(nu), treedef.flatten_up_to(params)
  gl = treedef.flatten_up_to(grads)
  out = [_update_leaf(config, theta["layers"], x, [m[i] for m in mls], vl[i],
                      pl[i], count).astype(jnp.result_type(gl[i])) if x.size
         else jnp.zeros(jnp.shape(gl[i]), jnp.result_type(gl[i]))
         for i, x in enumerate(leaves)]
  return jax.tree.unflatten(treedef, out), LearnedRuleState(count, mus, nu)


def frozen_rule(theta, *, config: RuleConfig = RuleConfig(),
                dimension_numbers=None) -> optax.GradientTransformation:
  """A trained rule as a frozen ``optax.GradientTransformation``.

  Works on any pytree of float parameters (not only this library's
  transformer); ``update`` needs ``params``.  A step whose gradient holds a
  NaN or an infinity is skipped (zero update, state unchanged).  The rule
  parameters are closed over (no meta-learning happens).

  Example::

      tx = frozen_rule(theta, config=RuleConfig())
      state = tx.init(params)
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)

  Args:
    theta: trained rule parameters (as :func:`init_rule` returns them).
    config: the :class:`RuleConfig` they were trained with.
    dimension_numbers: ``placement="muon"``: the leaves to orthogonalise
      (:func:`rule_update`; default every 2-D leaf).

  Returns:
    A ``GradientTransformation`` with state :class:`LearnedRuleState`.
  """
  theta = jax.tree.map(jnp.asarray, theta)

  def init_fn(params):
    return init_rule_state(config, params)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("a learned rule needs the parameters: call "
                       "update(grads, state, params)")
    return rule_update(config, theta, updates, state, params,
                       dimension_numbers=dimension_numbers)

  return optax.GradientTransformation(init_fn,
                                      skip_nonfinite(update_fn, "frozen_rule"))


def rule_distances(config: RuleConfig, theta, grads, state, params,
                   references: Sequence[Any], *, dimension_numbers=None
                   ) -> jax.Array:
  r"""How far the rule's next update is from each reference update.

  The distance of two updates is the mean over tensors of
  :math:`\mathrm{rms}(\hat u - \hat r)` with hats the per-tensor RMS
  normalisation (0: same direction per tensor, up to a per-tensor scale;
  :math:`\sqrt 2`: orthogonal; 2: opposite).

  Args:
    config: the rule's :class:`RuleConfig`.
    theta: the rule's parameters.
    grads: the gradients (a pytree like ``params``).
    state: the rule's optimizer state (:class:`LearnedRuleState`).
    params: the model parameters.
    references: reference updates (pytrees like ``params``), for example
      Adam's and rescaling's next updates.
    dimension_numbers: ``placement="muon"``'s orthogonalised leaves
      (:func:`rule_update`).

  Returns:
    (len(references),) float32.
  """
  upd, _ = rule_update(config, theta, grads, state, params,
                       dimension_numbers=dimension_numbers)
  ul = jax.tree.leaves(upd)
  out = []
  for ref in references:
    rl = jax.tree.leaves(ref)
    d = [jnp.sqrt(jnp.mean(jnp.square(
        rms_normalize(jnp.ravel(u)) - rms_normalize(jnp.ravel(r)))))
         for u, r in zip(ul, rl)]
    out.append(jnp.mean(jnp.stack(d)))
  return jnp.stack(out)


def save_rule(folder: str, config: RuleConfig, theta) -> None:
  """Writes ``rule.msgpack`` (the parameters) and ``rule_config.json``.

  Args:
    folder: the output folder (created if missing).
    config: the rule's :class:`RuleConfig`.
    theta: the rule parameters.
  """
  from ngrok_jax._src.core.fileio import atomic_write, dumps
  os.makedirs(folder, exist_ok=True)
  atomic_write(os.path.join(folder, "rule.msgpack"), serialization.to_bytes(
      jax.tree.map(np.asarray, jax.device_get(theta))))
  atomic_write(os.path.join(folder, "rule_config.json"),
               dumps(dataclasses.asdict(config)))


def load_rule(folder: str) -> Tuple[Any, RuleConfig]:
  """``(theta, config)`` saved by :func:`save_rule` in ``folder``;
  ``frozen_rule(theta, config=config)`` is then the trained rule.

  Args:
    folder: a folder written by :func:`save_rule` (e.g. a meta-training
      run folder).

  Returns:
    ``(theta, config)``.

  Raises:
    ValueError: one line naming the file and the field: a file missing or
      unreadable, a configuration field unknown, missing or out of range,
      weights whose names or shapes the configuration does not give, or
      non-finite weights (:mod:`ngrok_jax._src.optim.rule_files`).
  """
  paths = [os.path.join(folder, f) for f in ("rule_config.json",
                                             "rule.msgpack")]
  for p in paths:
    if not os.path.isfile(p):
      raise ValueError(f"no learned rule in {folder!r} (missing "
                       f"{os.path.basename(p)})")
  config = build_config(RuleConfig, read_json(paths[0]), paths[0])
  theta = read_weights(paths[1], jax.eval_shape(
      lambda: init_rule(config, jax.random.PRNGKey(0))), paths[0],
                       config.placement)
  return jax.tree.map(jnp.asarray, theta), config

