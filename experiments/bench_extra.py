"""The benchmark's optional parts (``experiments/benchmark.py`` ``--memory``,
``--precision``, ``--profile``): the meta step's memory by variant, the
meta-gradient's precision with bfloat16 amplifier matmuls, and the time of
each component of a step."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.bench_common import abstract_state, memory_bytes, record
from ngrok_jax import train as train_lib
from ngrok_jax import amplify
from ngrok_jax import TrainConfig
from ngrok_jax import Trainer

__all__ = ["meta_memory", "meta_objective", "meta_grad_precision",
           "profile_components"]


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
  # a fresh look-ahead state at every meta step, as the library's meta step
  # (optax.sgd is a chain: update needs its init state, not None)
  lookahead = optax.sgd(hp["lookahead_lr"])

  def objective(phi):
    ga = amplify(g, lambda v: tr.amplifier.apply(phi, v), hp["c"])
    upd, _ = lookahead.update(ga, lookahead.init(s.params), s.params)
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
      x, y, w = tr.batch_of(s.key, train_idx, 0, data)
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
  # the inputs of the pieces, each made by one compiled program (op by op,
  # the transformer's backward alone compiled for longer than the profile)
  x, y, w = jax.jit(lambda k, t: tr.batch_of(k, t, 0, data))(
      s.key, tidx)
  g = jax.jit(jax.grad(tr.loss_fn))(s.params, x, y, w)
  ox, oy = data.inputs[oidx], data.labels[oidx]
  flat = jnp.concatenate([jnp.ravel(l) for l in jax.tree.leaves(g)])
  amp_apply = tr.amplifier.apply
  adam_cfg = dataclasses.replace(cfg, method="adam")
  adam_opt = Trainer(adam_cfg).optimizer(s.hparams)
  adam_state = adam_opt.init(s.params)
  tx = tr.optimizer(s.hparams)
  objective = meta_objective(tr, s, g, ox, oy)
  losses = dict(train_loss=lambda p: tr.loss_fn(p, x, y, w),
                outer_loss=lambda p: tr.loss_fn(p, ox, oy))

  pieces = {
      "batch_sampling": (lambda k, t: tr.batch_of(k, t, 3, data),
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
    rec = record(name, 1, "profile/" + what, ts, device,
                  amp_method=amp_method, components=int(flat.shape[0]))
    records.append(rec)
    log(f"  profile {name} {what}: {rec['seconds'] * 1e3:.2f} ms")
  return records
