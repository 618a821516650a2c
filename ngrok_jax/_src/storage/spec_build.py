"""Building a :class:`ngrok_jax.spec.RunSpec`: :func:`make_spec`, the one
configuration function (a preset or a saved spec as the starting point, a
config, methods, seeds, per-method overrides, per-seed hyperparameters or a
sweep, a frozen amplifier, a task axis; validated), and :func:`sweep_seeds`
(seeds x sweep values).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ngrok_jax._src.training.config import METHODS, TrainConfig
from ngrok_jax._src.core.fileio import is_int
from ngrok_jax._src.optim.registry import (DEFAULT_METHOD, DEFAULT_METHODS,
                                           get_method)
from ngrok_jax._src.optim.user_method import resolve_method
from ngrok_jax._src.storage.spec import EACH, STOP_ACC, RunSpec

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


#: make_spec's defaults: seeds, steps and eval_every here, the others the
#: :class:`RunSpec` fields' own.
_DEFAULTS = dict(seeds=4, steps=1000, eval_every=100, **{
    f.name: f.default for f in dataclasses.fields(RunSpec)
    if f.name in ("checkpoint_every", "keep_checkpoints", "amplifier_seed",
                  "stop_after", "stop_acc")})


def _starting_point(config, preset, base) -> Dict[str, Any]:
  """The values that arguments left as None take: a saved spec's (``base``),
  a preset's with the ``config`` fields merged in, or the defaults."""
  if base is not None:
    if preset is not None:
      raise ValueError("preset and base cannot be combined (a saved run has "
                       "its configuration)")
    fields = dict(config or {})
    first = next(iter(base.configs.values()))
    per = {m: {k: v for k, v in dataclasses.replace(c, **fields).to_dict(
        ).items() if k != "method"} for m, c in base.configs.items()}
    return dict(
        methods=base.methods, seeds=list(base.seeds), steps=base.steps,
        eval_every=base.eval_every, checkpoint_every=base.checkpoint_every,
        keep_checkpoints=base.keep_checkpoints, amplifier=base.amplifier,
        amplifier_seed=base.amplifier_seed, stop_after=base.stop_after,
        stop_acc=base.stop_acc, tasks=base.tasks, hparams=base.hparams,
        config=dataclasses.replace(first, **fields), method_config=per)
  if preset is not None:
    from ngrok_jax._src.training import presets
    pre = presets.merge(presets.get_preset(preset) if isinstance(preset, str)
                        else preset, dict(config or {}))
    return dict(_DEFAULTS, methods=pre["methods"], seeds=pre["seeds"],
                steps=pre["steps"], eval_every=pre["eval_every"],
                checkpoint_every=pre.get("checkpoint_every"),
                stop_after=pre.get("stop_after"),
                stop_acc=pre.get("stop_acc", STOP_ACC),
                config=_base_config(pre["config"]),
                method_config=pre.get("method_config", {}))
  return dict(_DEFAULTS, config=_base_config(config), method_config={})


def _per_seed(hparams, n: int) -> Dict[str, Tuple[float, ...]]:
  """Per-seed hyperparameters: one value broadcast to every seed."""
  hp = {}
  for k, v in (hparams or {}).items():
    arr = np.asarray(v, np.float64)
    if arr.ndim == 0:
      arr = np.full((n,), float(arr))
    if arr.ndim != 1:
      raise ValueError(f"hyperparameter {k} must be one value or a list, got "
                       f"shape {arr.shape}")
    hp[k] = tuple(float(x) for x in arr)
  return hp


def make_spec(config: Union[TrainConfig, Mapping[str, Any], None] = None,
              methods: Union[str, Sequence[str], None] = None,
              seeds: Union[int, Sequence[int], None] = None,
              steps: Optional[int] = None, eval_every: Optional[int] = None,
              *, preset: Union[str, Mapping[str, Any], None] = None,
              base: Optional[RunSpec] = None,
              method_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
              hparams: Optional[Mapping[str, Any]] = None,
              sweep=None, checkpoint_every: Optional[int] = None,
              keep_checkpoints: Optional[int] = None,
              amplifier: Optional[str] = None,
              amplifier_seed: Union[int, str, None] = None,
              stop_after: Optional[int] = None,
              stop_acc: Optional[float] = None,
              tasks: Optional[Sequence[str]] = None) -> RunSpec:
  """Builds and validates a :class:`RunSpec`: the one place where a run's
  configuration is assembled (:func:`ngrok_jax.runner.run`, the command
  line, the experiment scripts).  An argument left as None takes the value
  of ``base`` (a saved run), else of ``preset``, else the default (seeds 4,
  steps 1000, eval_every 100, keep_checkpoints 3, amplifier_seed 0).

  Args:
    config: the base :class:`ngrok_jax.TrainConfig`, its dict, or None;
      with ``preset`` or ``base``, the fields set over theirs (and over
      every per-method setting).
    methods: method names (a list or a comma-separated string), a user's
      method as ``module:factory`` (imported and registered,
      :func:`ngrok_jax.register_method`); None: ``neuralgrok, adam`` (with
      ``tasks``: ``neuralgrok``).
    seeds: the number of seeds (0..n-1) or the seeds.
    steps: training steps per method.
    eval_every: steps between evaluations.
    preset: a preset name (:mod:`ngrok_jax.presets`) or preset dict.
    base: a saved :class:`RunSpec` (a resume with options on top).
    method_overrides: per-method config fields (over the preset's).
    hparams: swept per-seed hyperparameter values (one value: every seed).
    sweep: ``{name: values}``: every value gets every seed
      (:func:`sweep_seeds`); not with ``hparams``.
    checkpoint_every: steps between checkpoints (None/0: only at the end).
    keep_checkpoints: how many checkpoints to keep.
    amplifier: a saved amplifier file or run folder.
    amplifier_seed: the index of the seed whose amplifier is used, or
      ``"each"``.
    stop_after: evaluations every seed must hold ``stop_acc`` to stop.
    stop_acc: the accuracy of ``stop_after``.
    tasks: a task axis (>= 2 tasks; the config's task becomes the first),
      or None.

  Returns:
    A validated :class:`RunSpec`.
  """
  d = _starting_point(config, preset, base)

  def pick(v, name):
    return d.get(name) if v is None else v
  tasks = tuple(pick(tasks, "tasks") or ())
  if methods is None:
    methods = d.get("methods") or ([DEFAULT_METHOD] if tasks else
                                   list(DEFAULT_METHODS))
  if isinstance(methods, str):
    methods = [m.strip() for m in methods.split(",") if m.strip()]
  methods = [resolve_method(m) for m in methods]
  method_overrides = {resolve_method(m): v for m, v in
                      (method_overrides or {}).items()}
  if len(set(methods)) != len(methods):
    raise ValueError(f"methods must be distinct (a method is listed twice), "
                     f"got {methods}")
  for m in list(methods) + list(method_overrides or {}):
    if m not in METHODS:
      raise ValueError(f"unknown method {m!r}; valid methods: "
                       f"{', '.join(METHODS)}")
  if sweep and hparams:
    raise ValueError("give per-seed hparams or a sweep, not both")
  if sweep:  # a saved run's seeds count as a number of seeds
    seeds, hp = sweep_seeds(
        pick(seeds, "seeds") if base is None else
        (len(base.seeds) if seeds is None else seeds), sweep)
  else:
    seeds = pick(seeds, "seeds")
    hp = hparams if hparams is not None else d.get("hparams")
  seeds = _seed_tuple(seeds)
  hp = _per_seed(hp, len(seeds))
  amplifier = pick(amplifier, "amplifier")
  amplifier_seed = pick(amplifier_seed, "amplifier_seed")
  base_cfg = d["config"]
  if tasks:
    from ngrok_jax._src.training.cross_task import configs as task_configs
    base_cfg = dataclasses.replace(base_cfg, task=tasks[0],
                                   meta_axis_name=None)
  over_all = {m: dict(d["method_config"].get(m, {})) for m in methods}
  for m, over in (method_overrides or {}).items():
    over_all.setdefault(m, {}).update(over)
  amp_meta = None
  frozen = {m for m in methods if get_method(m).needs_trained_amplifier}
  if amplifier is not None and frozen:
    from ngrok_jax._src.storage.ampfile import load_amplifier
    amp_meta = load_amplifier(
        amplifier, 0 if amplifier_seed == EACH else amplifier_seed)[1]
    for m in sorted(frozen):
      given = dict(method_overrides or {}).get(m, {})
      if "amp_hidden" in given and tuple(given["amp_hidden"]) != tuple(
          amp_meta["hidden"]):
        raise ValueError(
            f"amp_hidden {list(given['amp_hidden'])} of {m} differs from "
            f"the amplifier file's {amp_meta['hidden']} (the file's shape "
            "is used)")
    if amplifier_seed == EACH and len(amp_meta["seeds"]) != len(seeds):
      raise ValueError(f"amplifier_seed 'each' pairs the run's seeds with the"
                       f" amplifier file's, but {amplifier} holds "
                       f"{len(amp_meta['seeds'])} amplifiers for "
                       f"{len(seeds)} seeds")
  configs = {}
  for m in methods:
    over = over_all.get(m, {})
    if m in frozen and amp_meta is not None:
      over.setdefault("amp_hidden", tuple(amp_meta["hidden"]))
    configs[m] = dataclasses.replace(base_cfg, method=m, **over).resolve()
  if amplifier is not None:
    amplifier = os.path.abspath(amplifier)
  if amp_meta is not None:
    from ngrok_jax._src.storage.ampfile import check_fits
    for m in sorted(frozen):
      check_fits(amplifier, configs[m])
  spec = RunSpec(configs=configs, seeds=seeds, steps=pick(steps, "steps"),
                 eval_every=pick(eval_every, "eval_every"),
                 checkpoint_every=pick(checkpoint_every,
                                       "checkpoint_every") or None,
                 keep_checkpoints=pick(keep_checkpoints, "keep_checkpoints"),
                 hparams=hp, amplifier=amplifier,
                 amplifier_seed=amplifier_seed,
                 stop_after=pick(stop_after, "stop_after") or None,
                 stop_acc=pick(stop_acc, "stop_acc"), tasks=tasks,
                 method_sources={m: dict(get_method(m).origin) for m in methods
                                 if get_method(m).origin}).validate()
  if tasks:  # the tasks share the transformer's shapes
    task_configs(spec.configs[methods[0]], tasks)
  return spec


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
