"""The pieces of one configuration: its task, model, amplifier, loss, and
each method's optimizer (the functions :mod:`ngrok_jax.train` builds on).

All are pure functions of a (frozen, hashable) :class:`TrainConfig` and the
per-seed numeric hyperparameters ``hp`` (name -> scalar or traced array).
The amplifier methods use :func:`ngrok_jax.neuralgrok` around clip + Adam;
the baselines ``chain(method transform, clip + Adam)``.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngrok_jax import tasks as tasks_lib
from ngrok_jax.amplifier import Amplifier
from ngrok_jax.config import AMPLIFIER_METHODS, TrainConfig, check_hparam
from ngrok_jax.model import Transformer, cross_entropy
from ngrok_jax.neuralgrok import neuralgrok
from ngrok_jax.transforms import (coupled_adam, grokfast_ema, grokfast_ma,
                                  normalize_gradients, scale_by_amplifier)

__all__ = ["task_of", "model_of", "amplifier_of", "loss_fn", "optimizer",
           "meta_optimizer", "transform_gradient", "hparams_of"]


@functools.lru_cache(maxsize=64)
def task_of(cfg: TrainConfig) -> tasks_lib.Task:
  """The task's examples (built once per task and modulus)."""
  return tasks_lib.make_task(cfg.task, cfg.p)


def model_of(cfg: TrainConfig) -> Transformer:
  task = task_of(cfg)
  return Transformer(task.vocab_size, task.seq_len, cfg.dim, cfg.heads,
                     cfg.depth, init_style=cfg.init)


def amplifier_of(cfg: TrainConfig) -> Amplifier:
  return Amplifier(tuple(cfg.amp_hidden), cfg.amp_method,
                   jnp.bfloat16 if cfg.amp_dtype == "bfloat16" else jnp.float32,
                   cfg.amp_chunk)


def loss_fn(cfg: TrainConfig, params, x, y, w=None):
  """Mean cross-entropy of the batch ``(x, y)``; ``w``: 0/1 row mask."""
  return cross_entropy(model_of(cfg).apply(params, x), y, w)


def _adam(cfg: TrainConfig, hp) -> optax.GradientTransformation:
  """Clip, coupled decay (or AdamW) and Adam with warm-up."""
  return coupled_adam(hp["lr"], hp["wd"], hp["b1"], hp["b2"], hp["eps"],
                      hp["eps_root"], cfg.warmup_steps, hp["clip"],
                      decoupled=cfg.method == "adamw")


def meta_optimizer(hp) -> optax.GradientTransformation:
  """PyTorch ``Adam(meta_lr, betas=(b1, b2), weight_decay=meta_wd)`` (the
  reference's meta optimizer: the model's betas and weight decay)."""
  return optax.chain(optax.add_decayed_weights(hp["meta_wd"]),
                     optax.scale_by_adam(b1=hp["b1"], b2=hp["b2"], eps=1e-8),
                     optax.scale(-hp["meta_lr"]))


def optimizer(cfg: TrainConfig, hp, amp_init: Any = None
              ) -> optax.GradientTransformationExtraArgs:
  """The method's whole optimizer for hyperparameters ``hp`` (name -> value).

  Amplifier methods: :func:`ngrok_jax.neuralgrok` around clip + Adam
  (``neuralgrok-frozen``: ``meta_every=0``); the other methods:
  ``chain(method transform, clip + Adam)``.  ``amp_init``: the amplifier
  parameters its ``init`` starts from (unused by ``update``).
  """
  if cfg.method in AMPLIFIER_METHODS:
    meta = cfg.method == "neuralgrok"
    return neuralgrok(
        _adam(cfg, hp), amplifier_of(cfg).apply, amp_init,
        meta_every=cfg.meta_every if meta else 0, c=hp["c"],
        lookahead=("inner" if cfg.lookahead == "inner"
                   else optax.sgd(hp["lookahead_lr"])),
        meta_optimizer=meta_optimizer(hp), placement=cfg.meta_placement)
  return optax.chain(_pre_transform(cfg, hp), _adam(cfg, hp))


def _pre_transform(cfg: TrainConfig, hp, phi=None):
  m = cfg.method
  if m in AMPLIFIER_METHODS:
    return scale_by_amplifier(amplifier_of(cfg).apply, phi, c=hp["c"])
  if m == "rescale":
    return optax.with_extra_args_support(normalize_gradients(hp["c"]))
  if m == "grokfast-ema":
    return optax.with_extra_args_support(grokfast_ema(hp["alpha"], hp["lamb"]))
  if m == "grokfast-ma":
    return optax.with_extra_args_support(grokfast_ma(cfg.window, hp["lamb"]))
  return optax.with_extra_args_support(optax.identity())


def transform_gradient(cfg: TrainConfig, s, g):
  """The method's transform of the gradient ``g`` at the
  :class:`ngrok_jax.train.SeedState` ``s`` (before
  clip and Adam; the amplifier's output for NeuralGrok).  Pure: no state
  changes (GrokFast's averages include ``g`` as the next step would)."""
  if cfg.method in AMPLIFIER_METHODS:
    pre, pre_state = _pre_transform(cfg, s.hparams, s.amp_params), ()
  else:
    pre, pre_state = _pre_transform(cfg, s.hparams), s.opt_state[0]
  return pre.update(g, pre_state, s.params)[0]


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
  if cfg.method == "neuralgrok" and cfg.lookahead == "inner" and np.any(
      out["eps_root"] <= 0):
    raise ValueError("lookahead='inner' needs eps_root > 0 for every seed")
  return {k: jnp.asarray(v) for k, v in out.items()}
