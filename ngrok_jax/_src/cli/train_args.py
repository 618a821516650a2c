"""The ``ngrok-jax train`` options and the run spec they build: the
options grouped by concern, each configuration flag's help showing the
value the chosen preset uses, the check that every option given applies to
one of the chosen methods (the method records' ``options``,
:mod:`ngrok_jax.registry`, say which fields only some methods read), and
:func:`spec_from_args`, the run spec assembled from the parsed flags."""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ngrok_jax._src.core.tables import md_table
from ngrok_jax._src.optim.registry import RECORDS, get_method, method_names
from ngrok_jax._src.training.config import METHODS, TrainConfig
from ngrok_jax._src.training.presets import PRESETS, get_preset
from ngrok_jax._src.storage.spec import EACH, load_spec, make_spec
from ngrok_jax._src.running.trackers import TRACKERS
from ngrok_jax._src.cli.flags import (UsageError, config_flag, config_fields,
                                      float_arg, int_arg, metavar_of,
                                      seed_list_arg, seeds_arg, sweep_arg)

__all__ = ["add_train_parser", "check_applies", "preset_of_argv",
           "explicit_cfg", "methods_arg", "spec_from_args",
           "CONFIG_GROUPS", "method_options", "method_lines", "method_table"]

#: The configuration groups of ``train --help`` (TrainConfig fields that
#: every method reads); the fields only some methods read (the records'
#: ``options``) get a group of their own, others "other configuration".
CONFIG_GROUPS = {
    "task and data": ("task", "p", "fractions", "split_seed", "batch_size",
                      "batching", "train_on_outer"),
    "model": ("depth", "dim", "heads", "init", "loss", "fix_weight_norm"),
    "optimizer (every method)": ("lr", "wd", "b1", "b2", "eps", "eps_root",
                                 "clip", "warmup_steps"),
}
DEFAULT_PRESET = "quick"


def method_options() -> Dict[str, List[str]]:
  """``{config field: the methods that read it}`` for the fields only some
  methods read (the records' ``options``), in the records' order."""
  out: Dict[str, List[str]] = {}
  for r in RECORDS:
    for name in r.options:
      out.setdefault(name, []).append(r.name)
  return out


def preset_of_argv(argv: Sequence[str]) -> str:
  """The ``--preset`` named in ``argv`` (for the help's values), else
  ``quick``; an unknown name is left to the parser's own check."""
  name = DEFAULT_PRESET
  for i, a in enumerate(argv):
    if a == "--preset" and i + 1 < len(argv):
      name = argv[i + 1]
    elif a.startswith("--preset="):
      name = a.split("=", 1)[1]
  return name if name in PRESETS else DEFAULT_PRESET


def _show(v: Any) -> str:
  return ",".join(map(str, v)) if isinstance(v, (tuple, list)) else f"{v:g}" \
      if isinstance(v, float) else str(v)


def _preset_value(preset: Mapping[str, Any], name: str) -> Optional[str]:
  """What the preset sets field ``name`` to, in words (None: it does not)."""
  parts = []
  if name in preset["config"]:
    parts.append(_show(preset["config"][name]))
  per = {}
  for m, over in preset.get("method_config", {}).items():
    if name in over:
      per.setdefault(_show(over[name]), []).append(m)
  parts += [f"{v} for {', '.join(ms)}" for v, ms in per.items()]
  return "; ".join(parts) or None


def _add_config_flags(t, preset_name: str) -> None:
  preset = get_preset(preset_name)
  hints = typing.get_type_hints(TrainConfig)
  only = method_options()
  where = {f: g for g, fs in CONFIG_GROUPS.items() for f in fs}
  groups = {g: t.add_argument_group(
      f"{g} (default: preset {preset_name}'s value, else the library's)")
      for g in CONFIG_GROUPS}
  groups["method"] = t.add_argument_group(
      "method-specific configuration (an error when no chosen method reads "
      "it; [the methods that do])")
  groups["other"] = t.add_argument_group("other configuration")
  for f, flag, typ in config_fields():
    hlp, d = f.metadata["help"], f.default
    shown = _preset_value(preset, f.name)
    if shown is not None and (d is None or shown != _show(d)):
      hlp += f" ({preset_name}: {shown}" + (
          f"; library default: {_show(d)})" if d is not None else ")")
    elif d is not None:  # None: the help says what the default is
      hlp += f" (default: {_show(d)})"
    if f.name in only:
      hlp += f" [{', '.join(only[f.name])}]"
    group = groups["method"] if f.name in only else groups[
        where.get(f.name, "other")]
    group.add_argument(flag, dest=f"cfg_{f.name}", type=typ, default=None,
                       metavar=metavar_of(f, hints[f.name], typ), help=hlp)


def _amp_seed_arg(s):
  """--amplifier-seed: an index or 'each'."""
  return EACH if s == EACH else int_arg("--amplifier-seed")(s)


def _trackers(s: str) -> List[str]:
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


def add_train_parser(sub, preset_name: str = DEFAULT_PRESET):
  """The ``train`` subcommand on ``sub``, its help showing the values of
  preset ``preset_name``."""
  pre = get_preset(preset_name)
  t = sub.add_parser(
      "train", help="train one task with one or more methods, all seeds "
      "vmapped, into a run folder",
      description="Train one task with one or more methods; all seeds of a "
      "method run as one vmapped program. Options not given come from "
      f"--preset (shown: {preset_name}'s values; --preset NAME --help shows "
      "another's).")
  run = t.add_argument_group("what runs")
  run.add_argument("--preset", default=None, metavar="NAME",
                   help=f"whole configuration: {', '.join(PRESETS)} "
                   "(default: quick)")
  run.add_argument("--methods", default=None, metavar="M1,M2",
                   help=f"comma-separated methods from {', '.join(METHODS)}"
                   ", or your own optax optimizer as module:factory "
                   "(factory(learning_rate, weight_decay) -> "
                   "optax.GradientTransformation; docs/training.md) "
                   f"(default: {preset_name}'s, {','.join(pre['methods'])})")
  seeds = run.add_mutually_exclusive_group()
  seeds.add_argument("--seeds", type=seeds_arg, default=None,
                     metavar="N|S1,S2|A..B",
                     help="a count N (seeds 0..N-1), a list 0,5,7 or an "
                     "inclusive range 3..5 or 3-5 (default: "
                     f"{preset_name}'s, {pre['seeds']})")
  seeds.add_argument("--seed-list", type=seed_list_arg, default=None,
                     dest="seeds", metavar="S1,S2",
                     help="the seeds themselves, also one: --seed-list 0")
  run.add_argument("--steps", type=int_arg("--steps"), default=None,
                   metavar="N", help="training steps per method (default: "
                   f"{preset_name}'s, {pre['steps']})")
  run.add_argument("--eval-every", type=int_arg("--eval-every"),
                   default=None, metavar="N",
                   help="evaluate every N steps; one lax.scan chunk "
                   f"(default: {preset_name}'s, {pre['eval_every']})")
  run.add_argument("--sweep", type=sweep_arg, action="append", default=None,
                   metavar="NAME=V1,V2",
                   help="hyperparameter sweep as per-seed values in one "
                   "vmapped program; each value gets --seeds seeds (repeat "
                   "for several names with the same number of values; "
                   "default: none)")
  run.add_argument("--stop-after", type=int_arg("--stop-after"),
                   default=None, metavar="N",
                   help="stop a method once every seed has held test "
                   "accuracy >= --stop-acc (0.99) for N consecutive "
                   "evaluations (default: preset; 0: never)")
  run.add_argument("--stop-acc", type=float_arg("--stop-acc"), default=None,
                   metavar="A", help="the test accuracy of --stop-after "
                   "(default 0.99)")
  folder = t.add_argument_group("run folder, checkpoints and resume")
  folder.add_argument("--out", default=None, metavar="DIR",
                      help="run folder (default: runs/PRESET-YYYYmmdd-HHMMSS)")
  folder.add_argument("--checkpoint-every",
                      type=int_arg("--checkpoint-every"), default=None,
                      metavar="N",
                      help="checkpoint every N steps, a multiple of "
                      "--eval-every; 0: only at the end and on SIGINT/SIGTERM "
                      f"(default: {preset_name}'s, "
                      f"{pre.get('checkpoint_every') or 0})")
  folder.add_argument("--keep-checkpoints",
                      type=int_arg("--keep-checkpoints"), default=None,
                      metavar="K", help="keep the newest K checkpoints per "
                      "method (default 3)")
  folder.add_argument("--resume", default=None, metavar="DIR",
                      help="continue the run in DIR from its newest good "
                      "checkpoint; other options must match its config")
  folder.add_argument("--force", action="store_true",
                      help="with --resume: accept options that differ from "
                      "the saved config (default: refuse, naming the fields)")
  amp = t.add_argument_group("trained amplifiers and cross-task training")
  amp.add_argument("--cross-tasks", default=None, metavar="T1,T2,...",
                   help="meta-train ONE NeuralGrok amplifier per seed across "
                   "these tasks at once (a vmapped task axis, the "
                   "meta-gradient averaged over it; ngrok_jax.cross_task) "
                   "instead of training --task: one run folder per task and "
                   "the shared amplifier in --out; --resume DIR continues it "
                   "(default: off)")
  amp.add_argument("--amplifier", default=None, metavar="PATH",
                   help="trained amplifier (a NeuralGrok run folder or its "
                   "amplifier.msgpack) for neuralgrok-frozen (default: none)")
  amp.add_argument("--amplifier-seed", type=_amp_seed_arg, default=None,
                   metavar="K",
                   help="which seed's amplifier in that file, by index "
                   "(default 0), or 'each': seed i uses the file's i-th "
                   "amplifier")
  _add_config_flags(t, preset_name)
  speed = t.add_argument_group("devices and speed (same results)")
  speed.add_argument("--devices", type=int_arg("--devices"), default=None,
                     metavar="N",
                     help="shard the seeds over at most N devices (with "
                     "several processes: of all processes together), the "
                     "largest count dividing the number of seeds (default: "
                     "all devices; 1: no sharding)")
  speed.add_argument("--seed-group", type=_seed_group, default="auto",
                     metavar="N|all|auto",
                     help="vmap the seeds in groups of N, one group after "
                     "another (auto: 1 on a CPU, all on accelerators; all: "
                     "one group); same results, a speed choice")
  out = t.add_argument_group("output and experiment trackers")
  out.add_argument("--log", type=_trackers, action="append", default=None,
                   metavar="TRACKER",
                   help="also log to an experiment tracker: tensorboard "
                   "(event files in DIR/tensorboard; pip install -e "
                   "'.[tensorboard]') and/or wandb (Weights & Biases; pip "
                   "install -e '.[wandb]'; the API key only from "
                   "WANDB_API_KEY; WANDB_MODE=offline works without a "
                   "network); comma-separated or repeated (default: "
                   "metrics.jsonl only)")
  out.add_argument("--wandb-project", default=None, metavar="NAME",
                   help="W&B project (default: $WANDB_PROJECT, else "
                   "ngrok-jax)")
  out.add_argument("--wandb-entity", default=None, metavar="NAME",
                   help="W&B entity, a user or team (default: "
                   "$WANDB_ENTITY, else the key's default entity)")
  out.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: shown)")
  out.add_argument("--no-plots", action="store_true",
                   help="do not write PNG plots (default: written)")
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
  return t


def check_applies(args, spec) -> None:
  """A configuration option (or ``--sweep`` name) given on the command
  line that no chosen method reads: a :class:`UsageError` naming the
  methods that do."""
  only = method_options()
  fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
  given = [(config_flag(fields[n]), n) for n in fields
           if getattr(args, f"cfg_{n}", None) is not None]
  given += [(f"--sweep {n}", n) for n, _ in (args.sweep or ())]
  for flag, name in given:
    if name in only and not set(only[name]) & set(spec.methods):
      raise UsageError(
          f"{flag} applies only to {', '.join(only[name])}; the chosen "
          f"methods ({', '.join(spec.methods)}) do not read it")


def method_lines(spec) -> List[str]:
  """One line per method of a run: what it is (its record's summary) and
  its learning rate, weight decay and clip in this run."""
  out = []
  for m in spec.methods:
    cfg = spec.configs[m]
    hp = cfg.hparams()
    decay = "coupled" if cfg.record.coupled_decay else "decoupled"
    clip = ("unclipped" if math.isinf(hp["clip"]) else
            f"clipped at {hp['clip']:g}")
    out.append(f"- {m}: {cfg.record.summary}; here lr {hp['lr']:g}, "
               f"{decay} wd {hp['wd']:g}, {clip}")
  return out


def method_table() -> str:
  """The docs' table of the methods (docs/training.md, "Methods"), one row
  per registered method from its record: what it is, its weight decay
  (coupled or decoupled, and its default), whether it is clipped by
  default, and its tuning grid (``experiments.tune``)."""
  rows = []
  for name in method_names():
    r = get_method(name)
    decay = "coupled" if r.coupled_decay else "decoupled"
    grid = "; ".join(f"{k} {' / '.join(f'{v:g}' for v in vals)}"
                     for k, vals in (r.grid or {}).items()) or "not tuned"
    rows.append([f"`{name}`", r.summary, f"{decay}, {r.default('wd'):g}",
                 "1" if r.clipped else "off", grid])
  return md_table(["method", "what", "weight decay (default)",
                   "clip (default)", "tuning grid"], rows)


# ------------------------------------------------- the spec of the flags
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
