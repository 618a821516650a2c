"""What the ``train`` commands of the command line share
(:mod:`ngrok_jax.cli` and :mod:`ngrok_jax.cli_cross`): the program name, the
usage error, and the run spec assembled from the parsed flags."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from ngrok_jax.flags import config_fields
from ngrok_jax.spec import STOP_ACC

__all__ = ["PROG", "UsageError", "explicit_cfg", "methods_arg",
           "spec_from_args"]

PROG = "ngrok-jax"


class UsageError(Exception):
  """Bad input: printed as one line, exit status 2."""


def explicit_cfg(args) -> Dict[str, Any]:
  """The TrainConfig fields given on the command line.

  Args:
    args: the parsed ``train`` flags.

  Returns:
    ``{field name: value}`` of the configuration flags that were set.
  """
  return {f.name: getattr(args, f"cfg_{f.name}") for f, _, _ in
          config_fields() if getattr(args, f"cfg_{f.name}") is not None}


def methods_arg(s: Optional[str]) -> Optional[List[str]]:
  """A comma-separated list (``--methods``, ``--cross-tasks``) split.

  Args:
    s: the flag's value, or None when it was not given.

  Returns:
    The non-empty, stripped items, or None.
  """
  return None if s is None else [m.strip() for m in s.split(",") if m.strip()]


def _pick(v, default):
  return default if v is None else v


def spec_from_args(args):
  """The run spec of a ``train`` command: a preset (``quick`` unless
  ``--preset``) or the saved spec of ``--resume``, with the flags on top.

  Args:
    args: the parsed ``train`` flags.

  Returns:
    A validated :class:`ngrok_jax.spec.RunSpec`.

  Raises:
    UsageError: ``--preset`` combined with ``--resume``.
  """
  from ngrok_jax import presets
  from ngrok_jax.spec import load_spec
  from ngrok_jax.spec_build import make_spec, sweep_seeds
  cfg_over = explicit_cfg(args)
  methods = methods_arg(args.methods)
  if args.resume:
    if args.preset is not None:
      raise UsageError("--preset cannot be combined with --resume (the run "
                       "folder has its configuration)")
    saved = load_spec(args.resume)
    methods = saved.methods if methods is None else methods
    first = next(iter(saved.configs.values()))
    configs = {m: dataclasses.replace(
        saved.configs.get(m, dataclasses.replace(first, method=m)),
        **cfg_over) for m in methods}
    seeds, hp = list(saved.seeds), dict(saved.hparams)
    if args.seeds is not None:
      seeds = args.seeds
    if args.sweep:
      seeds, hp = sweep_seeds(_pick(args.seeds, len(saved.seeds)), args.sweep)
    return make_spec(
        None, methods, seeds, _pick(args.steps, saved.steps),
        _pick(args.eval_every, saved.eval_every),
        method_overrides={m: {k: v for k, v in c.to_dict().items()
                              if k != "method"} for m, c in configs.items()},
        hparams=hp or None,
        checkpoint_every=_pick(args.checkpoint_every, saved.checkpoint_every),
        keep_checkpoints=_pick(args.keep_checkpoints, saved.keep_checkpoints),
        amplifier=_pick(args.amplifier, saved.amplifier),
        amplifier_seed=_pick(args.amplifier_seed, saved.amplifier_seed),
        stop_after=_pick(args.stop_after, saved.stop_after),
        stop_acc=_pick(args.stop_acc, saved.stop_acc))
  preset = presets.merge(presets.get_preset(args.preset or "quick"),
                         cfg_over)
  methods = preset["methods"] if methods is None else methods
  seeds, hp = sweep_seeds(_pick(args.seeds, preset["seeds"]),
                          args.sweep or ())
  return make_spec(
      preset["config"], methods, seeds, _pick(args.steps, preset["steps"]),
      _pick(args.eval_every, preset["eval_every"]),
      method_overrides=presets.method_overrides(preset, methods),
      hparams=hp or None,
      checkpoint_every=_pick(args.checkpoint_every,
                             preset.get("checkpoint_every")),
      keep_checkpoints=_pick(args.keep_checkpoints, 3),
      amplifier=args.amplifier, amplifier_seed=_pick(args.amplifier_seed, 0),
      stop_after=_pick(args.stop_after, preset.get("stop_after")),
      stop_acc=_pick(args.stop_acc, preset.get("stop_acc", STOP_ACC)))
