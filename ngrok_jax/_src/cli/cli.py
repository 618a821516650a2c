"""The ``ngrok-jax`` command line (also ``python -m ngrok_jax``): the parser
and its commands.

Subcommands::

    ngrok-jax train  [--preset quick] [--methods neuralgrok,adam] [--seeds 4] ...
    ngrok-jax train  --resume DIR [--force]
    ngrok-jax train  ... [--log tensorboard,wandb]
    ngrok-jax train  ... --coordinator HOST:PORT --num-processes N --process-id I
    ngrok-jax train  --cross-tasks T1,T2,... [--out DIR]
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
import io
import json
import os
import sys
import time
from typing import Callable, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ngrok_jax._src.core import distributed
from ngrok_jax._src.core.fileio import atomic_write
from ngrok_jax._src.core.tables import md_table
from ngrok_jax._src.optim.amplifier import Amplifier
from ngrok_jax._src.optim.registry import RECORDS
from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.training.cross_task import METHOD as CROSS_METHOD
from ngrok_jax._src.training.cross_task import task_folder
from ngrok_jax._src.training.presets import PRESETS, get_preset
from ngrok_jax._src.storage import runfolder
from ngrok_jax._src.storage.ampfile import (check_fits, load_amplifier,
                                            save_amplifier)
from ngrok_jax._src.storage.checkpoint import CheckpointError
from ngrok_jax._src.storage.run_noise import EXIT_DISK_FULL, is_disk_full
from ngrok_jax._src.storage.spec import check_resume, load_spec
from ngrok_jax._src.analysis.report import markdown_table, report
from ngrok_jax._src.analysis.results import summary_line
from ngrok_jax._src.running import runner, trackers
from ngrok_jax._src.cli.flags import UsageError, config_flag, int_arg
from ngrok_jax._src.cli.train_args import (add_train_parser, check_applies,
                                           explicit_cfg, method_lines,
                                           methods_arg, preset_of_argv,
                                           spec_from_args)

__all__ = ["main", "build_parser", "config_flag"]

PROG = "ngrok-jax"


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
  distributed.initialize(args.coordinator, args.num_processes,
                         args.process_id)


def _tracker_hooks(args, spec, out: str) -> List[Callable]:
  """The ``--log`` trackers (process 0 only); a missing optional package
  is a :class:`UsageError` naming the extra to install."""
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
  if args.cross_tasks is not None or _is_cross_task_folder(args.resume):
    return _cmd_cross_task(args)
  _start_processes(args)
  if args.preset is not None:
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
  with runfolder.Guard(out if distributed.is_primary() else None):
    return _train(args, spec, out, hooks)


def _check_frozen(args, spec) -> None:
  """An amplifier option that does not apply to neuralgrok-frozen: an
  error, or a one-line warning when it applies to another chosen method."""
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
  hooks = [*hooks, *_tracker_hooks(args, spec, out)]
  primary = distributed.is_primary()
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


# ----------------------------------------------------- train --cross-tasks
def _check_cross_args(args) -> None:
  if args.distributed or args.num_processes or args.coordinator or (
      args.log or args.devices not in (None, 1)):
    raise UsageError("--cross-tasks runs in one process on one device, "
                     "without trackers")
  if args.out is not None and not args.out.strip():
    raise UsageError("--out must name a folder, got an empty string")
  if args.amplifier is not None or args.amplifier_seed is not None:
    raise UsageError("--amplifier and --amplifier-seed apply only to method "
                     "neuralgrok-frozen, not to --cross-tasks")
  if args.cross_tasks is not None and not methods_arg(args.cross_tasks):
    raise UsageError(f"--cross-tasks takes comma-separated task names, got "
                     f"{args.cross_tasks!r}")
  if args.resume:
    if args.preset is not None or explicit_cfg(args) or args.cross_tasks \
        or args.seeds is not None or args.steps is not None:
      raise UsageError("--resume of a cross-task run takes its saved "
                       "configuration: no other configuration options")
  elif methods_arg(args.methods) not in (None, [CROSS_METHOD]):
    raise UsageError("--cross-tasks meta-trains method neuralgrok only")


def _cmd_cross_task(args) -> int:
  """train --cross-tasks / --resume of a cross-task folder.

  Args:
    args: the parsed ``train`` flags.

  Returns:
    The exit status.
  """
  _check_cross_args(args)
  if args.resume:
    out, spec = args.resume, load_spec(args.resume)
  else:
    args.methods = CROSS_METHOD
    spec = spec_from_args(args)
    out = args.out or os.path.join(
        "runs", f"cross-{time.strftime('%Y%m%d-%H%M%S')}")
  cfg = spec.configs[CROSS_METHOD]
  print(f"{PROG}: one amplifier across {', '.join(spec.tasks)} mod "
        f"{cfg.p}, {len(spec.seeds)} seeds, {spec.steps} steps -> {out}",
        file=sys.stderr, flush=True)
  try:
    summaries = runner.execute(
        spec, out, resume=bool(args.resume), force=args.force,
        progress=not args.no_progress, plots=not args.no_plots,
        report=lambda m: print(f"{PROG}: {m}", file=sys.stderr))
  except runner.RunInterrupted as e:
    print(f"{PROG}: {e}", file=sys.stderr, flush=True)
    return 128 + int(e.signum)
  if args.no_progress:
    for t, s in summaries.items():
      print(f"{t}: " + summary_line(CROSS_METHOD,
                                   s["methods"][CROSS_METHOD]).strip(),
            file=sys.stderr)
  print(markdown_table([os.path.join(out, task_folder(t))
                        for t in summaries]), flush=True)
  print(f"{PROG}: cross-task run {out} (amplifier: "
        f"{os.path.join(out, 'amplifier.msgpack')})", file=sys.stderr)
  return 0


def _is_cross_task_folder(path) -> bool:
  """Whether ``path`` is a cross-task run folder (a spec with tasks, or
  the first format's cross_task.json).

  Args:
    path: a folder or None.

  Returns:
    True for a run folder with tasks.
  """
  if not path or not os.path.isdir(path):
    return False
  if os.path.isfile(os.path.join(path, "cross_task.json")):
    return True
  try:
    return bool(load_spec(path).tasks)
  except ValueError:
    return False


# ------------------------------------------------------ report, presets
def _cmd_report(args) -> int:
  table = report(args.dirs, plots=not args.no_plots,
                 compare_png=args.compare)
  print(table)
  if args.out:
    atomic_write(args.out, table + "\n")
  return 0


def _cmd_amplifier(args) -> int:
  """ngrok-jax amplifier PATH: describe, tabulate, export or plot."""
  params, meta = load_amplifier(args.path, args.seed_index)
  if meta.get("amp_inputs", "grad") == "grad":  # weights fit the metadata
    check_fits(args.path, TrainConfig(amp_hidden=tuple(meta["hidden"])))
  rich = meta.get("amp_inputs", "grad") == "rich"
  if rich and args.plot:
    raise UsageError("--plot draws the 1-input score function f(g); this "
                     "amplifier has rich inputs (amp_inputs=rich)")
  n = sum(int(np.size(l)) for l in jax.tree.leaves(params))
  lo, hi = meta["grad_range"]
  print(f"amplifier {'4' if rich else '1'}-"
        f"{'-'.join(map(str, meta['hidden']))}-1"
        f"{' with a per-tensor embedding' if rich else ''} ({n} params), "
        f"trained on {meta['task']} mod {meta['p']} for {meta['step']} steps, "
        f"seed {meta['seeds'][args.seed_index]} "
        f"(index {args.seed_index} of {len(meta['seeds'])})")
  print(f"gradient components seen: [{lo:.3g}, {hi:.3g}]; steps to 95%: "
        f"{meta.get('steps_to_95')}")
  if not rich:  # rich inputs: no 1-D score function to tabulate
    amp = Amplifier(tuple(meta["hidden"]), meta.get("amp_method", "pwl"))
    span = max(abs(lo), abs(hi))
    xs = np.linspace(-span, span, 9).astype(np.float32)
    ys = np.asarray(amp.apply(params, jnp.asarray(xs)))
    print(md_table(["g", "score f(g)"],
                   [(f"{x:.3g}", f"{y:.4g}") for x, y in zip(xs, ys)]))
  if args.export:
    ext = os.path.splitext(args.export)[1]
    flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
            jax.tree_util.tree_flatten_with_path(params)[0]}
    if ext == ".npz":
      buf = io.BytesIO()
      np.savez(buf, **flat, meta=json.dumps(
          {k: v for k, v in meta.items() if k != "example"}))
      atomic_write(args.export, buf.getvalue())
    elif ext == ".msgpack":
      one = jax.tree.map(lambda a: np.asarray(a)[None], params)
      c = meta.get("c")
      m2 = dict(meta, seeds=[meta["seeds"][args.seed_index]],
                c=[c[args.seed_index]] if c else None)
      save_amplifier(args.export, one, m2)
    else:
      raise UsageError(f"--export must end in .npz or .msgpack, got "
                       f"{args.export!r}")
    print(f"exported to {args.export}")
  if args.plot:  # matplotlib is imported only when a plot is asked for
    from ngrok_jax._src.analysis.plots import plot_amplifier
    plot_amplifier(args.path, args.plot)
    print(f"plot written to {args.plot}")
  return 0


def _cmd_presets(args) -> int:
  for name, p in PRESETS.items():
    print(f"{name:12s} {p['description']}; methods {','.join(p['methods'])},"
          f" {p['seeds']} seeds, {p['steps']} steps, eval every "
          f"{p['eval_every']}; source: {p['source']}")
  return 0


# -------------------------------------------------------------------- main
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
    return {"report": _cmd_report, "amplifier": _cmd_amplifier,
            "presets": _cmd_presets}[args.command](args)
  except Exception as e:  # noqa: BLE001 - a full disk, whatever raised it
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
    if isinstance(e, CheckpointError):
      print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
      return 1
    raise


if __name__ == "__main__":
  sys.exit(main())
