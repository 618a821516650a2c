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

from ngrok_jax._src.cli.flags import (add_config_flags, config_flag, float_arg,
                                      int_arg, seeds_arg, sweep_arg)
from ngrok_jax._src.cli.cli_common import PROG, UsageError, spec_from_args
from ngrok_jax._src.storage.spec import EACH

__all__ = ["main", "build_parser", "config_flag"]

def _amp_seed_arg(s):
  """--amplifier-seed: an index or 'each'."""
  return EACH if s == EACH else int_arg("--amplifier-seed")(s)


class _Parser(argparse.ArgumentParser):
  """argparse with a one-line error message (exit 2, no usage dump)."""

  def error(self, message):  # noqa: D401
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _trackers(s: str) -> List[str]:
  from ngrok_jax._src.running.trackers import TRACKERS
  names = [x.strip() for x in s.split(",") if x.strip()]
  bad = [x for x in names if x not in TRACKERS]
  if bad or not names:
    raise argparse.ArgumentTypeError(
        f"--log takes {' or '.join(TRACKERS)} (comma-separated), got {s!r}")
  return names


def _seed_group(s: str):
  if s in ("auto", "all"):
    return None if s == "all" else s
  n = int_arg("--seed-group")(s)
  if n < 1:
    raise argparse.ArgumentTypeError(
        f"--seed-group must be a positive integer, all or auto, got {s!r}")
  return n


def build_parser() -> argparse.ArgumentParser:
  from ngrok_jax._src.training.presets import PRESETS
  from ngrok_jax._src.training.config import METHODS
  p = _Parser(prog=PROG, description="NeuralGrok in JAX: multi-seed "
              "grokking experiments (train, report, amplifier).")
  sub = p.add_subparsers(dest="command", metavar="COMMAND",
                         parser_class=_Parser)
  sub.required = True

  t = sub.add_parser("train", help="train one task with one or more methods, "
                     "all seeds vmapped, into a run folder",
                     description="Train one task with one or more methods; "
                     "all seeds of a method run as one vmapped program. "
                     "Options not given come from --preset.")
  t.add_argument("--preset", default=None, choices=None, metavar="NAME",
                 help=f"whole configuration: {', '.join(PRESETS)} "
                 "(default: quick)")
  t.add_argument("--methods", default=None, metavar="M1,M2",
                 help=f"comma-separated methods from {', '.join(METHODS)} "
                 "(default: the preset's, quick: neuralgrok,adam)")
  t.add_argument("--seeds", type=seeds_arg, default=None, metavar="N|S1,S2",
                 help="number of seeds (0..N-1) or a list (default: preset, "
                 "quick: 4)")
  t.add_argument("--steps", type=int_arg("--steps"), default=None, metavar="N",
                 help="training steps per method (default: preset)")
  t.add_argument("--eval-every", type=int_arg("--eval-every"), default=None,
                 metavar="N", help="evaluate every N steps; one lax.scan chunk "
                 "(default: preset)")
  t.add_argument("--out", default=None, metavar="DIR",
                 help="run folder (default: runs/PRESET-YYYYmmdd-HHMMSS)")
  t.add_argument("--checkpoint-every", type=int_arg("--checkpoint-every"),
                 default=None, metavar="N",
                 help="checkpoint every N steps, a multiple of --eval-every; "
                 "0: only at the end and on SIGINT/SIGTERM (default: "
                 "preset, quick 0, paper-* 10000)")
  t.add_argument("--keep-checkpoints", type=int_arg("--keep-checkpoints"),
                 default=None, metavar="K",
                 help="keep the newest K checkpoints per method (default 3)")
  t.add_argument("--resume", default=None, metavar="DIR",
                 help="continue the run in DIR from its newest good "
                 "checkpoint; other options must match its config")
  t.add_argument("--force", action="store_true",
                 help="with --resume: accept options that differ from the "
                 "saved config (default: refuse, naming the fields)")
  t.add_argument("--cross-tasks", default=None, metavar="T1,T2,...",
                 help="meta-train ONE NeuralGrok amplifier per seed across "
                 "these tasks at once (a vmapped task axis, the "
                 "meta-gradient averaged over it; ngrok_jax.cross_task) "
                 "instead of training --task: one run folder per task and "
                 "the shared amplifier in --out; --resume DIR continues it "
                 "(default: off)")
  t.add_argument("--amplifier", default=None, metavar="PATH",
                 help="trained amplifier (a NeuralGrok run folder or its "
                 "amplifier.msgpack) for neuralgrok-frozen (default: none)")
  t.add_argument("--amplifier-seed", type=_amp_seed_arg,
                 default=None, metavar="K",
                 help="which seed's amplifier in that file, by index "
                 "(default 0), or 'each': seed i uses the file's i-th "
                 "amplifier")
  t.add_argument("--stop-after", type=int_arg("--stop-after"),
                 default=None, metavar="N",
                 help="stop a method once every seed has held test accuracy "
                 ">= --stop-acc (0.99) for N consecutive evaluations "
                 "(default: preset; 0: never)")
  t.add_argument("--sweep", type=sweep_arg, action="append", default=None,
                 metavar="NAME=V1,V2",
                 help="hyperparameter sweep as per-seed values in one "
                 "vmapped program; each value gets --seeds seeds (repeat for "
                 "several names with the same number of values; default: "
                 "none)")
  t.add_argument("--stop-acc", type=float_arg("--stop-acc"), default=None,
                 metavar="A", help="the test accuracy of --stop-after "
                 "(default 0.99)")
  add_config_flags(t.add_argument_group(
      "configuration: one flag per TrainConfig field (default: the "
      "preset's value)"))
  t.add_argument("--devices", type=int_arg("--devices"), default=None,
                 metavar="N",
                 help="shard the seeds over at most N devices (with several "
                 "processes: of all processes together), the largest count "
                 "dividing the number of seeds (default: all devices; 1: no "
                 "sharding)")
  t.add_argument("--seed-group", type=_seed_group, default="auto",
                 metavar="N|all|auto",
                 help="vmap the seeds in groups of N, one group after "
                 "another (auto: 1 on a CPU, all on accelerators; all: one "
                 "group); same results, a speed choice")
  t.add_argument("--log", type=_trackers, action="append", default=None,
                 metavar="TRACKER",
                 help="also log to an experiment tracker: tensorboard "
                 "(event files in DIR/tensorboard; pip install -e "
                 "'.[tensorboard]') and/or wandb (Weights & Biases; pip "
                 "install -e '.[wandb]'; the API key only from WANDB_API_KEY; "
                 "WANDB_MODE=offline works without a network); "
                 "comma-separated or repeated (default: metrics.jsonl only)")
  t.add_argument("--wandb-project", default=None, metavar="NAME",
                 help="W&B project (default: $WANDB_PROJECT, else ngrok-jax)")
  t.add_argument("--wandb-entity", default=None, metavar="NAME",
                 help="W&B entity, a user or team (default: $WANDB_ENTITY, "
                 "else the key's default entity)")
  d = t.add_argument_group(
      "several processes (one per host of a pod, or several on one machine; "
      "every process runs the same command but its --process-id)")
  d.add_argument("--distributed", action="store_true",
                 help="start as one of several JAX processes "
                 "(jax.distributed.initialize): the coordinator, process "
                 "count and id come from the options below, else from "
                 "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, "
                 "else from the cluster (Slurm, Open MPI, Cloud TPU, "
                 "Kubernetes); implied by the options below")
  d.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="address of process 0's coordinator service, the same "
                 "in every process")
  d.add_argument("--num-processes", type=int_arg("--num-processes"),
                 default=None, metavar="N", help="number of processes")
  d.add_argument("--process-id", type=int_arg("--process-id"), default=None,
                 metavar="I", help="this process's index, 0..N-1 (process 0 "
                 "writes the run folder's files)")
  t.add_argument("--no-progress", action="store_true",
                 help="no progress bar (default: shown)")
  t.add_argument("--no-plots", action="store_true",
                 help="do not write PNG plots (default: written)")

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
  _check_applies(args, spec)
  if args.resume:
    out = args.resume
  else:
    out = args.out or os.path.join(
        "runs", f"{args.preset or 'quick'}-{time.strftime('%Y%m%d-%H%M%S')}")
  check_resume(spec, out, bool(args.resume), args.force)
  runfolder.check_resources(spec)  # before the trackers start
  with runfolder.Guard(out if is_primary() else None):
    return _train(args, spec, out, hooks)


def _check_applies(args, spec) -> None:
  """An option that does not apply to the chosen methods: an error, or a
  one-line warning when it applies to another of them."""
  frozen = "neuralgrok-frozen" in spec.methods
  if not frozen and not args.resume and (
      args.amplifier is not None or args.amplifier_seed is not None):
    raise UsageError("--amplifier and --amplifier-seed apply only to method "
                     "neuralgrok-frozen, which --methods does not name")
  hidden = args.cfg_amp_hidden
  if hidden is not None and frozen and tuple(hidden) != tuple(
      spec.configs["neuralgrok-frozen"].amp_hidden):
    file_h = ",".join(map(str, spec.configs["neuralgrok-frozen"].amp_hidden))
    msg = (f"--amp-hidden does not apply to neuralgrok-frozen (it takes the "
           f"amplifier file's {file_h})")
    if "neuralgrok" not in spec.methods:
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
  parser = build_parser()
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
