"""One seed's training step and evaluation, without a seed axis: pure
functions of the (static) :class:`ngrok_jax.TrainConfig` that
:mod:`ngrok_jax.train` vmaps over seeds, scans over steps and jits.

A step: the batch of the step (:func:`batch_of`: ``"epoch"`` or ``"iid"``
batching), the method's optimizer applied to its gradient
(:func:`batch_step`; a seed whose loss or weights stop being finite is
frozen), :func:`scan_seeds` for many steps of every seed; and
:func:`eval_seed`, one seed's metrics.  The state types (``SeedState``,
``Data``) are :mod:`ngrok_jax.train`'s.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from ngrok_jax._src.core import tasks as tasks_lib
from ngrok_jax._src.training.amp_learning import amplifier_learning
from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.training.methods import (cross_entropy_of, loss_fn,
                                             model_of, optimizer,
                                             transform_gradient)
from ngrok_jax._src.core.metrics import (absolute_entropy, fourier_spectrum,
                                         global_norm, key_frequencies)
from ngrok_jax._src.core.model import accuracy, softmax_collapse
from ngrok_jax._src.optim.neuralgrok import is_meta_step

__all__ = ["batch_of", "batch_step", "scan_seeds", "eval_seed"]


def _tree_all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(l)) for l in leaves]))


def batch_of(cfg: TrainConfig, key, train_idx, step, data):
  """The batch of ``step``: tokens, labels and a 0/1 mask (padding rows).

  Args:
    cfg: the configuration (``batch_size``, ``batching``).
    key: the seed's batch PRNG key.
    train_idx: the seed's (n_train,) training indices.
    step: the 0-indexed step number.
    data: the examples (a :class:`ngrok_jax.Data`).

  Returns:
    ``(x, y, w)``: (B, L) tokens, (B,) labels, (B,) 0/1 row mask.
  """
  n = train_idx.shape[0]
  b = min(cfg.batch_size, n)
  if cfg.batching == "iid":
    sel = jax.random.choice(jax.random.fold_in(key, step), n, (b,),
                            replace=False)
    w = jnp.ones((b,), jnp.float32)
  else:  # "epoch": one permutation per epoch, the last batch short
    per_epoch = -(-n // b)
    epoch, k = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    perm = jnp.concatenate([perm, jnp.zeros((per_epoch * b - n,), perm.dtype)])
    sel = jax.lax.dynamic_slice(perm, (k * b,), (b,))
    w = (k * b + jnp.arange(b) < n).astype(jnp.float32)
  idx = train_idx[sel]
  return data.inputs[idx], data.labels[idx], w


def batch_step(cfg: TrainConfig, s, x, y, w, outer_x, outer_y, step):
  """One training step of one seed on the given batch (no seed axis).

  ``x`` (B, L) tokens, ``y`` (B,) labels, ``w`` (B,) 0/1 row mask (or
  ``None``); ``outer_x``, ``outer_y``: the outer split; ``step``: the
  0-indexed step number (the clock of the meta steps: passed to the
  amplifier methods' transformation as its ``count``).  Returns
  the new state and ``dict(loss, outer_loss)`` (``outer_loss`` NaN on
  steps without a meta step).  A seed whose loss or weights stop being
  finite is frozen from then on (``diverged_at``).

  Args:
    cfg: the configuration.
    s: the seed's :class:`ngrok_jax.SeedState`.
    x: (B, L) tokens.
    y: (B,) labels.
    w: (B,) 0/1 row mask, or None.
    outer_x: the outer split's tokens.
    outer_y: the outer split's labels.
    step: the 0-indexed step number.

  Returns:
    ``(state, dict(loss, outer_loss))``.
  """
  rec = cfg.record
  loss, g = jax.value_and_grad(loss_fn, argnums=1)(cfg, s.params, x, y, w)
  tx = optimizer(cfg, s.hparams)
  outer = jnp.full([], jnp.nan, loss.dtype)
  # one clock: the step (shared by the vmapped seeds, so the meta step
  # stays a real branch) is the transformation's count, which decides
  extra = dict(count=step,  # the extra update arguments a method takes
               train_loss=lambda p: loss_fn(cfg, p, x, y, w),
               outer_loss=lambda p: loss_fn(cfg, p, outer_x, outer_y))
  updates, opt_state = tx.update(g, s.opt_state, s.params,
                                 **{k: extra[k] for k in rec.update_args})
  if rec.needs_outer_batch:  # reported on the meta steps of that clock
    meta = is_meta_step(step, cfg.meta_every, cfg.meta_placement)
    outer = jnp.where(meta, opt_state.outer_loss.astype(loss.dtype), outer)
  params = optax.apply_updates(s.params, updates)
  new = s._replace(params=params, opt_state=opt_state)
  ok = jnp.isfinite(loss) & _tree_all_finite(params)
  if rec.learns_amplifier:
    ok &= _tree_all_finite(new.amp_params)
  diverged_at = jnp.where((s.diverged_at < 0) & ~ok, step, s.diverged_at)
  new = jax.tree.map(lambda n, o: jnp.where(diverged_at >= 0, o, n), new, s)
  return new._replace(diverged_at=diverged_at), dict(loss=loss,
                                                      outer_loss=outer)


def _seed_step(cfg, s, train_idx, outer_idx, data, step):
  x, y, w = batch_of(cfg, s.key, train_idx, step, data)
  ox, oy = data.inputs[outer_idx], data.labels[outer_idx]
  return batch_step(cfg, s, x, y, w, ox, oy, step)


def scan_seeds(cfg, seeds, train, outer, shared, step0,
               num_steps: int):
  """``num_steps`` steps of every seed of ``seeds``, vmapped, in one
  ``lax.scan``.

  Args:
    cfg: the configuration.
    seeds: the seeds' state (leading seed axis).
    train: (S, n_train) training indices.
    outer: (S, n_outer) outer indices.
    shared: the data without its per-seed splits.
    step0: the step number of the first step.
    num_steps: how many steps.

  Returns:
    ``(seeds, out)``: the new state and the per-step outputs.
  """

  step_all = jax.vmap(functools.partial(_seed_step, cfg),
                      in_axes=(0, 0, 0, None, None))

  def body(carry, _):
    st, step = carry
    st, out = step_all(st, train, outer, shared, step)
    return (st, step + 1), out

  (seeds, _), out = jax.lax.scan(body, (seeds, step0), None, length=num_steps)
  return seeds, out


def eval_seed(cfg, s, train_idx, outer_idx, test_idx,
              data):
  """The evaluation metrics of one seed (no seed axis): losses and
  accuracies of the three splits, gradient and weight norms and entropies,
  the embedding's Fourier shares, and the amplifier's learning metrics.

  Args:
    cfg: the configuration.
    s: the seed's :class:`ngrok_jax.SeedState`.
    train_idx: its training indices.
    outer_idx: its outer indices.
    test_idx: its test indices.
    data: the examples (a :class:`ngrok_jax.Data`).

  Returns:
    A flat ``{name: scalar}`` dict.
  """
  model, ce = model_of(cfg), cross_entropy_of(cfg)
  out = {}
  for name, idx in (("train", train_idx), ("outer", outer_idx),
                    ("test", test_idx)):
    logits = model.apply(s.params, data.inputs[idx])
    labels = data.labels[idx]
    out[f"{name}/loss"] = ce(logits, labels)
    out[f"{name}/acc"] = accuracy(logits, labels)
    if name == "train":
      out["train/softmax_collapse"] = softmax_collapse(logits, cfg.loss)
  g = jax.grad(loss_fn, argnums=1)(cfg, s.params, data.inputs[train_idx],
                                   data.labels[train_idx])
  gt = transform_gradient(cfg, s, g)
  out["grad/norm"] = global_norm(g)
  out["grad/age"] = absolute_entropy(g)
  out["grad/norm_transformed"] = global_norm(gt)
  out["grad/age_transformed"] = absolute_entropy(gt)
  out["weights/norm"] = global_norm(s.params)
  out["weights/entropy"] = absolute_entropy(s.params)
  for name in s.params["params"]:
    out[f"grad_norm/{name}"] = global_norm(g["params"][name])
    out[f"weights_norm/{name}"] = global_norm(s.params["params"][name])
  if tasks_lib.TASKS[cfg.task]["arity"] == 2:  # operands are the number tokens 0 .. p-1
    share = fourier_spectrum(s.params["params"]["tok_emb"]["embedding"],
                             cfg.p)
    out["fourier/key_freqs"] = key_frequencies(share)
    for k in range(share.shape[0]):
      out[f"fourier/share_{k + 1}"] = share[k]
  if cfg.record.learns_amplifier:
    out.update(amplifier_learning(cfg, s, g, gt))
  out["diverged_at"] = s.diverged_at
  return out
