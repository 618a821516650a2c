"""Building a :class:`ngrok_jax.spec.RunSpec`: :func:`make_spec` (a config,
methods, seeds, per-method overrides, per-seed hyperparameters, a frozen
amplifier; validated) and :func:`sweep_seeds` (seeds x sweep values).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ngrok_jax.config import METHODS, TrainConfig
from ngrok_jax.fileio import is_int
from ngrok_jax.registry import get_method
from ngrok_jax.spec import EACH, STOP_ACC, RunSpec

__all__ = ["make_spec", "sweep_seeds"]


def _base_config(config) -> TrainConfig:
  if config is None:
    return TrainConfig()
  if isinstance(config, TrainConfig):
    return config
  if isinstance(config, Mapping):
    return TrainConfig.from_dict(dict(config))
  raise ValueError(f"config must be a TrainConfig or a dict, got "
                   f"{type(config).__name__}")


def _seed_tuple(seeds) -> Tuple[int, ...]:
  if is_int(seeds):
    if seeds < 1:
      raise ValueError(f"seeds must be a positive number of seeds or a list "
                       f"of seeds, got {seeds}")
    return tuple(range(int(seeds)))
  try:
    return tuple(seeds)
  except TypeError:
    raise ValueError(f"seeds must be an int or a list of ints, got "
                     f"{seeds!r}") from None


def make_spec(config: Union[TrainConfig, Mapping[str, Any], None] = None,
              methods: Union[str, Sequence[str]] = ("neuralgrok", "adam"),
              seeds: Union[int, Sequence[int]] = 4, steps: int = 1000,
              eval_every: int = 100, *,
              method_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
              hparams: Optional[Mapping[str, Any]] = None,
              checkpoint_every: Optional[int] = None,
              keep_checkpoints: int = 3, amplifier: Optional[str] = None,
              amplifier_seed: Union[int, str] = 0,
              stop_after: Optional[int] = None,
              stop_acc: float = STOP_ACC) -> RunSpec:
  """Builds and validates a :class:`RunSpec` (arguments as in
  :func:`ngrok_jax.runner.run`).

  Args:
    config: the base :class:`ngrok_jax.TrainConfig`, its dict, or None.
    methods: method names (a list or a comma-separated string).
    seeds: the number of seeds (0..n-1) or the seeds.
    steps: training steps per method.
    eval_every: steps between evaluations.
    method_overrides: per-method config fields.
    hparams: swept per-seed hyperparameter values.
    checkpoint_every: steps between checkpoints (None/0: only at the end).
    keep_checkpoints: how many checkpoints to keep.
    amplifier: a saved amplifier file or run folder.
    amplifier_seed: the index of the seed whose amplifier is used, or
      ``"each"``.
    stop_after: evaluations every seed must hold ``stop_acc`` to stop.
    stop_acc: the accuracy of ``stop_after``.

  Returns:
    A validated :class:`RunSpec`.
  """
  base = _base_config(config)
  if isinstance(methods, str):
    methods = [m.strip() for m in methods.split(",") if m.strip()]
  methods = list(methods)
  if len(set(methods)) != len(methods):
    raise ValueError(f"methods must be distinct (a method is listed twice), "
                     f"got {methods}")
  for m in list(methods) + list(method_overrides or {}):
    if m not in METHODS:
      raise ValueError(f"unknown method {m!r}; valid methods: "
                       f"{', '.join(METHODS)}")
  seeds = _seed_tuple(seeds)
  method_overrides = dict(method_overrides or {})
  amp_meta = None
  frozen = {m for m in methods if get_method(m).needs_trained_amplifier}
  if amplifier is not None and frozen:
    from ngrok_jax.ampfile import load_amplifier
    amp_meta = load_amplifier(
        amplifier, 0 if amplifier_seed == EACH else amplifier_seed)[1]
    if "amp_hidden" in method_overrides.get("neuralgrok-frozen", {}) and \
        tuple(method_overrides["neuralgrok-frozen"]["amp_hidden"]) != tuple(
            amp_meta["hidden"]):
      raise ValueError(
          f"amp_hidden {list(method_overrides['neuralgrok-frozen']['amp_hidden'])}"
          f" of neuralgrok-frozen differs from the amplifier file's "
          f"{amp_meta['hidden']} (the file's shape is used)")
    if amplifier_seed == EACH and len(amp_meta["seeds"]) != len(
        _seed_tuple(seeds)):
      raise ValueError(f"amplifier_seed 'each' pairs the run's seeds with the"
                       f" amplifier file's, but {amplifier} holds "
                       f"{len(amp_meta['seeds'])} amplifiers for "
                       f"{len(_seed_tuple(seeds))} seeds")
  configs = {}
  for m in methods:
    over = dict(method_overrides.get(m, {}))
    if m in frozen and amp_meta is not None:
      over.setdefault("amp_hidden", tuple(amp_meta["hidden"]))
    configs[m] = dataclasses.replace(base, method=m, **over)
  hp = {}
  for k, v in (hparams or {}).items():
    arr = np.asarray(v, np.float64)
    if arr.ndim == 0:
      arr = np.full((len(seeds),), float(arr))
    if arr.ndim != 1:
      raise ValueError(f"hyperparameter {k} must be one value or a list, got "
                       f"shape {arr.shape}")
    hp[k] = tuple(float(x) for x in arr)
  if amplifier is not None:
    amplifier = os.path.abspath(amplifier)
  if amp_meta is not None:
    from ngrok_jax.ampfile import check_fits
    check_fits(amplifier, configs["neuralgrok-frozen"])
  spec = RunSpec(configs=configs, seeds=seeds, steps=steps,
                 eval_every=eval_every,
                 checkpoint_every=checkpoint_every or None,
                 keep_checkpoints=keep_checkpoints, hparams=hp,
                 amplifier=amplifier, amplifier_seed=amplifier_seed,
                 stop_after=stop_after or None, stop_acc=stop_acc)
  return spec.validate()


def sweep_seeds(seeds: Union[int, Sequence[int]],
                sweeps: Union[Mapping[str, Sequence[float]],
                              Sequence[Tuple[str, Sequence[float]]]]
                ) -> Tuple[List[int], Dict[str, List[float]]]:
  """Seeds x sweep values: every swept value gets every seed.

  Args:
    seeds: a count ``n`` (seeds 0..n-1) or a list of ``n`` seeds.
    sweeps: ``{name: values}`` or ``[(name, values), ...]``, the same number
      ``k`` of values for every name (swept together).

  Returns:
    ``(seeds, {name: per-seed values})`` with ``n * k`` distinct seeds; value
    ``i`` goes to seeds ``i*n .. i*n+n-1``.  A count gives seeds
    ``0..n*k-1``; a list is repeated, offset by ``(max + 1) * i`` for value
    ``i``.  No sweep: ``seeds`` as a list and ``{}``.
  """
  pairs = list(sweeps.items()) if isinstance(sweeps, Mapping) else list(
      sweeps or ())
  base = list(_seed_tuple(seeds))
  if not pairs:
    return base, {}
  names = [n for n, _ in pairs]
  if len(set(names)) != len(names):
    raise ValueError(f"a sweep names a hyperparameter twice: "
                     f"{', '.join(names)}")
  ks = {len(v) for _, v in pairs}
  if len(ks) != 1 or 0 in ks:
    raise ValueError("every sweep needs the same number of values (>= 1)")
  k, n = ks.pop(), len(base)
  if is_int(seeds):
    out = list(range(n * k))
  else:
    if not base:
      raise ValueError("seeds must be a non-empty list of integers")
    off = max(base) + 1
    out = [s + i * off for i in range(k) for s in base]
  return out, {name: [float(v[i // n]) for i in range(n * k)]
               for name, v in pairs}
