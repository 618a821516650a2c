"""Meta-train a learned update rule across tasks and primes (PES or TBPTT).

Each outer step takes the next prime of ``--primes`` (round robin): the
particles of that prime (persistent inner runs of the training tasks,
``--tasks``, spread over the particles) run one truncation of
``--truncation`` steps, and the rule's parameters take one meta-Adam step
on the gradient estimate.  The meta-objective is the held-out *meta*
split's loss summed over the truncation (``--objective meta+gap`` adds the
train-to-held-out gap); the test split is never read by meta-training.

Writes to ``--out``::

    meta_config.json   the arguments (not a run folder of the runner)
    metrics.jsonl      one row per outer step (meta_loss, objective,
                       grad_norm, grad_var, resets, prime, seconds: wall
                       time, cpu_seconds: process CPU time, all threads) and
                       probe rows (dist_adam, dist_rescale, probe_test_acc,
                       probe_steps_to_95 per run; one at outer step 0 for
                       the starting rule)
    rule.msgpack       the trained rule parameters (+ rule_config.json)
    plots/meta_train.png
    checkpoints/       the whole state and how many rows of metrics.jsonl
                       it covers (exact resume: rerun the command; rows
                       past the checkpoint are dropped)

The folder is locked for the script's life (a second writer is refused,
naming the process that holds it); a new run needs a missing or empty
folder, a rerun the same settings; a training run folder of ``ngrok-jax
train`` is refused.  A failed start leaves the folder as it was.  Exit
status: 2 bad settings or folder, 3 the environment (disk full,
permissions, ``--out`` at a file), 1 no usable checkpoint, 128 + the
signal number after SIGINT/SIGTERM (a checkpoint is saved first).

Example (the CPU size)::

    python -m experiments.meta_train --out runs/meta --outer-steps 100
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngrok_jax import RuleConfig, init_rule, pes, save_rule
from ngrok_jax import rule_tasks as rt
from ngrok_jax import runfolder
from ngrok_jax.checkpoint import Checkpointer
from ngrok_jax.hooks import (CheckpointSaver, MetricsWriter, ProgressBar,
                             StopFlag, StopOnSignal, TimeLimit)
from ngrok_jax.learned_rule import PLACEMENTS, muon_config
from ngrok_jax.results import atomic_write
from ngrok_jax.runner import run_chunks

from experiments.meta_folder import CONFIG, check_folder, error_exit, rows_of

TRAIN_TASKS = ("a+b", "a-b", "a*b", "a+b-a*b")
#: Flags that are not settings of the run (a rerun may change them).
NOT_SAVED = ("out", "outer_steps", "no_progress", "no_plots", "max_minutes")
#: Float flags: (lowest value, whether the lowest is allowed).
_FLOATS = dict(lr=(0, False), meta_lr=(0, False), sigma=(0, False),
               loss_clip=(0, False), gap_weight=(0, True),
               meta_clip=(0, True), max_minutes=(0, True))


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
  a = p.add_argument
  a("--out", required=True, help="run folder (resumed if it exists)")
  a("--tasks", default=",".join(TRAIN_TASKS))
  a("--primes", default="41,47,53", help="comma-separated training primes")
  a("--dim", type=int, default=64)
  a("--depth", type=int, default=1)
  a("--heads", type=int, default=4)
  a("--batch-size", type=int, default=128)
  a("--meta-batch", type=int, default=64)
  a("--placement", default="update", choices=PLACEMENTS)
  a("--hidden", default="32", help="rule MLP hidden sizes, e.g. 32,32")
  a("--lr", type=float, default=3e-3, help="the rule's inner learning rate")
  a("--wd", type=float, default=None,
    help="--placement muon: the decoupled weight decay of the rule's "
    "harness (default 1, the muon method's); at initialisation the rule is "
    "the muon method at --lr and --wd")
  a("--estimator", default="pes", choices=pes.ESTIMATORS)
  a("--particles", type=int, default=8)
  a("--truncation", type=int, default=50)
  a("--horizon", type=int, default=1000)
  a("--sigma", type=float, default=0.01)
  a("--objective", default="meta", choices=pes.OBJECTIVES)
  a("--gap-weight", type=float, default=1.0)
  a("--loss-clip", type=float, default=100.0,
    help="clip of the per-step objective (held-out cross-entropy reaches "
    "10-20 while a model memorises)")
  a("--meta-lr", type=float, default=1e-3)
  a("--meta-clip", type=float, default=1.0,
    help="clip the meta-gradient's global norm (0: off)")
  a("--accumulate", type=int, default=1,
    help="average the gradient estimates of this many outer steps before "
    "one meta update (optax.MultiSteps; the clip acts on the average): the "
    "update's signal-to-noise ratio is this many times one outer step's")
  a("--synchronized", action="store_true",
    help="every particle starts and ends its inner runs together (no "
    "stagger); fresh particles at every epoch (horizon / truncation outer "
    "steps per prime, all primes), and checkpoints only there, holding the "
    "rule, the meta optimizer and the key but no particle: a folder small "
    "enough to commit and resume exactly in another session (an interrupt "
    "between epochs resumes from the last epoch)")
  a("--outer-steps", type=int, default=100)
  a("--checkpoint-every", type=int, default=10)
  a("--probe-every", type=int, default=0,
    help="outer steps between probes of the rule (0: off)")
  a("--probe-steps", type=int, default=300)
  a("--probe-seeds", type=int, default=2)
  a("--max-minutes", type=float, default=0,
    help="stop (checkpointed, outputs written) after this many minutes of "
    "this process (0: no limit); rerun the command to continue")
  a("--seed", type=int, default=0)
  a("--no-progress", action="store_true")
  a("--no-plots", action="store_true")
  return p


def _ints(s: str) -> List[int]:
  try:
    return [int(x) for x in s.split(",") if x.strip()]
  except ValueError:
    raise ValueError(f"expected comma-separated integers, got {s!r}") from None


def _check_flags(args) -> None:
  for name, (low, eq) in _FLOATS.items():
    v = getattr(args, name)
    if not (math.isfinite(v) and (v >= low if eq else v > low)):
      raise ValueError(f"--{name.replace('_', '-')} must be a finite number "
                       f"{'>=' if eq else '>'} {low}, got {v}")
  for name in ("dim", "depth", "heads", "batch_size", "meta_batch",
               "probe_steps", "probe_seeds"):
    if getattr(args, name) < 1:
      raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                       f"{getattr(args, name)}")
  if args.dim % args.heads:
    raise ValueError(f"--heads {args.heads} does not divide --dim {args.dim}")
  if args.truncation > args.horizon:
    raise ValueError(f"--truncation {args.truncation} is longer than "
                     f"--horizon {args.horizon}")
  if args.accumulate < 1:
    raise ValueError(f"--accumulate must be >= 1, got {args.accumulate}")
  if args.probe_every < 0:
    raise ValueError(f"--probe-every must be >= 0, got {args.probe_every}")
  if args.synchronized:
    if args.horizon % args.truncation:
      raise ValueError(f"--synchronized needs --truncation {args.truncation}"
                       f" to divide --horizon {args.horizon}")
    e = epoch_length(args)
    if args.outer_steps % e:
      raise ValueError(f"--synchronized: --outer-steps {args.outer_steps} "
                       f"must be a multiple of the epoch, {e} outer steps "
                       "(horizon / truncation x primes)")
    if args.checkpoint_every % e:
      raise ValueError(f"--synchronized: --checkpoint-every "
                       f"{args.checkpoint_every} must be a multiple of the "
                       f"epoch, {e} outer steps (horizon / truncation x "
                       "primes)")


def epoch_length(args) -> int:
  """Outer steps in which every prime's particles run one whole inner run
  (``--synchronized``)."""
  return args.horizon // args.truncation * len(_ints(args.primes))


def configs(args) -> Dict[str, Any]:
  """The rule, outer and per-prime inner configs of the arguments (every
  flag checked: ValueError naming it)."""
  _check_flags(args)
  if args.placement == "muon":
    wd = 1.0 if args.wd is None else args.wd
    if not (math.isfinite(wd) and wd >= 0):
      raise ValueError(f"--wd must be a finite number >= 0, got {wd}")
    rule = muon_config(lr=args.lr, hidden=_ints(args.hidden), wd=wd)
  elif args.wd is not None:
    raise ValueError("--wd is the weight decay of --placement muon")
  else:
    rule = RuleConfig(placement=args.placement,
                      hidden=tuple(_ints(args.hidden)), lr=args.lr)
  tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
  if not tasks:
    raise ValueError(f"--tasks names no task, got {args.tasks!r}")
  primes = _ints(args.primes)
  if not primes or len(set(primes)) != len(primes):
    raise ValueError(f"--primes must be distinct integers, got {args.primes}")
  outer = pes.OuterConfig(
      estimator=args.estimator, num_particles=args.particles,
      truncation=args.truncation, horizon=args.horizon, sigma=args.sigma,
      objective=args.objective, gap_weight=args.gap_weight,
      loss_clip=args.loss_clip, num_groups=len(tasks),
      stagger=not args.synchronized)
  inner = {p: rt.ArithConfig(p=p, tasks=tasks, dim=args.dim,
                             depth=args.depth, heads=args.heads,
                             batch_size=args.batch_size,
                             meta_batch=args.meta_batch) for p in primes}
  if args.outer_steps < 1 or args.checkpoint_every < 1:
    raise ValueError("--outer-steps and --checkpoint-every must be >= 1")
  return dict(rule=rule, outer=outer, inner=inner, primes=primes)


def meta_optimizer(meta_lr: float, clip: float, accumulate: int = 1
                   ) -> optax.GradientTransformation:
  """Adam on the (clipped) meta-gradient; ``accumulate > 1``: on the mean
  of that many outer steps' estimates (``optax.MultiSteps``), theta
  unchanged in between."""
  opt = optax.adam(meta_lr)
  opt = optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
  return (optax.MultiSteps(opt, every_k_schedule=accumulate)
          if accumulate > 1 else opt)


@functools.lru_cache(maxsize=8)
def _program(outer: pes.OuterConfig, inner: rt.ArithConfig,
             rule: RuleConfig, meta_lr: float, clip: float,
             accumulate: int = 1):
  task = rt.arith_task(inner, rule)
  return task, pes.make_outer_step(outer, task, meta_optimizer(
      meta_lr, clip, accumulate))


def seed_keys(seed: int, n_primes: int):
  """The keys a meta-training seed splits into: the rule's initialisation,
  the run's, then one per prime (``experiments/random_rules.py`` rebuilds
  the starting rule from the first)."""
  return jax.random.split(jax.random.PRNGKey(seed), 2 + n_primes)


def init_state(args, cf) -> Dict[str, Any]:
  """The whole meta-training state: ``theta``, ``meta_opt_state``, ``key``,
  ``step`` and ``particles`` (one :class:`ngrok_jax.pes.Particles` per
  prime, keyed by the prime as a string)."""
  k_theta, k_run, *_ = seed_keys(args.seed, len(cf["primes"]))
  theta = init_rule(cf["rule"], k_theta)
  theta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), theta)
  opt = meta_optimizer(args.meta_lr, args.meta_clip, args.accumulate)
  return dict(theta=theta, meta_opt_state=opt.init(theta), key=k_run,
              step=jnp.zeros((), jnp.int32),
              particles=particles(args, cf, theta, 0))


def particles(args, cf, theta, epoch: int) -> Dict[str, pes.Particles]:
  """Fresh particles of every prime (keyed by the prime as a string): from
  the prime's key of :func:`seed_keys`, folded with the epoch under
  ``--synchronized`` (every epoch starts fresh ones)."""
  _, _, *k_p = seed_keys(args.seed, len(cf["primes"]))
  parts = {}
  for p, k in zip(cf["primes"], k_p):
    task, _ = _program(cf["outer"], cf["inner"][p], cf["rule"], args.meta_lr,
                       args.meta_clip, args.accumulate)
    if args.synchronized:
      k = jax.random.fold_in(k, epoch)
    parts[str(p)] = pes.init_particles(cf["outer"], task, theta, k)
  return parts


def saved_part(args, state) -> Dict[str, Any]:
  """What a checkpoint holds: the whole state, or under
  ``--synchronized`` (checkpoints at epoch ends) all but the particles."""
  if not args.synchronized:
    return state
  return {k: v for k, v in state.items() if k != "particles"}


def outer_step(args, cf, state):
  """One outer step on the prime of ``state["step"]`` (round robin)."""
  s = int(state["step"])
  if args.synchronized and s and s % epoch_length(args) == 0:
    # an epoch's fresh particles (step 0's are init_state's; a checkpoint,
    # always at an epoch's end, holds none)
    state = dict(state, particles=particles(
        args, cf, state["theta"], s // epoch_length(args)))
  p = cf["primes"][s % len(cf["primes"])]
  _, fn = _program(cf["outer"], cf["inner"][p], cf["rule"], args.meta_lr,
                   args.meta_clip, args.accumulate)
  os_ = pes.OuterState(state["theta"], state["meta_opt_state"],
                       state["particles"][str(p)], state["key"],
                       state["step"])
  os_, m = fn(os_)
  parts = dict(state["particles"], **{str(p): os_.particles})
  new = dict(theta=os_.theta, meta_opt_state=os_.meta_opt_state, key=os_.key,
             step=os_.step, particles=parts)
  return new, {k: _finite(v) for k, v in jax.device_get(m).items()} | {
      "prime": p}


def _finite(v) -> Optional[float]:
  """A JSON-able float: None for NaN or inf (e.g. the variance of 1 pair)."""
  v = float(v)
  return v if np.isfinite(v) else None


def _probe(args, cf, theta) -> Dict[str, Any]:
  """The unperturbed rule on fresh seeds (1000, 1001, ...) of every
  training task at the first prime, ``--probe-steps`` steps: the means of
  :func:`ngrok_jax.rule_tasks.probe`'s measures and, per run (task-major),
  the steps to 95% test accuracy (``probe_steps_to_95``; None: not within
  the probe; the same seeds at every probe, so probes pair by run)."""
  p = cf["primes"][0]
  tasks = cf["inner"][p].tasks
  n = args.probe_seeds
  every = 25 if args.probe_steps >= 100 else max(1, args.probe_steps // 4)
  r = rt.probe(cf["inner"][p], cf["rule"], theta,
               [1000 + i for i in range(n)] * len(tasks),
               steps=args.probe_steps, every=every,
               task_index=np.repeat(np.arange(len(tasks)), n))
  row = {("probe_" + k if not k.startswith("dist") else k): _finite(
      np.mean(v)) for k, v in r.items()
         if k not in ("test_acc_curve", "curve_steps")}
  row["probe_steps_to_95"] = rt.steps_to(r, 0.95)
  return row


def plot(out: str, rows: List[dict]) -> Optional[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  st = [r for r in rows if "meta_loss" in r]
  pr = [r for r in rows if "dist_adam" in r]
  fig, ax = plt.subplots(1, 3, figsize=(14, 4))
  x = [r["outer_step"] for r in st]
  ax[0].plot(x, [r["meta_loss"] for r in st], ".", ms=3)
  ax[0].set(xlabel="outer step", ylabel="mean held-out (meta) loss")
  ax[1].semilogy(x, [r["grad_var"] if r["grad_var"] else np.nan
                     for r in st], ".", ms=3)
  ax[1].set(xlabel="outer step", ylabel="estimator variance (trace)")
  if pr:
    xp = [r["outer_step"] for r in pr]
    ax[2].plot(xp, [r["dist_adam"] for r in pr], "o-", label="from Adam")
    ax[2].plot(xp, [r["dist_rescale"] for r in pr], "s-",
               label="from rescaling")
    ax[2].legend()
  ax[2].set(xlabel="outer step", ylabel="update distance (per-tensor RMS)")
  fig.tight_layout()
  os.makedirs(os.path.join(out, "plots"), exist_ok=True)
  path = os.path.join(out, "plots", "meta_train.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def run(args) -> Dict[str, Any]:
  """Meta-trains (resuming the newest good checkpoint in ``args.out``).

  Every flag and the folder are checked before the first write; the
  folder is locked (:class:`ngrok_jax.runfolder.Guard`) until the end and
  left as it was if the start fails.

  Returns:
    ``dict(state, rows)``: the final state and every metrics row.

  Raises:
    ValueError: a bad flag or folder (``FolderBusy``: another process
      writes it).
    RunInterrupted: SIGINT/SIGTERM, after a checkpoint.
  """
  cf = configs(args)
  saved = {k: v for k, v in vars(args).items() if k not in NOT_SAVED}
  if saved.get("wd") is None:  # folders from before --wd
    saved.pop("wd", None)
  if saved.get("accumulate") == 1:  # and before --accumulate
    saved.pop("accumulate", None)
  if not saved.get("synchronized"):  # and before --synchronized
    saved.pop("synchronized", None)
  text = json.dumps(saved, indent=2, allow_nan=False)
  check_folder(args.out, text)
  state = init_state(args, cf)  # what the model refuses fails here
  with runfolder.Guard(args.out), runfolder.Noise(args.out):
    check_folder(args.out, text)  # again, now that the folder is ours
    if not os.path.exists(os.path.join(args.out, CONFIG)):
      atomic_write(os.path.join(args.out, CONFIG), text)
    return _train(args, cf, state)


class MetaEngine:
  """Meta-training as the runner's loop drives it
  (:class:`ngrok_jax.runner.Engine`): a chunk is one outer step (with the
  starting rule's probe before the first and a probe every
  ``--probe-every``); a checkpoint holds :func:`saved_part` and how many
  metrics rows it covers (``num_rows``), under ``--synchronized`` at epoch
  ends only."""

  def __init__(self, args, cf):
    self.args, self.cf = args, cf

  def advance(self, state, step: int, n: int):
    args, cf, rows = self.args, self.cf, []
    if args.probe_every and step == 0:  # the starting rule
      rows.append(dict(outer_step=0, **_probe(args, cf, state["theta"])))
    for s in range(step, step + n):
      t0, c0 = time.perf_counter(), time.process_time()
      state, m = outer_step(args, cf, state)
      rows.append(dict(outer_step=s + 1, seconds=time.perf_counter() - t0,
                       cpu_seconds=time.process_time() - c0, **m))
      if args.probe_every and (s + 1) % args.probe_every == 0:
        rows.append(dict(outer_step=s + 1, **_probe(args, cf, state["theta"])))
    return state, rows

  def checkpoint(self, chunk):
    if self.args.synchronized and chunk.step % epoch_length(self.args):
      return None  # particles are not saved: only at an epoch's end
    return saved_part(self.args, chunk.state), dict(
        num_rows=len(chunk.history), wall_s=chunk.wall_time)


def _meta_loss(chunk) -> str:
  m = [r["meta_loss"] for r in chunk.rows if r.get("meta_loss") is not None]
  return f"meta loss {m[-1]:.3f}" if m else ""


def _train(args, cf, state) -> Dict[str, Any]:
  """:func:`run` once the folder is locked and checked: the runner's loop
  (:func:`ngrok_jax.runner.run_chunks`) drives :class:`MetaEngine` with the
  runner's hooks (metrics appended, then the checkpoint; progress; stop
  signals; the time limit)."""
  engine = MetaEngine(args, cf)
  with Checkpointer(os.path.join(args.out, "checkpoints")) as ckpt, \
      StopFlag() as stop:
    got = ckpt.restore_latest(saved_part(args, state), report=lambda m: print(
        f"meta_train: {m}", file=sys.stderr))
    start, wall = 0, 0.0
    if got is not None:
      start, state, meta = got
      wall = float(meta["wall_s"])
    rows = rows_of(args.out, meta if got else dict(num_rows=0), start)

    def stopped(chunk, name):
      ckpt.wait()
      last = ckpt.manager.latest_step() or 0
      return (f"{name} received: stopped at outer step {chunk.step}/"
              f"{chunk.steps}, " + (
                  "checkpoint saved" if last == chunk.step else
                  f"the last checkpoint is outer step {last} (an epoch end)")
              + "; rerun the command to continue")
    hooks = [ProgressBar(args.outer_steps, min(start, args.outer_steps),
                         "meta-train", not args.no_progress,
                         unit="outer step", postfix=_meta_loss),
             TimeLimit(args.max_minutes, stop,
                       lambda chunk: engine.checkpoint(chunk) is not None),
             MetricsWriter(args.out),
             CheckpointSaver(ckpt, args.checkpoint_every, stop, {},
                             engine.checkpoint),
             StopOnSignal(stop, args.out, True, stopped)]
    state, last = run_chunks(engine, "meta-train", state, start,
                             args.outer_steps, 1, rows, wall, hooks, args.out)
    wall = last.wall_time if last is not None else wall
  save_rule(args.out, cf["rule"], state["theta"])
  if not args.no_plots and rows:
    plot(args.out, rows)
  return dict(state=state, rows=rows, wall_s=wall)


def main(argv=None) -> None:
  args = parser().parse_args(argv)
  try:
    out = run(args)
  except Exception as e:  # noqa: BLE001 - one line each (error_exit)
    sys.exit(error_exit(e))
  st = [r for r in out["rows"] if "meta_loss" in r]
  if st:
    print(f"{len(st)} outer steps, {np.median([r['seconds'] for r in st]):.2f}"
          f" s per outer step (median), last meta loss "
          f"{st[-1]['meta_loss']:.4f}; wrote {args.out}")


if __name__ == "__main__":
  main()
