"""What the ``train`` commands of the command line share
(:mod:`ngrok_jax.cli` and :mod:`ngrok_jax._src.cli.cli_cross`): the program name, the
usage error, and the run spec assembled from the parsed flags."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ngrok_jax._src.cli.flags import config_fields

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


def spec_from_args(args):
  """The run spec of a ``train`` command: a preset (``quick`` unless
  ``--preset``) or the saved spec of ``--resume``, with the flags on top
  (one :func:`ngrok_jax.spec.make_spec` call).

  Args:
    args: the parsed ``train`` flags.

  Returns:
    A validated :class:`ngrok_jax.spec.RunSpec`.

  Raises:
    UsageError: ``--preset`` combined with ``--resume``.
  """
  from ngrok_jax._src.storage.spec import load_spec
  from ngrok_jax._src.storage.spec_build import make_spec
  base = None
  if args.resume:
    if args.preset is not None:
      raise UsageError("--preset cannot be combined with --resume (the run "
                       "folder has its configuration)")
    base = load_spec(args.resume)
  return make_spec(
      explicit_cfg(args), methods_arg(args.methods), args.seeds, args.steps,
      args.eval_every, preset=None if base else (args.preset or "quick"),
      base=base, sweep=args.sweep or None,
      checkpoint_every=args.checkpoint_every,
      keep_checkpoints=args.keep_checkpoints, amplifier=args.amplifier,
      amplifier_seed=args.amplifier_seed, stop_after=args.stop_after,
      stop_acc=args.stop_acc,
      tasks=methods_arg(getattr(args, "cross_tasks", None)))
