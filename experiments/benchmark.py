"""Step-time, compile-time and memory benchmark of the NeuralGrok trainer.

Times (after warm-up, median of ``--repeats`` calls of ``--steps`` scanned
steps, divided by the number of steps):

* ``adam_step``: the plain Adam step (method ``adam``, same model/batch);
* ``inner_step``: the NeuralGrok inner step alone (batch, grad, amplifier,
  clip, Adam): method ``neuralgrok-frozen`` (the same step, never a meta
  step);
* ``meta_step``: the extra cost of one meta step, measured as
  ``neuralgrok`` with ``meta_every=1`` (inner + meta on every step) minus the
  inner step;
* ``amortised_step``: the real training program, ``train_steps`` with the
  meta step every T steps (the number of steps per call is a multiple of T);
  ``inner + meta/T`` is also reported as ``amortised_sum`` for comparison;
* ``compile``: seconds to lower and compile the training program (once);
* ``grouped_step``: the amortised step with the seeds run in groups
  (``train_steps(..., seed_group=G)``, ``--seed-group``), for S > 1.

Each timing record carries the compiled program's memory (XLA memory
analysis: arguments + outputs + temporaries - aliased), ``peak_bytes``.

``--memory`` adds a compile-only memory analysis of the meta step for the
1152-wide amplifier (dense, dense with ``amp_chunk``, pwl) at several seed
counts; ``--precision`` adds the relative error of the meta-gradient with
bfloat16 amplifier matmuls against float32.

Usage::

    python experiments/benchmark.py                  # full table
    python experiments/benchmark.py --quick --json /tmp/bench.json
    python experiments/benchmark.py --memory --precision --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import optax  # noqa: E402

from ngrok_jax import train as train_lib  # noqa: E402
from ngrok_jax.amplifier import amplify  # noqa: E402
from ngrok_jax import seed_step  # noqa: E402
from ngrok_jax.train import TrainConfig  # noqa: E402
from ngrok_jax.trainer import Trainer  # noqa: E402

# Seconds per step of the authors' reference PyTorch code (NeuralOptGrok,
# a+b mod 97 with amplifier 1-128-128-1 and T=3, and its hard-coded
# a*c+b*d-e mod 7 with depth 4, 1-1152-1, T=2) measured on this project's
# 2-core CPU with autograd anomaly detection off.
REFERENCE_SECONDS = {"a+b": {"adam_step": 0.09, "amortised_step": 0.7},
                     "a*c+b*d-e": {"amortised_step": 11.6}}

CONFIGS = {
    "a+b": dict(task="a+b", p=97, depth=2, dim=128, heads=4, batch_size=512,
                amp_hidden=(128, 128), meta_every=3, wd=1e-3),
    "a*c+b*d-e": dict(task="a*c+b*d-e", p=7, depth=4, dim=128, heads=4,
                      batch_size=512, amp_hidden=(1152,), meta_every=2,
                      wd=1e-3),
}
QUICK_CONFIGS = {
    "a+b": dict(task="a+b", p=23, depth=1, dim=32, heads=2, batch_size=64,
                amp_hidden=(16, 16), meta_every=3, wd=1e-3),
    "a*c+b*d-e": dict(task="a*c+b*d-e", p=7, depth=1, dim=32, heads=2,
                      batch_size=64, amp_hidden=(64,), meta_every=2, wd=1e-3),
}


def device_name() -> str:
  d = jax.devices()[0]
  kind = getattr(d, "device_kind", d.platform)
  if d.platform == "cpu":
    return f"cpu ({kind}, {os.cpu_count()} cores, {platform.machine()})"
  return f"{d.platform} ({kind}) x{jax.local_device_count()}"


def memory_bytes(compiled) -> Dict[str, Optional[int]]:
  """XLA's compiled memory analysis (None where the backend gives none)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pragma: no cover - backend without analysis
    m = None
  if m is None:
    return dict(peak_bytes=None, temp_bytes=None, argument_bytes=None)
  arg, out = m.argument_size_in_bytes, m.output_size_in_bytes
  tmp, alias = m.temp_size_in_bytes, m.alias_size_in_bytes
  return dict(peak_bytes=int(arg + out + tmp - alias), temp_bytes=int(tmp),
              argument_bytes=int(arg))


def abstract_state(trainer: Trainer, num_seeds: int):
  """ShapeDtypeStructs of ``trainer.init`` for ``num_seeds`` seeds (cheap)."""
  state, data = trainer.init(seeds=[0])

  def widen(x):
    return jax.ShapeDtypeStruct((num_seeds,) + x.shape[1:], x.dtype)
  st = state._replace(seeds=jax.tree.map(widen, state.seeds),
                      step=jax.ShapeDtypeStruct(state.step.shape,
                                                state.step.dtype))
  da = data._replace(
      inputs=jax.ShapeDtypeStruct(data.inputs.shape, data.inputs.dtype),
      labels=jax.ShapeDtypeStruct(data.labels.shape, data.labels.dtype),
      train=widen(data.train), outer=widen(data.outer), test=widen(data.test))
  return st, da


class Program:
  """One compiled ``train_steps`` program, timed per step."""

  def __init__(self, cfg: TrainConfig, num_seeds: int, steps: int,
               seed_group: Optional[int] = None):
    self.cfg, self.steps = cfg, steps
    amp = (train_lib.init_amplifier(cfg)
           if cfg.record.needs_trained_amplifier else None)
    self.state, self.data = train_lib.init(cfg, list(range(num_seeds)),
                                           amp_params=amp)
    t0 = time.perf_counter()
    lowered = train_lib.programs(cfg).train_steps.lower(
        self.state, self.data, num_steps=steps, seed_group=seed_group)
    self.compiled = lowered.compile()
    self.compile_seconds = time.perf_counter() - t0
    self.memory = memory_bytes(self.compiled)

  def run_once(self) -> float:
    t0 = time.perf_counter()
    self.state, out = self.compiled(self.state, self.data)
    jax.block_until_ready((self.state, out))
    return (time.perf_counter() - t0) / self.steps

  def time(self, repeats: int, warmup: int = 1) -> List[float]:
    for _ in range(warmup):
      self.run_once()
    return [self.run_once() for _ in range(repeats)]


def _record(config_name, seeds, what, times, device, **extra):
  rec = dict(config=config_name, seeds=seeds, what=what,
             seconds=float(statistics.median(times)) if times else None,
             device=device)
  if times:
    rec["all_seconds"] = [float(t) for t in times]
  rec.update(extra)
  return rec


def bench_config(name: str, base: Dict[str, Any], seeds: Sequence[int],
                 repeats: int, steps: int, amp_method: str, device: str,
                 log=print, seed_group: Optional[int] = 1
                 ) -> List[Dict[str, Any]]:
  """Timing records for one configuration and each seed count.

  All programs (4 per seed count) are compiled first; then each repeat runs
  every program once, so that load from other processes on a shared machine
  hits all of them alike and ratios (NG/Adam, S=8/S=1) stay meaningful.
  """
  records = []
  T = base["meta_every"]
  steps = max(T, (steps // T) * T)  # a whole number of meta periods
  adam = TrainConfig(**{**base, "method": "adam"}).validate()
  ng = TrainConfig(**{**base, "method": "neuralgrok",
                      "amp_method": amp_method}).validate()
  frozen = dataclasses.replace(ng, method="neuralgrok-frozen")
  every = dataclasses.replace(ng, meta_every=1)
  progs = {}
  for S in seeds:
    progs[S] = {
        "adam_step": Program(adam, S, steps),
        "inner_step": Program(frozen, S, steps),
        "inner_meta": Program(every, S, steps),
        "amortised_step": Program(ng, S, steps),
    }
    if S > 1 and seed_group is not None and train_lib.group_size(
        S, seed_group) < S:
      progs[S]["grouped_step"] = Program(ng, S, steps, seed_group)
    for p in progs[S].values():
      p.time(0, warmup=1)
  times = {S: {k: [] for k in progs[S]} for S in seeds}
  for _ in range(repeats):
    for S in seeds:
      for k, p in progs[S].items():
        times[S][k].append(p.run_once())
  for S in seeds:
    common = dict(steps_per_call=steps, repeats=repeats,
                  amp_method=amp_method, amp_hidden=list(base["amp_hidden"]),
                  meta_every=T)
    t, pr = times[S], progs[S]
    meta = [a - b for a, b in zip(t["inner_meta"], t["inner_step"])]
    summed = [i + m / T for i, m in zip(t["inner_step"], meta)]
    recs = []
    for k in ("adam_step", "inner_step", "amortised_step", "grouped_step"):
      if k in t:
        extra = dict(seed_group=train_lib.group_size(S, seed_group)) if (
            k == "grouped_step") else {}
        recs.append(_record(name, S, k, t[k], device, **common, **extra,
                            **pr[k].memory))
    recs.append(_record(name, S, "meta_step", meta, device, **common,
                        **pr["inner_meta"].memory))
    recs.append(_record(name, S, "amortised_sum", summed, device, **common))
    recs.append(_record(name, S, "compile",
                        [pr["amortised_step"].compile_seconds], device,
                        **common, adam_compile_seconds=
                        pr["adam_step"].compile_seconds))
    for r in recs:
      if r.get("all_seconds"):
        r["min_seconds"] = min(r["all_seconds"])
    records += recs
    log(f"  {name} S={S}: " + ", ".join(
        f"{r['what']}={r['seconds']*1e3:.1f}ms" for r in recs))
  return records


# --------------------------------------------------------------- memory
def meta_memory(base: Dict[str, Any], seeds: Sequence[int],
                variants: Sequence[Dict[str, Any]], device: str,
                log=print) -> List[Dict[str, Any]]:
  """Compile-only memory analysis of one step with a meta step."""
  records = []
  for var in variants:
    # meta_every=1: every step has a meta step
    cfg = TrainConfig(**{**base, "method": "neuralgrok", **var,
                         "meta_every": 1}).validate()
    tr = Trainer(cfg)
    for S in seeds:
      st, da = abstract_state(tr, S)
      t0 = time.perf_counter()
      try:
        comp = train_lib.programs(cfg).train_steps.lower(
            st, da, num_steps=1).compile()
        mem = memory_bytes(comp)
        err = None
      except Exception as e:  # e.g. the backend refuses the allocation
        mem, err = dict(peak_bytes=None, temp_bytes=None,
                        argument_bytes=None), f"{type(e).__name__}: {e}"[:300]
      rec = dict(config=base["task"], seeds=S, what="meta_memory",
                 seconds=None, device=device,
                 compile_seconds=time.perf_counter() - t0,
                 amp_hidden=list(base["amp_hidden"]), **var, **mem)
      if err:
        rec["error"] = err
      records.append(rec)
      gb = (mem["peak_bytes"] or float("nan")) / 2**30
      log(f"  memory {base['task']} {var} S={S}: peak {gb:.2f} GiB "
          f"(temp {(mem['temp_bytes'] or float('nan')) / 2**30:.2f} GiB)")
  return records


def meta_objective(tr: Trainer, s, g, ox, oy):
  """phi -> the outer loss after the SGD look-ahead (the meta objective of
  ``ngrok_jax.neuralgrok``), for one seed's state ``s`` and gradient ``g``."""
  hp = s.hparams

  def objective(phi):
    ga = amplify(g, lambda v: tr.amplifier.apply(phi, v), hp["c"])
    upd, _ = optax.sgd(hp["lookahead_lr"]).update(ga, None)
    return tr.loss_fn(optax.apply_updates(s.params, upd), ox, oy)
  return objective


# ------------------------------------------------------------ precision
def meta_grad_precision(base: Dict[str, Any], device: str, seeds=(0, 1, 2),
                        log=print) -> List[Dict[str, Any]]:
  """Relative error of d outer / d phi: bf16 dense, pwl vs float32 dense."""
  records = []
  grads = {}
  # dense variants in rematerialised blocks so that 1152-wide fits in RAM
  variants = {"dense_f32": dict(amp_method="dense", amp_dtype="float32",
                                amp_chunk=65536),
              "dense_bf16": dict(amp_method="dense", amp_dtype="bfloat16",
                                 amp_chunk=65536),
              "pwl_f32": dict(amp_method="pwl", amp_dtype="float32")}
  for key, var in variants.items():
    tr = Trainer(TrainConfig(**{**base, "method": "neuralgrok", **var}))
    state, data = tr.init(seeds=list(seeds))

    def mg(s, train_idx, outer_idx, tr=tr, data=data):
      x, y, w = seed_step.batch_of(tr.config, s.key, train_idx, 0, data)
      g = jax.grad(tr.loss_fn)(s.params, x, y, w)
      ox, oy = data.inputs[outer_idx], data.labels[outer_idx]
      return jax.grad(meta_objective(tr, s, g, ox, oy))(s.amp_params)
    grads[key] = jax.jit(jax.vmap(mg))(state.seeds, data.train, data.outer)
  ref = grads["dense_f32"]
  for key in ("dense_bf16", "pwl_f32"):
    for i, sd in enumerate(seeds):
      num = sum(float(jnp.sum((a[i] - b[i]) ** 2)) for a, b in zip(
          jax.tree.leaves(grads[key]), jax.tree.leaves(ref)))
      den = sum(float(jnp.sum(b[i] ** 2)) for b in jax.tree.leaves(ref))
      a_flat = np.concatenate([np.ravel(a[i]) for a in
                               jax.tree.leaves(grads[key])])
      r_flat = np.concatenate([np.ravel(b[i]) for b in jax.tree.leaves(ref)])
      cos = float(a_flat @ r_flat / (np.linalg.norm(a_flat) *
                                      np.linalg.norm(r_flat) + 1e-30))
      rel = float(np.sqrt(num / den)) if den > 0 else float("nan")
      records.append(dict(config=base["task"], seeds=1, seed=sd,
                          what="meta_grad_rel_err", seconds=None,
                          device=device, variant=key, reference="dense_f32",
                          rel_err=rel, cosine=cos,
                          amp_hidden=list(base["amp_hidden"])))
      log(f"  meta-grad {base['task']} {key} vs dense_f32 seed {sd}: "
          f"rel err {rel:.2e}, cosine {cos:.6f}")
  return records


# -------------------------------------------------------------- profile
def _median_time(fn, args, repeats):
  out = fn(*args)
  jax.block_until_ready(out)
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return ts


def profile_components(name: str, base: Dict[str, Any], device: str,
                       repeats: int = 7, amp_method: str = "pwl",
                       log=print) -> List[Dict[str, Any]]:
  """Times the pieces of one seed's step, each as its own jitted program."""
  tr = Trainer(TrainConfig(**{**base, "method": "neuralgrok",
                              "amp_method": amp_method}))
  cfg = tr.config
  state, data = tr.init(seeds=[0])
  s = jax.tree.map(lambda x: x[0], state.seeds)
  tidx, oidx = data.train[0], data.outer[0]
  x, y, w = seed_step.batch_of(cfg, s.key, tidx, 0, data)
  g = jax.grad(tr.loss_fn)(s.params, x, y, w)
  ox, oy = data.inputs[oidx], data.labels[oidx]
  flat = jnp.concatenate([jnp.ravel(l) for l in jax.tree.leaves(g)])
  amp_apply = tr.amplifier.apply
  adam_cfg = dataclasses.replace(cfg, method="adam")
  adam_opt = train_lib.optimizer(adam_cfg, s.hparams)
  adam_state = adam_opt.init(s.params)
  tx = train_lib.optimizer(cfg, s.hparams)
  objective = meta_objective(tr, s, g, ox, oy)
  losses = dict(train_loss=lambda p: tr.loss_fn(p, x, y, w),
                outer_loss=lambda p: tr.loss_fn(p, ox, oy))

  pieces = {
      "batch_sampling": (lambda k, t: seed_step.batch_of(cfg, k, t, 3, data),
                         (s.key, tidx)),
      "transformer_fwd_bwd": (jax.value_and_grad(tr.loss_fn), (s.params, x, y)),
      "amplifier_scores": (amp_apply, (s.amp_params, flat)),
      "amplify_total": (lambda phi, g: amplify(
          g, lambda v: amp_apply(phi, v), 1.0), (s.amp_params, g)),
      "softmax_normalize_only": (lambda g: amplify(
          g, lambda v: v * 0.5, 1.0), (g,)),
      "clip_adam_update": (lambda g, st, p: adam_opt.update(g, st, p),
                           (g, adam_state, s.params)),
      "inner_update_total": (lambda g, st, p: tx.update(
          g, st, p, meta_step=False), (g, s.opt_state, s.params)),
      "update_with_meta_step": (lambda g, st, p: tx.update(
          g, st, p, meta_step=True, **losses), (g, s.opt_state, s.params)),
      "amplifier_scores_grad": (jax.grad(lambda phi, v: jnp.sum(
          amp_apply(phi, v) * v)), (s.amp_params, flat)),
      "meta_grad": (jax.grad(objective), (s.amp_params,)),
      "outer_loss_fwd": (objective, (s.amp_params,)),
      "divergence_check": (lambda p: jnp.all(jnp.stack(
          [jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(p)])),
          (s.params,)),
  }
  records = []
  jitted = {k: (jax.jit(fn), args) for k, (fn, args) in pieces.items()}
  for fn, args in jitted.values():  # compile + warm up
    jax.block_until_ready(fn(*args))
  times = {k: [] for k in jitted}
  for _ in range(repeats):  # interleaved, so that load hits all alike
    for k, (fn, args) in jitted.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[k].append(time.perf_counter() - t0)
  for what in pieces:
    ts = times[what]
    rec = _record(name, 1, "profile/" + what, ts, device,
                  amp_method=amp_method, components=int(flat.shape[0]))
    records.append(rec)
    log(f"  profile {name} {what}: {rec['seconds'] * 1e3:.2f} ms")
  return records


# ----------------------------------------------------------------- table
def table(records: List[Dict[str, Any]]) -> str:
  rows = {}
  for r in records:
    if r["seconds"] is None or r["what"].startswith(("library_",
                                                       "reference_")):
      continue
    rows.setdefault((r["config"], r["seeds"]), {})[r["what"]] = r
  cols = ["adam_step", "inner_step", "meta_step", "amortised_step",
          "amortised_sum", "grouped_step", "compile"]
  head = (f"| config | S | " + " | ".join(
      c + (" (s)" if c == "compile" else " (ms)") for c in cols)
      + " | NG/Adam | peak MiB |")
  lines = [head, "|" + "---|" * (len(cols) + 4)]
  for (cfg, S), d in rows.items():
    vals = []
    for c in cols:
      if c not in d:
        vals.append("-")
      elif c == "compile":
        vals.append(f"{d[c]['seconds']:.1f}")
      else:
        vals.append(f"{d[c]['seconds'] * 1e3:.1f}")
    ratio = (d["amortised_step"]["seconds"] / d["adam_step"]["seconds"]
             if "amortised_step" in d and "adam_step" in d else float("nan"))
    peak = d.get("amortised_step", {}).get("peak_bytes")
    lines.append(f"| {cfg} | {S} | " + " | ".join(vals) +
                 f" | {ratio:.2f} | "
                 f"{'-' if peak is None else f'{peak / 2**20:.0f}'} |")
  return "\n".join(lines)


def targets(records: List[Dict[str, Any]]) -> List[str]:
  """The issue's ratio targets, evaluated on these records."""
  get = {(r["config"], r["seeds"], r["what"]): r["seconds"] for r in records
         if r["seconds"] is not None}
  mins = {(r["config"], r["seeds"], r["what"]): r["min_seconds"]
          for r in records if r.get("min_seconds")}
  out = []
  a = get.get(("a+b", 1, "amortised_step"))
  b = get.get(("a+b", 1, "adam_step"))
  if a and b:
    out.append(f"a+b amortised NeuralGrok / Adam step = {a / b:.2f} "
               f"(target <= 2.5: {'met' if a / b <= 2.5 else 'NOT met'})")
  ss = sorted({k[1] for k in get if k[0] == "a+b"})
  if 1 in ss and max(ss) > 1:
    S = max(ss)
    a8 = get.get(("a+b", S, "amortised_step"))
    if a and a8:
      r = a8 / a
      out.append(f"a+b S={S} / S=1 amortised step = {r:.2f} "
                 f"(target <= {S}: {'met' if r <= S else 'NOT met'})")
      m1, mS = mins.get(("a+b", 1, "amortised_step")), mins.get(
          ("a+b", S, "amortised_step"))
      if m1 and mS:
        out.append(f"  (fastest repeats: S={S} / S=1 = {mS / m1:.2f})")
    g8 = get.get(("a+b", S, "grouped_step"))
    if a and g8:
      r = g8 / a
      out.append(f"a+b S={S} in seed groups / S=1 amortised step = {r:.2f} "
                 f"(target <= {S}: {'met' if r <= S else 'NOT met'})")
  h = get.get(("a*c+b*d-e", 1, "amortised_step"))
  if h:
    sp = REFERENCE_SECONDS["a*c+b*d-e"]["amortised_step"] / h
    out.append(f"a*c+b*d-e amortised step {h:.3f} s: {sp:.0f}x faster than "
               f"the reference 11.6 s (target >= 20x: "
               f"{'met' if sp >= 20 else 'NOT met'})")
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="tiny models, few repeats: a CI smoke run")
  ap.add_argument("--json", metavar="PATH", help="write the records here")
  ap.add_argument("--configs", default="a+b,a*c+b*d-e",
                  help="comma-separated subset of: " + ", ".join(CONFIGS))
  ap.add_argument("--seeds", default=None,
                  help="seed counts for a+b (default 1,2,4,8; quick: 1,2)")
  ap.add_argument("--repeats", type=int, default=None,
                  help="timed calls per program (default 5; quick: 2)")
  ap.add_argument("--steps", type=int, default=None,
                  help="scanned steps per call (rounded to a multiple of T; "
                       "default 12; quick: 6)")
  ap.add_argument("--amp-method", default="pwl", choices=("pwl", "dense"))
  ap.add_argument("--seed-group", type=int, default=1,
                  help="also time S > 1 seeds in groups of this many "
                       "(grouped_step; default 1: one seed after another)")
  ap.add_argument("--memory", action="store_true",
                  help="compile-only meta-step memory analysis, 1152 wide")
  ap.add_argument("--memory-seeds", default="1,8,64")
  ap.add_argument("--profile", action="store_true",
                  help="time the components of one seed's step separately")
  ap.add_argument("--no-steps", action="store_true",
                  help="skip the step timings (with --memory/--profile/...)")
  ap.add_argument("--precision", action="store_true",
                  help="meta-gradient error of bfloat16 amplifier matmuls")
  ap.add_argument("--reference", action="store_true",
                  help="the paper-add recipe (T 4): NeuralGrok's amortised "
                       "step against the library's Adam step and, with "
                       "--reference-src, the authors' PyTorch code side by "
                       "side (experiments/reference_bench.py)")
  ap.add_argument("--reference-src", default=os.environ.get(
      "NEURALOPTGROK_SRC"), help="the reference's src/ at a7490be (default: "
                                 "$NEURALOPTGROK_SRC)")
  ap.add_argument("--reference-python", default=None,
                  help="a Python with torch for the reference (default: "
                       "$NGROK_TORCH_PYTHON, else this one if it has torch)")
  ap.add_argument("--reference-steps", type=int, default=40,
                  help="steps of each reference run (default 40)")
  ap.add_argument("--reference-seeds", type=int, default=None,
                  help="the library's vmapped seeds besides S=1 (default 8; "
                       "quick: 2)")
  args = ap.parse_args(argv)

  configs = QUICK_CONFIGS if args.quick else CONFIGS
  names = [c for c in args.configs.split(",") if c]
  for n in names:
    if n not in configs:
      ap.error(f"unknown config {n!r}; valid: {', '.join(configs)}")
  seeds = [int(s) for s in (args.seeds or ("1,2" if args.quick else
                                            "1,2,4,8")).split(",")]
  repeats = args.repeats or (2 if args.quick else 5)
  steps = args.steps or (6 if args.quick else 12)
  device = device_name()
  print(f"device: {device}; jax {jax.__version__}; repeats {repeats}; "
        f"steps/call {steps}", flush=True)

  records = []
  if args.reference:
    from experiments import reference_bench
    records += reference_bench.side_by_side(
        quick=args.quick, seeds=args.reference_seeds or (2 if args.quick
                                                          else 8),
        repeats=repeats, device=device, src=args.reference_src,
        python=reference_bench.torch_python(args.reference_python),
        reference_steps=args.reference_steps)
  if args.profile:
    for n in names:
      records += profile_components(n, configs[n], device,
                                    amp_method=args.amp_method)
  for n in names if not args.no_steps else []:
    records += bench_config(n, configs[n], seeds if n == "a+b" else [1],
                            repeats, steps, args.amp_method, device,
                            seed_group=args.seed_group)
  if args.memory:
    base = configs["a*c+b*d-e"]
    mseeds = [int(s) for s in args.memory_seeds.split(",")]
    if args.quick:
      mseeds = [1, 2]
    variants = [dict(amp_method="pwl"), dict(amp_method="dense"),
                dict(amp_method="dense", amp_chunk=16384)]
    records += meta_memory(base, mseeds, variants, device)
  if args.precision:
    for n in names:
      records += meta_grad_precision(configs[n], device,
                                     seeds=(0, 1) if n == "a+b" else (0,))

  print()
  print(table(records))
  for line in targets(records):
    print(line)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(records, f, indent=1)
    print(f"wrote {len(records)} records to {args.json}")
  return records


if __name__ == "__main__":
  main()
