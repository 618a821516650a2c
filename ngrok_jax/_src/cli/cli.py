"""The ``ngrok-jax`` command line (also ``python -m ngrok_jax``).

Subcommands::

    ngrok-jax train  [--preset quick] [--methods neuralgrok,adam] [--seeds 4] ...
    ngrok-jax train  --resume DIR [--force]
    ngrok-jax train  ... [--log tensorboard,wandb]
    ngrok-jax train  ... --coordinator HOST:PORT --num-processes N --process-id I
    ngrok-jax report DIR [DIR ...] [--compare PNG] [--no-plots]
    ngrok-jax amplifier PATH [--seed-index K] [--export OUT] [--plot PNG]
    ngrok-jax presets

Exit status: 0 done; 2 bad options or values (one line on stderr, no
traceback); 1 no usable checkpoint; 3 the disk is full (one line); 128 + the
signal number for an interrupted run (SIGINT/SIGTERM: a checkpoint is saved
first).  A failed start leaves the run folder as it was; the log noise of
orbax and asyncio goes to the run folder's ``errors.log``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, List, Optional, Sequence

from ngrok_jax._src.cli.flags import config_flag, int_arg
from ngrok_jax._src.cli.cli_common import PROG, UsageError, spec_from_args
from ngrok_jax._src.cli.train_args import (add_train_parser, check_applies,
                                           method_lines, preset_of_argv)

__all__ = ["main", "build_parser", "config_flag"]

class _Parser(argparse.ArgumentParser):
  """argparse with a one-line error message (exit 2, no usage dump)."""

  def error(self, message):  # noqa: D401
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(preset: str = "quick") -> argparse.ArgumentParser:
  """The whole command line; ``train --help`` shows preset ``preset``'s
  values."""
  # the package this module belongs to is imported before it: its version,
  # read without importing the public facade into a layer
  version = sys.modules["ngrok_jax"].__version__
  p = _Parser(prog=PROG, description="NeuralGrok in JAX: multi-seed "
              "grokking experiments (train, report, amplifier).")
  p.add_argument("--version", action="version",
                 version=f"%(prog)s {version}")
  sub = p.add_subparsers(dest="command", metavar="COMMAND",
                         parser_class=_Parser)
  sub.required = True

  add_train_parser(sub, preset)

  r = sub.add_parser("report", help="markdown table and plots of finished "
                     "run folders")
  r.add_argument("dirs", nargs="+", metavar="DIR", help="run folders")
  r.add_argument("--no-plots", action="store_true",
                 help="only print the table (default: also (re)write plots)")
  r.add_argument("--compare", default=None, metavar="PNG",
                 help="also write a plot of the median test accuracy of "
                 "every run and method (default: none)")
  r.add_argument("--out", default=None, metavar="FILE",
                 help="also write the table to FILE (default: stdout only)")

  a = sub.add_parser("amplifier", help="show or export a trained amplifier")
  a.add_argument("path", metavar="PATH",
                 help="a NeuralGrok run folder or its amplifier.msgpack")
  a.add_argument("--seed-index", type=int_arg("--seed-index"), default=0,
                 help="which seed's amplifier, by index (default 0)")
  a.add_argument("--export", default=None, metavar="OUT",
                 help="write that seed's parameters to OUT (.npz or "
                 ".msgpack; default: none)")
  a.add_argument("--plot", default=None, metavar="PNG",
                 help="plot the score function and reweighting "
                 "(default: none)")

  sub.add_parser("presets", help="list the presets")
  return p


# ------------------------------------------------------------------- train
def _start_processes(args) -> None:
  """``jax.distributed.initialize`` when asked (before any computation)."""
  if not (args.distributed or args.coordinator is not None or
          args.num_processes is not None or args.process_id is not None):
    return
  from ngrok_jax._src.core.distributed import initialize
  initialize(args.coordinator, args.num_processes, args.process_id)


def _tracker_hooks(args, spec, out: str) -> List[Callable]:
  """The ``--log`` trackers (process 0 only); a missing optional package
  is a :class:`UsageError` naming the extra to install."""
  from ngrok_jax._src.core import distributed
  from ngrok_jax._src.running import trackers
  names = [n for group in (args.log or ()) for n in group]
  if not names or not distributed.is_primary():
    return []
  try:
    return trackers.make_trackers(
        dict.fromkeys(names), out, spec, wandb_project=args.wandb_project,
        wandb_entity=args.wandb_entity)
  except trackers.TrackerUnavailable as e:
    raise UsageError(str(e)) from None


def _cmd_train(args, hooks=()) -> int:
  from ngrok_jax._src.cli import cli_cross
  if args.cross_tasks is not None or cli_cross.is_cross_task_folder(
      args.resume):
    return cli_cross.cmd_cross_task(args)
  _start_processes(args)
  from ngrok_jax._src.storage import runfolder
  from ngrok_jax._src.running import runner
  from ngrok_jax._src.core.distributed import is_primary
  from ngrok_jax._src.storage.spec import check_resume
  if args.preset is not None:
    from ngrok_jax._src.training.presets import get_preset
    get_preset(args.preset)  # validates the name first
  if args.resume and args.out and os.path.abspath(args.out) != \
      os.path.abspath(args.resume):
    raise UsageError("--out and --resume name different folders")
  runner.check_devices(args.devices)
  if args.out is not None and not args.out.strip():
    raise UsageError("--out must name a folder, got an empty string")
  spec = spec_from_args(args)
  check_applies(args, spec)
  _check_frozen(args, spec)
  if args.resume:
    out = args.resume
  else:
    out = args.out or os.path.join(
        "runs", f"{args.preset or 'quick'}-{time.strftime('%Y%m%d-%H%M%S')}")
  check_resume(spec, out, bool(args.resume), args.force)
  runfolder.check_resources(spec)  # before the trackers start
  with runfolder.Guard(out if is_primary() else None):
    return _train(args, spec, out, hooks)


def _check_frozen(args, spec) -> None:
  """An amplifier option that does not apply to neuralgrok-frozen: an
  error, or a one-line warning when it applies to another chosen method."""
  from ngrok_jax._src.optim.registry import RECORDS
  frozen = [m for m in spec.methods
            if spec.configs[m].record.needs_trained_amplifier]
  if not frozen and not args.resume and (
      args.amplifier is not None or args.amplifier_seed is not None):
    needs = [r.name for r in RECORDS if r.needs_trained_amplifier]
    raise UsageError(f"--amplifier and --amplifier-seed apply only to method "
                     f"{', '.join(needs)}, which --methods does not name")
  hidden = args.cfg_amp_hidden
  for m in frozen:
    if hidden is None or tuple(hidden) == tuple(spec.configs[m].amp_hidden):
      continue
    file_h = ",".join(map(str, spec.configs[m].amp_hidden))
    msg = (f"--amp-hidden does not apply to {m} (it takes the "
           f"amplifier file's {file_h})")
    if not any(spec.configs[o].record.uses_amplifier and o not in frozen
               for o in spec.methods):
      raise UsageError(msg)
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def _train(args, spec, out, hooks) -> int:
  """:func:`_cmd_train` once the options and the folder are checked."""
  from ngrok_jax._src.running import runner
  from ngrok_jax._src.core.distributed import is_primary
  from ngrok_jax._src.analysis.report import markdown_table
  from ngrok_jax._src.analysis.results import summary_line
  hooks = [*hooks, *_tracker_hooks(args, spec, out)]
  primary = is_primary()
  cfg = next(iter(spec.configs.values()))
  if primary:
    print(f"{PROG}: {', '.join(spec.methods)} on {cfg.task} mod {cfg.p}, "
          f"{len(spec.seeds)} seeds, {spec.steps} steps -> {out}",
          file=sys.stderr, flush=True)
  try:
    summary = runner.execute(spec, out, resume=bool(args.resume),
                             force=args.force, progress=not args.no_progress,
                             plots=not args.no_plots, report=None,
                             devices=args.devices, hooks=hooks,
                             seed_group=args.seed_group)
  except runner.RunInterrupted as e:
    print(f"{PROG}: {e}", file=sys.stderr, flush=True)
    return 128 + int(e.signum)
  if not primary:  # process 0 prints the results
    return 0
  if args.no_progress:
    for m, per in summary["methods"].items():
      print(summary_line(m, per), file=sys.stderr)
  print(markdown_table([out]), flush=True)
  print("\n".join(["", *method_lines(spec)]), flush=True)
  print(f"{PROG}: run folder {out}"
        + ("" if args.no_plots else f" (plots in {os.path.join(out, 'plots')})"),
        file=sys.stderr)
  return 0


def _cmd_report(args) -> int:
  from ngrok_jax._src.analysis.report import report
  table = report(args.dirs, plots=not args.no_plots,
                 compare_png=args.compare)
  print(table)
  if args.out:
    from ngrok_jax._src.core.fileio import atomic_write
    atomic_write(args.out, table + "\n")
  return 0


def _cmd_presets(args) -> int:
  from ngrok_jax._src.training.presets import PRESETS
  for name, p in PRESETS.items():
    print(f"{name:12s} {p['description']}; methods {','.join(p['methods'])},"
          f" {p['seeds']} seeds, {p['steps']} steps, eval every "
          f"{p['eval_every']}; source: {p['source']}")
  return 0


def main(argv: Optional[Sequence[str]] = None, *,
         hooks: Sequence[Callable] = ()) -> int:
  """Runs one command; returns the exit status.  ``hooks`` (Python callers
  only): extra per-chunk hooks of ``train`` (see
  :func:`ngrok_jax.runner.run`)."""
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = build_parser(preset_of_argv(argv))
  args = parser.parse_args(argv)
  try:
    if args.command == "train":
      return _cmd_train(args, hooks)
    if args.command == "amplifier":
      from ngrok_jax._src.cli.cli_amp import cmd_amplifier
      return cmd_amplifier(args)
    return {"report": _cmd_report, "presets": _cmd_presets}[args.command](
        args)
  except Exception as e:  # noqa: BLE001 - a full disk, whatever raised it
    from ngrok_jax._src.storage.run_noise import EXIT_DISK_FULL, is_disk_full
    if not is_disk_full(e):
      return _failure(args, e)
    where = getattr(e, "filename", None) or (args.resume or args.out or "")
    print(f"{PROG} {args.command}: error: disk full (no space left on "
          f"device){' writing ' + str(where) if where else ''}; free space, "
          "then run again (a run folder with a checkpoint continues with "
          "--resume)", file=sys.stderr)
    return EXIT_DISK_FULL
  except KeyboardInterrupt:
    print(f"{PROG}: interrupted", file=sys.stderr)
    return 130


def _failure(args, e: Exception) -> int:
  """The exit status and one line of a failed command (re-raises what is
  not a user's or a checkpoint's error)."""
  try:
    raise e
  except (UsageError, ValueError) as e:
    msg = " ".join(str(e).split())
    print(f"{PROG} {args.command}: error: {msg}", file=sys.stderr)
    return 2
  except FileNotFoundError as e:
    print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
    return 2
  except Exception as e:  # noqa: BLE001 - CheckpointError and friends
    from ngrok_jax._src.storage.checkpoint import CheckpointError
    if isinstance(e, CheckpointError):
      print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
      return 1
    raise


if __name__ == "__main__":
  sys.exit(main())
