"""The ``ngrok-jax`` command line (also ``python -m ngrok_jax``).

Subcommands::

    ngrok-jax train  [--preset quick] [--methods neuralgrok,adam] [--seeds 4] ...
    ngrok-jax train  --resume DIR [--force]
    ngrok-jax report DIR [DIR ...] [--compare PNG] [--no-plots]
    ngrok-jax amplifier PATH [--seed-index K] [--export OUT] [--plot PNG]
    ngrok-jax presets

Bad options and values exit with status 2 and one line on stderr (no
traceback); an interrupted run (SIGINT/SIGTERM) saves a checkpoint and exits
with 128 + the signal number.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["main", "build_parser"]

PROG = "ngrok-jax"


class UsageError(Exception):
  """Bad input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
  """argparse with a one-line error message (exit 2, no usage dump)."""

  def error(self, message):  # noqa: D401
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ------------------------------------------------------------- value types
def _pos_int(name):
  def f(s):
    try:
      v = int(s)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}")
    if v < 1:
      raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {v}")
    return v
  return f


def _nonneg_int(name):
  def f(s):
    try:
      v = int(s)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}")
    if v < 0:
      raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {v}")
    return v
  return f


def _float(name):
  def f(s):
    try:
      v = float(s)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}")
    if math.isnan(v):
      raise argparse.ArgumentTypeError(f"{name} must be a number, got nan")
    return v
  return f


def _int_list(name):
  def f(s):
    try:
      v = tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"{name} must be comma-separated positive integers, got {s!r}")
    if not v or any(x < 1 for x in v):
      raise argparse.ArgumentTypeError(
          f"{name} must be comma-separated positive integers, got {s!r}")
    return v
  return f


def _choice(name, choices):
  def f(s):
    if s not in choices:
      raise argparse.ArgumentTypeError(
          f"{name} must be one of {', '.join(choices)}, got {s!r}")
    return s
  f.metavar = "{" + ",".join(choices) + "}"
  return f


def _seeds(s):
  """'4' -> 4 seeds (0..3); '0,5,7' -> those seeds."""
  try:
    if "," in s:
      v = [int(x) for x in s.split(",") if x.strip()]
      if not v or len(set(v)) != len(v):
        raise ValueError
      return v
    v = int(s)
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"--seeds must be a count (e.g. 4) or distinct seeds (e.g. 0,1,2), "
        f"got {s!r}")
  if v < 1:
    raise argparse.ArgumentTypeError(f"--seeds must be >= 1, got {v}")
  return v


def _sweep(s):
  """'c=0.5,1,2' -> ('c', (0.5, 1.0, 2.0))."""
  from ngrok_jax.config import HPARAMS
  name, sep, vals = s.partition("=")
  name = name.strip()
  if not sep or name not in HPARAMS:
    raise argparse.ArgumentTypeError(
        f"--sweep must be NAME=v1,v2,... with NAME one of "
        f"{', '.join(HPARAMS)}, got {s!r}")
  try:
    values = tuple(float(v) for v in vals.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"--sweep {name}: values must be "
                                     f"numbers, got {vals!r}")
  if not values:
    raise argparse.ArgumentTypeError(f"--sweep {name}: no values")
  return name, values


# Config options: (flag, TrainConfig field, type, help).
_CONFIG_OPTS = [
    ("--task", "task", str, "task: a+b, a-b, a*b, a*a-b, a*c+b*d-e, a/b, "
     "a+b-a*b"),
    ("--p", "p", _pos_int("--p"), "modulus p"),
    ("--depth", "depth", _pos_int("--depth"), "transformer blocks"),
    ("--dim", "dim", _pos_int("--dim"), "model width d"),
    ("--heads", "heads", _pos_int("--heads"), "attention heads"),
    ("--batch-size", "batch_size", _pos_int("--batch-size"), "batch size"),
    ("--warmup-steps", "warmup_steps", _nonneg_int("--warmup-steps"),
     "linear learning-rate warm-up steps"),
    ("--amp-hidden", "amp_hidden", _int_list("--amp-hidden"),
     "amplifier hidden sizes, e.g. 128,128"),
    ("--amp-method", "amp_method", _choice("--amp-method", ("pwl", "dense")),
     "amplifier evaluation: pwl (exact piecewise-linear table, fast) or "
     "dense (the MLP itself)"),
    ("--amp-chunk", "amp_chunk", _pos_int("--amp-chunk"),
     "dense amplifier only: evaluate in rematerialised blocks of AMP_CHUNK "
     "components (bounds the meta step's memory; default: one block)"),
    ("--amp-dtype", "amp_dtype",
     _choice("--amp-dtype", ("float32", "bfloat16")),
     "dense amplifier matmul dtype"),
    ("--meta-every", "meta_every", _nonneg_int("--meta-every"),
     "T: meta step every T steps (NeuralGrok)"),
    ("--lookahead", "lookahead", _choice("--lookahead", ("sgd", "inner")),
     "meta look-ahead: sgd or inner (inner needs --eps-root > 0)"),
    ("--meta-placement", "meta_placement",
     _choice("--meta-placement", ("after", "before")),
     "meta step after the inner step at the updated parameters (the "
     "reference) or before it at the current ones"),
    ("--init", "init", _choice("--init", ("torch", "flax")),
     "transformer initialisation: torch (PyTorch defaults, the reference) "
     "or flax"),
    ("--batching", "batching", _choice("--batching", ("epoch", "iid")),
     "batches: epoch (shuffled each epoch, as a DataLoader) or iid draws"),
    ("--train-on-outer", "train_on_outer",
     _choice("--train-on-outer", ("yes", "no")),
     "train on the outer split too (default: yes for methods without a "
     "meta step, as the reference's baselines)"),
    ("--window", "window", _pos_int("--window"), "GrokFast-MA window"),
    ("--split-seed", "split_seed", _nonneg_int("--split-seed"),
     "one data split for all seeds (default: each seed splits)"),
    ("--lr", "lr", _float("--lr"), "learning rate"),
    ("--wd", "wd", _float("--wd"), "weight decay (coupled L2 for Adam, "
     "decoupled for AdamW); applies to every method"),
    ("--c", "c", _float("--c"), "rescaling coefficient c (neuralgrok, "
     "rescale)"),
    ("--alpha", "alpha", _float("--alpha"), "GrokFast-EMA alpha"),
    ("--lamb", "lamb", _float("--lamb"), "GrokFast lamb"),
    ("--clip", "clip", _float("--clip"), "global-norm clip (inf: off)"),
    ("--meta-lr", "meta_lr", _float("--meta-lr"), "meta (amplifier) "
     "learning rate"),
    ("--meta-wd", "meta_wd", _float("--meta-wd"), "meta weight decay "
     "(default: the model's wd)"),
    ("--lookahead-lr", "lookahead_lr", _float("--lookahead-lr"),
     "look-ahead SGD learning rate (default: the model's lr)"),
    ("--eps-root", "eps_root", _float("--eps-root"), "Adam eps_root "
     "(> 0 needed by --lookahead inner, e.g. 1e-16)"),
]


def build_parser() -> argparse.ArgumentParser:
  from ngrok_jax.presets import PRESETS
  from ngrok_jax.config import METHODS
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
  t.add_argument("--seeds", type=_seeds, default=None, metavar="N|S1,S2",
                 help="number of seeds (0..N-1) or a list (default: preset, "
                 "quick: 4)")
  t.add_argument("--steps", type=_pos_int("--steps"), default=None,
                 help="training steps per method (default: preset)")
  t.add_argument("--eval-every", type=_pos_int("--eval-every"), default=None,
                 help="evaluate every N steps; one lax.scan chunk "
                 "(default: preset)")
  t.add_argument("--out", default=None, metavar="DIR",
                 help="run folder (default: runs/PRESET-YYYYmmdd-HHMMSS)")
  t.add_argument("--checkpoint-every", type=_nonneg_int("--checkpoint-every"),
                 default=None, metavar="N",
                 help="checkpoint every N steps, a multiple of --eval-every; "
                 "0: only at the end and on SIGINT/SIGTERM (default: "
                 "preset, quick 0, paper-* 10000)")
  t.add_argument("--keep-checkpoints", type=_pos_int("--keep-checkpoints"),
                 default=None, metavar="K",
                 help="keep the newest K checkpoints per method (default 3)")
  t.add_argument("--resume", default=None, metavar="DIR",
                 help="continue the run in DIR from its newest good "
                 "checkpoint; other options must match its config")
  t.add_argument("--force", action="store_true",
                 help="with --resume: accept options that differ from the "
                 "saved config (default: refuse, naming the fields)")
  t.add_argument("--amplifier", default=None, metavar="PATH",
                 help="trained amplifier (a NeuralGrok run folder or its "
                 "amplifier.msgpack) for neuralgrok-frozen (default: none)")
  t.add_argument("--amplifier-seed", type=_nonneg_int("--amplifier-seed"),
                 default=None, metavar="K",
                 help="which seed's amplifier in that file, by index "
                 "(default 0)")
  t.add_argument("--stop-after", type=_nonneg_int("--stop-after"),
                 default=None, metavar="N",
                 help="stop a method once every seed has held test accuracy "
                 ">= 0.99 for N consecutive evaluations (default: preset; "
                 "0: never)")
  t.add_argument("--sweep", type=_sweep, action="append", default=None,
                 metavar="NAME=V1,V2",
                 help="hyperparameter sweep as per-seed values in one "
                 "vmapped program; each value gets --seeds seeds (repeat for "
                 "several names with the same number of values; default: "
                 "none)")
  g = t.add_argument_group("configuration (default: the preset's value)")
  for flag, field, typ, hlp in _CONFIG_OPTS:
    g.add_argument(flag, dest=f"cfg_{field}", type=typ, default=None,
                   metavar=getattr(typ, "metavar", field.upper()), help=hlp)
  t.add_argument("--devices", type=_pos_int("--devices"), default=None,
                 metavar="N",
                 help="shard the seeds over at most N local devices, the "
                 "largest count dividing the number of seeds (default: all "
                 "devices; 1: no sharding)")
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
  a.add_argument("--seed-index", type=_nonneg_int("--seed-index"), default=0,
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
def _explicit_cfg(args) -> Dict[str, Any]:
  out = {field: getattr(args, f"cfg_{field}") for _, field, _, _ in
         _CONFIG_OPTS if getattr(args, f"cfg_{field}") is not None}
  if "train_on_outer" in out:
    out["train_on_outer"] = out["train_on_outer"] == "yes"
  return out


def _methods_arg(s: Optional[str]) -> Optional[List[str]]:
  from ngrok_jax.config import METHODS
  if s is None:
    return None
  ms = [m.strip() for m in s.split(",") if m.strip()]
  if not ms:
    raise UsageError("--methods must name at least one method")
  for m in ms:
    if m not in METHODS:
      raise UsageError(f"unknown method {m!r} in --methods; valid: "
                       f"{', '.join(METHODS)}")
  if len(set(ms)) != len(ms):
    raise UsageError(f"--methods lists a method twice: {s}")
  return ms


def _sweep_hparams(sweeps, n_seeds):
  """--sweep values -> (seeds, {name: per-seed values})."""
  if not sweeps:
    return None, None
  names = [n for n, _ in sweeps]
  if len(set(names)) != len(names):
    raise UsageError("--sweep names a hyperparameter twice")
  k = {len(v) for _, v in sweeps}
  if len(k) != 1:
    raise UsageError("every --sweep needs the same number of values")
  k = k.pop()
  if isinstance(n_seeds, int):
    base = list(range(n_seeds))
  else:
    base = list(n_seeds)
  n = len(base)
  if isinstance(n_seeds, int):
    seeds = list(range(n * k))
  else:
    # distinct seeds per (value, repeat): offset the given seeds per value
    off = max(base) + 1
    seeds = [s + i * off for i in range(k) for s in base]
  hp = {name: [v[i // n] for i in range(n * k)] for name, v in sweeps}
  return seeds, hp


def _spec_from_args(args):
  from ngrok_jax import runner
  from ngrok_jax.presets import get_preset
  from ngrok_jax.config import TrainConfig
  cfg_over = _explicit_cfg(args)
  methods = _methods_arg(args.methods)
  if args.resume:
    if args.preset is not None:
      raise UsageError("--preset cannot be combined with --resume (the run "
                       "folder has its configuration)")
    saved = runner.load_spec(args.resume)
    methods = methods or saved.methods
    first = next(iter(saved.configs.values()))
    configs = {m: dataclasses.replace(
        saved.configs.get(m, dataclasses.replace(first, method=m)),
        **cfg_over) for m in methods}
    seeds = saved.seeds if args.seeds is None else args.seeds
    hp = dict(saved.hparams)
    if args.sweep:
      seeds, hp = _sweep_hparams(args.sweep, seeds if args.seeds is not None
                                 else len(saved.seeds))
    if isinstance(seeds, int):
      seeds = list(range(seeds))
    return runner.make_spec(
        None, methods, list(seeds), _pick(args.steps, saved.steps),
        _pick(args.eval_every, saved.eval_every),
        method_overrides={m: _cfg_fields(c) for m, c in configs.items()},
        hparams=hp or None,
        checkpoint_every=_pick(args.checkpoint_every, saved.checkpoint_every),
        keep_checkpoints=_pick(args.keep_checkpoints, saved.keep_checkpoints),
        amplifier=_pick(args.amplifier, saved.amplifier),
        amplifier_seed=_pick(args.amplifier_seed, saved.amplifier_seed),
        stop_after=_pick(args.stop_after, saved.stop_after))
  preset = get_preset(args.preset or "quick")
  base = TrainConfig.from_dict({**preset["config"], **cfg_over})
  over = {m: {k: v for k, v in preset["method_config"].get(m, {}).items()
              if k not in cfg_over} for m in preset["method_config"]}
  methods = methods or preset["methods"]
  n_seeds = args.seeds if args.seeds is not None else preset["seeds"]
  seeds, hp = _sweep_hparams(args.sweep, n_seeds)
  if seeds is None:
    seeds = n_seeds
  return runner.make_spec(
      base, methods, seeds, _pick(args.steps, preset["steps"]),
      _pick(args.eval_every, preset["eval_every"]),
      method_overrides={m: o for m, o in over.items() if m in methods},
      hparams=hp, checkpoint_every=_pick(args.checkpoint_every,
                                         preset.get("checkpoint_every")),
      keep_checkpoints=_pick(args.keep_checkpoints, 3),
      amplifier=args.amplifier, amplifier_seed=_pick(args.amplifier_seed, 0),
      stop_after=_pick(args.stop_after, preset.get("stop_after")))


def _cfg_fields(cfg) -> Dict[str, Any]:
  d = cfg.to_dict()
  d.pop("method")
  return d


def _pick(v, default):
  return default if v is None else v


def _cmd_train(args) -> int:
  from ngrok_jax import runner
  if args.preset is not None:
    from ngrok_jax.presets import get_preset
    get_preset(args.preset)  # validates the name first
  if args.resume and args.out and os.path.abspath(args.out) != \
      os.path.abspath(args.resume):
    raise UsageError("--out and --resume name different folders")
  spec = _spec_from_args(args)
  if (args.cfg_amp_chunk is not None or args.cfg_amp_dtype == "bfloat16") \
      and any(c.amp_method != "dense" for c in spec.configs.values()):
    raise UsageError("--amp-chunk and --amp-dtype bfloat16 apply only to "
                     "--amp-method dense")
  if args.resume:
    out = args.resume
  else:
    out = args.out or os.path.join(
        "runs", f"{args.preset or 'quick'}-{time.strftime('%Y%m%d-%H%M%S')}")
  runner.check_resume(spec, out, bool(args.resume), args.force)
  print(f"{PROG}: {', '.join(spec.methods)} on "
        f"{next(iter(spec.configs.values())).task} mod "
        f"{next(iter(spec.configs.values())).p}, {len(spec.seeds)} seeds, "
        f"{spec.steps} steps -> {out}", file=sys.stderr, flush=True)
  try:
    summary = runner._execute(spec, out, resume=bool(args.resume),
                              force=args.force,
                              progress=not args.no_progress,
                              plots=not args.no_plots, report=None,
                              devices=args.devices)
  except runner.RunInterrupted as e:
    print(f"{PROG}: {e}", file=sys.stderr, flush=True)
    return 128 + int(e.signum)
  if args.no_progress:
    for m, per in summary["methods"].items():
      print(runner.summary_line(m, per), file=sys.stderr)
  from ngrok_jax.report import markdown_table
  print(markdown_table([out]), flush=True)
  print(f"{PROG}: run folder {out}"
        + ("" if args.no_plots else f" (plots in {os.path.join(out, 'plots')})"),
        file=sys.stderr)
  return 0


def _cmd_report(args) -> int:
  from ngrok_jax.report import report
  table = report(args.dirs, plots=not args.no_plots,
                 compare_png=args.compare)
  print(table)
  if args.out:
    from ngrok_jax.runner import atomic_write
    atomic_write(args.out, table + "\n")
  return 0


def _cmd_amplifier(args) -> int:
  import numpy as np
  import jax
  import jax.numpy as jnp
  from ngrok_jax.amplifier import Amplifier
  from ngrok_jax.runner import load_amplifier, atomic_write
  params, meta = load_amplifier(args.path, args.seed_index)
  amp = Amplifier(tuple(meta["hidden"]), meta.get("amp_method", "pwl"))
  n = sum(int(np.size(l)) for l in jax.tree.leaves(params))
  lo, hi = meta["grad_range"]
  print(f"amplifier 1-{'-'.join(map(str, meta['hidden']))}-1 ({n} params), "
        f"trained on {meta['task']} mod {meta['p']} for {meta['step']} steps, "
        f"seed {meta['seeds'][args.seed_index]} "
        f"(index {args.seed_index} of {len(meta['seeds'])})")
  print(f"gradient components seen: [{lo:.3g}, {hi:.3g}]; steps to 95%: "
        f"{meta.get('steps_to_95')}")
  span = max(abs(lo), abs(hi))
  xs = np.linspace(-span, span, 9).astype(np.float32)
  ys = np.asarray(amp.apply(params, jnp.asarray(xs)))
  print("| g | score f(g) |\n|---|---|")
  for x, y in zip(xs, ys):
    print(f"| {x:.3g} | {y:.4g} |")
  if args.export:
    ext = os.path.splitext(args.export)[1]
    flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
            jax.tree_util.tree_flatten_with_path(params)[0]}
    if ext == ".npz":
      import io
      buf = io.BytesIO()
      np.savez(buf, **flat, meta=json.dumps(
          {k: v for k, v in meta.items() if k != "example"}))
      atomic_write(args.export, buf.getvalue())
    elif ext == ".msgpack":
      from ngrok_jax.runner import save_amplifier
      one = jax.tree.map(lambda a: np.asarray(a)[None], params)
      m2 = dict(meta, seeds=[meta["seeds"][args.seed_index]],
                c=[meta["c"][args.seed_index]])
      save_amplifier(args.export, one, m2)
    else:
      raise UsageError(f"--export must end in .npz or .msgpack, got "
                       f"{args.export!r}")
    print(f"exported to {args.export}")
  if args.plot:
    from ngrok_jax.plots import plot_amplifier
    plot_amplifier(args.path, args.plot)
    print(f"plot written to {args.plot}")
  return 0


def _cmd_presets(args) -> int:
  from ngrok_jax.presets import PRESETS
  for name, p in PRESETS.items():
    print(f"{name:12s} {p['description']}; methods {','.join(p['methods'])},"
          f" {p['seeds']} seeds, {p['steps']} steps, eval every "
          f"{p['eval_every']}; source: {p['source']}")
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return {"train": _cmd_train, "report": _cmd_report,
            "amplifier": _cmd_amplifier, "presets": _cmd_presets}[
                args.command](args)
  except (UsageError, ValueError) as e:
    msg = " ".join(str(e).split())
    print(f"{PROG} {args.command}: error: {msg}", file=sys.stderr)
    return 2
  except FileNotFoundError as e:
    print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"{PROG}: interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # noqa: BLE001 - CheckpointError and friends
    from ngrok_jax.checkpoint import CheckpointError
    if isinstance(e, CheckpointError):
      print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
      return 1
    raise


if __name__ == "__main__":
  sys.exit(main())
