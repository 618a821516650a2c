"""The pieces of one configuration: its task, model, amplifier, loss, and
each method's optimizer (the functions :mod:`ngrok_jax.train` builds on).

All are pure functions of a (frozen, hashable) :class:`TrainConfig` and the
per-seed numeric hyperparameters ``hp`` (name -> scalar or traced array).
Each method's optimizer is built by its record in :mod:`ngrok_jax.registry`
(from the amplifier's pieces made here): the amplifier methods use
:func:`ngrok_jax.neuralgrok` around clip + Adam; the baselines
``chain(method transform, clip + Adam)``; ``muon``: ``optax.contrib.muon`` on
the blocks' matrices, AdamW on the rest.  With ``fix_weight_norm`` every
method's update ends with the projection onto that weight norm.

The amplifier's options (all off by default): ``amp_inputs="rich"``
(:class:`ngrok_jax.RichAmplifier` on :func:`ngrok_jax.rich_features`, the
Adam moments read from the inner optimizer's state), ``lookahead_steps``
(K-step unrolled look-ahead) and ``meta_schedule`` (the meta learning rate
times a cosine decay, optionally after a linear warm-up, over
``meta_schedule_steps // meta_every`` meta steps).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngrok_jax._src.core import tasks as tasks_lib
from ngrok_jax._src.optim.amplifier import (Amplifier, RichAmplifier,
                                            adam_moments, amplify,
                                            rich_features)
from ngrok_jax._src.training.config import (HPARAMS, TrainConfig,
                                            check_hparam)
from ngrok_jax._src.core.model import (Transformer, cross_entropy,
                                       stablemax_cross_entropy)
from ngrok_jax._src.optim.registry import MethodParts

__all__ = ["program_config", "task_of", "model_of", "amplifier_of",
           "loss_fn", "cross_entropy_of", "optimizer", "meta_optimizer",
           "transform_gradient", "hparams_of", "num_tensors",
           "init_amplifier_params", "amplifier_fns", "amplify_at",
           "meta_lr_schedule"]


class _PerSeed:
  """Stands for a per-seed hyperparameter in :func:`program_config`: any use
  of its value (arithmetic, comparison, conversion to a number or an array)
  raises, so a program that reads the config's field instead of the
  seed's array fails loudly when it is traced."""
  __slots__ = ("name",)

  def __init__(self, name: str):
    self.name = name

  def __repr__(self):
    return f"<per-seed {self.name}>"

  def __reduce__(self):  # copies and pickles are the same placeholder
    return _per_seed, (self.name,)

  def __hash__(self):
    return hash((_PerSeed, self.name))

  def __eq__(self, other):
    if isinstance(other, _PerSeed):
      return self.name == other.name
    return self._fail()

  def __ne__(self, other):
    return not self == other

  def _fail(self, *args, **kwargs):
    raise TypeError(
        f"TrainConfig.{self.name} is a per-seed hyperparameter: a compiled "
        f"program reads the seed's hparams[{self.name!r}] (an array), never "
        f"the config's field (a new value would compile a new program)")

  __lt__ = __le__ = __gt__ = __ge__ = __bool__ = _fail
  __float__ = __int__ = __index__ = __complex__ = __round__ = _fail
  __neg__ = __pos__ = __abs__ = __array__ = __jax_array__ = _fail
  __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
  __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _fail
  __mod__ = __rmod__ = __pow__ = __rpow__ = __matmul__ = __rmatmul__ = _fail


_PER_SEED = {name: _PerSeed(name) for name in HPARAMS}


def _per_seed(name: str) -> _PerSeed:
  return _PER_SEED[name]


@functools.lru_cache(maxsize=64)
def program_config(cfg: TrainConfig) -> TrainConfig:
  """The part of ``cfg`` that decides its compiled programs (their key).

  ``cfg`` with every field named in ``HPARAMS`` replaced by a placeholder:
  those values (and whether they are ``None``, the method's default) reach
  the programs only as the per-seed arrays of ``SeedState.hparams``, so
  configs that differ in them share one key and one set of programs.  The
  placeholder raises on any use of its value (a TypeError naming the
  field), so no program can read a hyperparameter from the config.  None
  of the ``HPARAMS`` decides a program's structure: ``clip=inf`` (no
  clipping) and ``wd=0`` run the same operations as any other value.

  Args:
    cfg: a configuration.

  Returns:
    The key configuration (not valid for :meth:`TrainConfig.hparams` or
    :meth:`TrainConfig.validate`); a key configuration is its own key.
  """
  return dataclasses.replace(cfg, **_PER_SEED)


@functools.lru_cache(maxsize=64)
def _task(name: str, p: int) -> tasks_lib.Task:
  return tasks_lib.make_task(name, p)


def task_of(cfg: TrainConfig) -> tasks_lib.Task:
  """The task's examples (built once per task and modulus)."""
  return _task(cfg.task, cfg.p)


def model_of(cfg: TrainConfig) -> Transformer:
  task = task_of(cfg)
  return Transformer(task.vocab_size, task.seq_len, cfg.dim, cfg.heads,
                     cfg.depth, init_style=cfg.init)


def num_tensors(cfg: TrainConfig) -> int:
  """The number of parameter tensors (leaves) of the configured model."""
  return _num_tensors(program_config(cfg))


@functools.lru_cache(maxsize=64)
def _num_tensors(cfg: TrainConfig) -> int:
  dummy = jnp.zeros((1, task_of(cfg).seq_len), jnp.int32)
  return len(jax.tree.leaves(jax.eval_shape(
      lambda: model_of(cfg).init(jax.random.PRNGKey(0), dummy))))


def amplifier_of(cfg: TrainConfig):
  """The configured amplifier module: :class:`Amplifier` (``amp_inputs=
  "grad"``) or :class:`RichAmplifier` with one embedding row per tensor."""
  dtype = jnp.bfloat16 if cfg.amp_dtype == "bfloat16" else jnp.float32
  if cfg.amp_inputs == "rich":
    return RichAmplifier(tuple(cfg.amp_hidden), num_tensors(cfg), dtype=dtype,
                         chunk=cfg.amp_chunk)
  return Amplifier(tuple(cfg.amp_hidden), cfg.amp_method, dtype,
                   cfg.amp_chunk)


def init_amplifier_params(cfg: TrainConfig, key):
  """Fresh amplifier parameters for ``cfg`` from the PRNG ``key``."""
  amp = amplifier_of(cfg)
  if cfg.amp_inputs == "rich":
    return amp.init(key, jnp.zeros((1, amp.num_features), jnp.float32),
                    jnp.zeros((1,), jnp.int32))
  return amp.init(key, jnp.zeros((1,), jnp.float32))


def _rich_features(g, inner_state, params):
  return rich_features(g, *adam_moments(inner_state), params)


def amplifier_fns(cfg: TrainConfig):
  """``(amplifier, features)`` for :func:`ngrok_jax.neuralgrok`: the
  amplifier's ``apply`` and the features callable (``None`` for the
  1-input amplifier; :func:`ngrok_jax.rich_features` of the gradient, the
  inner Adam's moments and the parameters for ``amp_inputs="rich"``)."""
  amp = amplifier_of(cfg)
  if cfg.amp_inputs == "rich":
    return (lambda phi, f: amp.apply(phi, *f)), _rich_features
  return amp.apply, None


def amplify_at(cfg: TrainConfig, c, phi, g, inner_state, params):
  r"""The amplified gradient :math:`G(g; \phi)` as the inner step computes
  it (``inner_state``: the inner optimizer's state, read by rich inputs)."""
  amp, features = amplifier_fns(cfg)
  if features is None:
    return amplify(g, lambda x: amp(phi, x), c)
  x = features(g, inner_state, params)
  return amplify(g, lambda _: amp(phi, x), c)


def cross_entropy_of(cfg: TrainConfig):
  """The configured loss on logits: softmax or StableMax cross-entropy."""
  return stablemax_cross_entropy if cfg.loss == "stablemax" else cross_entropy


def loss_fn(cfg: TrainConfig, params, x, y, w=None):
  """Mean cross-entropy (``cfg.loss``) of the batch ``(x, y)``; ``w``: 0/1
  row mask.

  Args:
    cfg: the configuration.
    params: the transformer's parameters.
    x: (B, L) tokens.
    y: (B,) labels.
    w: optional (B,) 0/1 row mask.

  Returns:
    A scalar loss.
  """
  return cross_entropy_of(cfg)(model_of(cfg).apply(params, x), y, w)


def meta_lr_schedule(cfg: TrainConfig):
  r"""The meta learning rate's multiplier as a function of the meta-step
  count :math:`n` (``None`` for ``meta_schedule="constant"``).

  With :math:`H = \max(1, \lfloor \text{meta\_schedule\_steps} / T
  \rfloor)` meta steps: ``"cosine"``: :math:`\tfrac12(1 + \cos(\pi
  \min(n, H)/H))`; ``"warmup-cosine"``: linear from 0 to 1 over the first
  :math:`W = \max(1, \lfloor H/20 \rfloor)` meta steps, then the cosine
  decay to 0 at :math:`H` (``optax.warmup_cosine_decay_schedule``).
  """
  if cfg.meta_schedule == "constant":
    return None
  horizon = max(1, int(cfg.meta_schedule_steps) // max(1, cfg.meta_every))
  if cfg.meta_schedule == "cosine":
    return optax.cosine_decay_schedule(1.0, horizon)
  return optax.warmup_cosine_decay_schedule(
      0.0, 1.0, max(1, horizon // 20), max(horizon, 2), 0.0)


def meta_optimizer(hp, cfg: Optional[TrainConfig] = None
                   ) -> optax.GradientTransformation:
  """PyTorch ``Adam(meta_lr, betas=(b1, b2), weight_decay=meta_wd)`` (the
  reference's meta optimizer: the model's betas and weight decay); with
  ``cfg.meta_schedule`` the learning rate is ``meta_lr`` (per seed) times
  :func:`meta_lr_schedule`."""
  sched = meta_lr_schedule(cfg) if cfg is not None else None
  if sched is None:
    last = optax.scale(-hp["meta_lr"])
  else:
    last = optax.scale_by_schedule(lambda n: -hp["meta_lr"] * sched(n))
  return optax.chain(optax.add_decayed_weights(hp["meta_wd"]),
                     optax.scale_by_adam(b1=hp["b1"], b2=hp["b2"], eps=1e-8),
                     last)


def _parts(cfg: TrainConfig, hp, amp_params) -> MethodParts:
  """The amplifier's pieces for the method's factories (none without an
  amplifier)."""
  if not cfg.record.uses_amplifier:
    return MethodParts()
  amp, features = amplifier_fns(cfg)
  return MethodParts(amp, features, amp_params, meta_optimizer(hp, cfg))


def optimizer(cfg: TrainConfig, hp, amp_init: Any = None
              ) -> optax.GradientTransformationExtraArgs:
  """The method's whole optimizer for hyperparameters ``hp`` (name -> value).

  The method's record (:mod:`ngrok_jax.registry`) builds it: for the
  amplifier methods :func:`ngrok_jax.neuralgrok` around clip + Adam
  (``neuralgrok-frozen``: ``meta_every=0``); for most others
  ``chain(method transform, clip + Adam)``.

  Args:
    cfg: the configuration.
    hp: the numeric hyperparameters (name -> scalar or traced array).
    amp_init: the amplifier parameters its ``init`` starts from (unused by
      ``update``; amplifier methods only).

  Returns:
    The optimizer (an ``optax.GradientTransformationExtraArgs``).
  """
  return cfg.record.build(cfg, hp, _parts(cfg, hp, amp_init))


def transform_gradient(cfg: TrainConfig, s, g):
  """The method's transform of the gradient ``g`` at the
  :class:`ngrok_jax.SeedState` ``s`` (before
  clip and Adam; the amplifier's output for NeuralGrok).  Pure: no state
  changes (GrokFast's averages include ``g`` as the next step would).

  Args:
    cfg: the configuration.
    s: one seed's state.
    g: the gradient (a tree like ``s.params``).

  Returns:
    The transformed gradient.
  """
  rec = cfg.record
  if rec.uses_amplifier and cfg.amp_inputs == "rich":
    return amplify_at(cfg, s.hparams["c"], s.amp_params, g,
                      s.opt_state.inner_state, s.params)
  pre = rec.transform(cfg, s.hparams, _parts(cfg, s.hparams, s.amp_params))
  # in the default chain the transform's state comes first; a method with
  # its own optimizer has a stateless transform
  state = (s.opt_state[0] if rec.optimizer is None else pre.init(s.params))
  return pre.update(g, state, s.params)[0]


def hparams_of(cfg: TrainConfig, num_seeds: int,
               overrides: Optional[Mapping[str, Any]] = None
               ) -> Dict[str, jax.Array]:
  """Per-seed hyperparameter arrays (S,), with optional per-seed values."""
  out = {k: np.full((num_seeds,), v, np.float32)
         for k, v in cfg.hparams().items()}
  for k, v in (overrides or {}).items():
    check_hparam(k, v)
    arr = np.asarray(v, np.float32)
    if arr.ndim == 0:
      arr = np.full((num_seeds,), arr, np.float32)
    if arr.shape != (num_seeds,):
      raise ValueError(f"hyperparameter {k} needs one value or {num_seeds} "
                       f"values (one per seed), got shape {arr.shape}")
    out[k] = arr
  if cfg.record.needs_outer_batch and cfg.lookahead == "inner" and np.any(
      out["eps_root"] <= 0):
    raise ValueError("lookahead='inner' needs eps_root > 0 for every seed")
  return {k: jnp.asarray(v) for k, v in out.items()}
