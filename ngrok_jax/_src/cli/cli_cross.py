"""``ngrok-jax train --cross-tasks T1,T2,...`` and ``--resume`` of such a
folder: one NeuralGrok amplifier meta-trained across tasks (a run spec with
``tasks``, trained by the runner; :mod:`ngrok_jax.cross_task`), with the
``train`` command's configuration flags.  Called by :mod:`ngrok_jax.cli`."""
from __future__ import annotations

import os
import sys
import time

from ngrok_jax._src.cli.cli_common import (PROG, UsageError, explicit_cfg,
                                           methods_arg, spec_from_args)
from ngrok_jax._src.training.cross_task import METHOD as CROSS_METHOD

__all__ = ["cmd_cross_task", "is_cross_task_folder"]


def _check_args(args) -> None:
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


def cmd_cross_task(args) -> int:
  """train --cross-tasks / --resume of a cross-task folder.

  Args:
    args: the parsed ``train`` flags.

  Returns:
    The exit status.
  """
  from ngrok_jax._src.running import runner
  from ngrok_jax._src.training.cross_task import task_folder
  from ngrok_jax._src.analysis.report import markdown_table
  from ngrok_jax._src.analysis.results import summary_line
  from ngrok_jax._src.storage.spec import load_spec
  _check_args(args)
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


def is_cross_task_folder(path) -> bool:
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
  from ngrok_jax._src.storage.spec import load_spec
  try:
    return bool(load_spec(path).tasks)
  except ValueError:
    return False
