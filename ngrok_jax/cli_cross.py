"""``ngrok-jax train --cross-tasks T1,T2,...`` and ``--resume`` of such a
folder: one NeuralGrok amplifier meta-trained across tasks
(:mod:`ngrok_jax.cross_task`), with the ``train`` command's configuration
flags.  Called by :mod:`ngrok_jax.cli`."""
from __future__ import annotations

import os
import sys
import time

from ngrok_jax.cli_common import (PROG, UsageError, explicit_cfg,
                                  methods_arg, spec_from_args)

__all__ = ["cmd_cross_task", "is_cross_task_folder"]


def cmd_cross_task(args) -> int:
  """train --cross-tasks / --resume of a cross-task folder."""
  from ngrok_jax import cross_task
  from ngrok_jax.hooks import RunInterrupted
  from ngrok_jax.report import markdown_table
  from ngrok_jax.results import summary_line
  if args.distributed or args.num_processes or args.coordinator or (
      args.log or args.devices not in (None, 1)):
    raise UsageError("--cross-tasks runs in one process on one device, "
                     "without trackers")
  if args.out is not None and not args.out.strip():
    raise UsageError("--out must name a folder, got an empty string")
  if args.amplifier is not None or args.amplifier_seed is not None:
    raise UsageError("--amplifier and --amplifier-seed apply only to method "
                     "neuralgrok-frozen, not to --cross-tasks")
  if args.resume:
    if args.preset is not None or explicit_cfg(args) or args.cross_tasks \
        or args.seeds is not None or args.steps is not None:
      raise UsageError("--resume of a cross-task run takes its saved "
                       "configuration: no other configuration options")
    kw, out = cross_task.load_header(args.resume), args.resume
  else:
    methods = methods_arg(args.methods)
    if methods not in (None, [cross_task.METHOD]):
      raise UsageError("--cross-tasks meta-trains method neuralgrok only")
    args.methods = cross_task.METHOD
    spec = spec_from_args(args)
    out = args.out or os.path.join(
        "runs", f"cross-{time.strftime('%Y%m%d-%H%M%S')}")
    kw = dict(config=spec.configs[cross_task.METHOD],
              tasks=methods_arg(args.cross_tasks), seeds=list(spec.seeds),
              steps=spec.steps, eval_every=spec.eval_every,
              hparams=spec.hparams or None,
              checkpoint_every=spec.checkpoint_every)
  cfg = kw["config"]
  print(f"{PROG}: one amplifier across {', '.join(kw['tasks'])} mod "
        f"{cfg.p}, {len(kw['seeds'])} seeds, {kw['steps']} steps -> {out}",
        file=sys.stderr, flush=True)
  try:
    summaries = cross_task.run(out_dir=out, resume=bool(args.resume),
                               progress=not args.no_progress,
                               plots=not args.no_plots,
                               report=lambda m: print(f"{PROG}: {m}",
                                                      file=sys.stderr),
                               **kw)
  except RunInterrupted as e:
    print(f"{PROG}: {e}", file=sys.stderr, flush=True)
    return 128 + int(e.signum)
  folders = [os.path.join(out, cross_task.task_folder(t)) for t in summaries]
  if args.no_progress:
    for t, s in summaries.items():
      print(f"{t}: " + summary_line(cross_task.METHOD,
                                   s["methods"][cross_task.METHOD]).strip(),
            file=sys.stderr)
  print(markdown_table(folders), flush=True)
  print(f"{PROG}: cross-task run {out} (amplifier: "
        f"{os.path.join(out, 'amplifier.msgpack')})", file=sys.stderr)
  return 0


def is_cross_task_folder(path) -> bool:
  """Whether ``path`` is a cross-task run folder (has cross_task.json)."""
  return bool(path) and os.path.isfile(os.path.join(path, "cross_task.json"))
