"""The jitted NeuralGrok bilevel step and the baselines, vmapped over seeds.

Layout (learned_optimization style): the transformer parameters, their
optimizer state, the amplifier parameters (theta / phi) and the meta
optimizer state live in one per-seed :class:`SeedState`; all seeds are
stacked along a leading axis and advanced by one compiled program::

    trainer = Trainer(TrainConfig(task="a+b", p=23, method="neuralgrok"))
    state, data = trainer.init(seeds=[0, 1, 2, 3])
    state, losses = trainer.train_steps(state, data, 300)   # lax.scan
    metrics = trainer.evaluate(state, data)                 # dict of (S,)

Inner step (every step): g = grad of the batch loss; g -> method transform
(amplifier / rescaling / GrokFast / identity) -> clip (NeuralGrok and
rescaling; the baselines are unclipped by default, as in the reference) ->
Adam (coupled L2 decay, or AdamW) with linear warm-up.

Meta step (NeuralGrok), ``meta_placement``:

* ``"after"`` (default; the authors' final code, NeuralOptGrok a7490be):
  after the inner step of every T-th step (1-indexed steps T, 2T, ...), at
  the *updated* parameters, with the gradient recomputed on the same batch.
* ``"before"``: before the inner step of steps 0, T, 2T, ... (0-indexed), at
  the current parameters, reusing the step's gradient (one forward/backward
  pass fewer per meta step; the description in the paper's algorithm).

Either way: look-ahead theta' = theta + lookahead(G(g; phi)); outer loss =
CE(theta') on the outer split; phi <- Adam(meta_lr, coupled meta_wd) step on
d outer / d phi.  The step counter is shared by all seeds, so the ``cond``
stays a real branch under ``vmap``.

Batches (``batching``): ``"epoch"`` (default, as the reference's shuffled
DataLoader: a new permutation of the training split every epoch, cut into
batches, the last one short; padded to a fixed shape with a 0/1 mask) or
``"iid"`` (every step an independent draw of ``batch_size`` distinct
examples).  Methods without an outer loop train on the outer split too
(``train_on_outer``), as the reference's baselines do.

Hyperparameters that are plain numbers (``HPARAMS``) are per-seed arrays in
the state: changing them, or sweeping them across the seed axis, never
recompiles.  Everything that changes shapes is static in ``TrainConfig``.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngrok_jax import tasks as tasks_lib
from ngrok_jax.amplifier import Amplifier
from ngrok_jax.config import (AMPLIFIER_METHODS, HPARAMS, METHODS,
                              TrainConfig, check_hparam)
from ngrok_jax.metrics import absolute_entropy, global_norm
from ngrok_jax.model import Transformer, accuracy, cross_entropy
from ngrok_jax.transforms import (coupled_adam, grokfast_ema, grokfast_ma,
                                  normalize_gradients, scale_by_amplifier)

__all__ = ["METHODS", "HPARAMS", "TrainConfig", "SeedState", "TrainState",
           "Data", "Trainer"]

class SeedState(NamedTuple):
  """Per-seed state; every leaf has a leading seed axis inside TrainState."""
  params: Any
  opt_state: Any
  amp_params: Any
  meta_opt_state: Any
  key: jax.Array  # uint32 (2,) PRNG key for batches
  hparams: Dict[str, jax.Array]
  diverged_at: jax.Array  # int32, -1 while finite


class TrainState(NamedTuple):
  """The state of all vmapped seeds: the step count shared by the seeds and
  their :class:`SeedState` (leading seed axis on every leaf)."""
  step: jax.Array  # int32 scalar shared by all seeds
  seeds: SeedState


class Data(NamedTuple):
  """The task's examples and each seed's split, as row indices into them.

  ``inputs`` (N, L) and ``labels`` (N,) are shared by all seeds; ``train``
  (S, n_train), ``outer`` (S, n_outer; the held-out batch of the amplifier's
  meta-objective) and ``test`` (S, n_test) hold one row of indices per seed.
  """
  inputs: jax.Array  # (N, L) int32, shared
  labels: jax.Array  # (N,) int32, shared
  train: jax.Array  # (S, n_train) indices
  outer: jax.Array  # (S, n_outer)
  test: jax.Array  # (S, n_test)


def _tree_all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(l)) for l in leaves]))


class Trainer:
  """Pure init / step / evaluate functions for one :class:`TrainConfig`."""

  def __init__(self, config: TrainConfig, task: Optional[tasks_lib.Task] = None):
    self.config = config.validate()
    self.task = task if task is not None else tasks_lib.make_task(
        config.task, config.p)
    self.model = Transformer(self.task.vocab_size, self.task.seq_len,
                             config.dim, config.heads, config.depth,
                             init_style=config.init)
    self.uses_amplifier = config.method in AMPLIFIER_METHODS
    self.has_meta = config.method == "neuralgrok"
    self.amplifier = Amplifier(
        tuple(config.amp_hidden), config.amp_method,
        jnp.bfloat16 if config.amp_dtype == "bfloat16" else jnp.float32,
        config.amp_chunk)
    self.train_steps = jax.jit(self._train_steps,
                               static_argnames=("num_steps", "meta"),
                               donate_argnums=0)
    self.evaluate = jax.jit(self._evaluate)

  # -------------------------------------------------------------- optimizers
  def pre_transform(self, hp) -> optax.GradientTransformationExtraArgs:
    """The method's gradient transform (before clip and Adam)."""
    m = self.config.method
    if m in AMPLIFIER_METHODS:
      return scale_by_amplifier(self.amplifier.apply, None, c=hp["c"])
    if m == "rescale":
      return optax.with_extra_args_support(normalize_gradients(hp["c"]))
    if m == "grokfast-ema":
      return optax.with_extra_args_support(grokfast_ema(hp["alpha"], hp["lamb"]))
    if m == "grokfast-ma":
      return optax.with_extra_args_support(
          grokfast_ma(self.config.window, hp["lamb"]))
    return optax.with_extra_args_support(optax.identity())

  def inner_optimizer(self, hp) -> optax.GradientTransformationExtraArgs:
    cfg = self.config
    return optax.chain(
        self.pre_transform(hp),
        coupled_adam(hp["lr"], hp["wd"], hp["b1"], hp["b2"], hp["eps"],
                     hp["eps_root"], cfg.warmup_steps, hp["clip"],
                     decoupled=cfg.method == "adamw"))

  def lookahead_optimizer(self, hp) -> optax.GradientTransformationExtraArgs:
    if self.config.lookahead == "inner":
      return self.inner_optimizer(hp)
    return optax.chain(
        scale_by_amplifier(self.amplifier.apply, None, c=hp["c"]),
        optax.sgd(hp["lookahead_lr"]))

  def meta_optimizer(self, hp) -> optax.GradientTransformation:
    """PyTorch ``Adam(meta_lr, betas=(b1, b2), weight_decay=meta_wd)`` (the
    reference's meta optimizer: the model's betas and weight decay)."""
    return optax.chain(optax.add_decayed_weights(hp["meta_wd"]),
                       optax.scale_by_adam(b1=hp["b1"], b2=hp["b2"], eps=1e-8),
                       optax.scale(-hp["meta_lr"]))

  # -------------------------------------------------------------------- init
  def default_hparams(self, num_seeds: int,
                      overrides: Optional[Mapping[str, Any]] = None
                      ) -> Dict[str, jax.Array]:
    """Per-seed hyperparameter arrays (S,), with optional per-seed values."""
    hp = self.config.hparams()
    out = {k: np.full((num_seeds,), v, np.float32) for k, v in hp.items()}
    for k, v in (overrides or {}).items():
      check_hparam(k, v)
      arr = np.asarray(v, np.float32)
      if arr.ndim == 0:
        arr = np.full((num_seeds,), arr, np.float32)
      if arr.shape != (num_seeds,):
        raise ValueError(f"hyperparameter {k} needs one value or {num_seeds} "
                         f"values (one per seed), got shape {arr.shape}")
      out[k] = arr
    if self.has_meta and self.config.lookahead == "inner" and np.any(
        out["eps_root"] <= 0):
      raise ValueError("lookahead='inner' needs eps_root > 0 for every seed")
    return {k: jnp.asarray(v) for k, v in out.items()}

  def init_amplifier(self, seed: int = 0):
    return self.amplifier.init(jax.random.PRNGKey(seed),
                               jnp.zeros((1,), jnp.float32))

  def init(self, seeds: Sequence[int], hparams: Optional[Mapping[str, Any]] = None,
           amp_params: Any = None) -> Tuple[TrainState, Data]:
    """Initial state and data for ``seeds`` (each seed: init, split, batches).

    Args:
      seeds: distinct integer seeds, one per vmapped run.
      hparams: optional ``{name: value or per-seed values}`` overrides.
      amp_params: amplifier parameters to start from (required for
        ``neuralgrok-frozen``), shared by all seeds.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
      raise ValueError("seeds must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
      raise ValueError(f"seeds must be distinct, got {seeds}")
    if self.config.method == "neuralgrok-frozen" and amp_params is None:
      raise ValueError("method 'neuralgrok-frozen' needs amp_params (a "
                       "trained amplifier)")
    cfg = self.config
    hp = self.default_hparams(len(seeds), hparams)
    split_seeds = seeds if cfg.split_seed is None else [
        cfg.split_seed] * len(seeds)
    sp = tasks_lib.make_splits(self.task, split_seeds, cfg.fractions,
                               pool_outer=cfg.pools_outer)
    data = Data(self.task.inputs, self.task.labels, sp["train"], sp["outer"],
                sp["test"])
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    if amp_params is not None:
      amp_params = jax.tree.map(jnp.asarray, amp_params)
      expected = jax.tree.structure(self.init_amplifier())
      if jax.tree.structure(amp_params) != expected:
        raise ValueError("amp_params do not match the configured amplifier "
                         f"(amp_hidden={cfg.amp_hidden})")

    def init_one(key, hp_one):
      k_model, k_batch, k_amp = jax.random.split(key, 3)
      dummy = jnp.zeros((1, self.task.seq_len), jnp.int32)
      params = self.model.init(k_model, dummy)
      opt_state = self.inner_optimizer(hp_one).init(params)
      if amp_params is not None:
        amp = amp_params
      elif self.uses_amplifier:
        amp = self.amplifier.init(k_amp, jnp.zeros((1,), jnp.float32))
      else:
        amp = {}
      meta_state = self.meta_optimizer(hp_one).init(amp) if self.has_meta else ()
      return SeedState(params, opt_state, amp, meta_state, k_batch, hp_one,
                       jnp.array(-1, jnp.int32))

    seeds_state = jax.jit(jax.vmap(init_one))(keys, hp)
    return TrainState(jnp.zeros([], jnp.int32), seeds_state), data

  # -------------------------------------------------------------------- step
  def loss_fn(self, params, x, y, w=None):
    """Mean cross-entropy of the batch ``(x, y)``; ``w``: 0/1 row mask."""
    return cross_entropy(self.model.apply(params, x), y, w)

  def _batch(self, key, train_idx, step, data: Data):
    """The batch of ``step``: tokens, labels and a 0/1 mask (padding rows)."""
    n = train_idx.shape[0]
    b = min(self.config.batch_size, n)
    if self.config.batching == "iid":
      sel = jax.random.choice(jax.random.fold_in(key, step), n, (b,),
                              replace=False)
      w = jnp.ones((b,), jnp.float32)
    else:  # "epoch": one permutation per epoch, the last batch short
      per_epoch = -(-n // b)
      epoch, k = step // per_epoch, step % per_epoch
      perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
      perm = jnp.concatenate(
          [perm, jnp.zeros((per_epoch * b - n,), perm.dtype)])
      sel = jax.lax.dynamic_slice(perm, (k * b,), (b,))
      w = (k * b + jnp.arange(b) < n).astype(jnp.float32)
    idx = train_idx[sel]
    return data.inputs[idx], data.labels[idx], w

  def outer_loss(self, s: SeedState, g, phi, outer_x, outer_y):
    """Meta objective: CE on the outer split after a look-ahead step with phi.

    ``theta' = theta + lookahead(G(g; phi))`` at ``s.params``; differentiable
    in ``phi``.
    """
    la = self.lookahead_optimizer(s.hparams)
    la_state = s.opt_state if self.config.lookahead == "inner" else la.init(
        s.params)
    upd, _ = la.update(g, la_state, s.params, amplifier_params=phi)
    return self.loss_fn(optax.apply_updates(s.params, upd), outer_x, outer_y)

  def _meta_step(self, s: SeedState, g, outer_x, outer_y):
    hp = s.hparams
    loss, mg = jax.value_and_grad(
        lambda phi: self.outer_loss(s, g, phi, outer_x, outer_y))(s.amp_params)
    upd, meta_state = self.meta_optimizer(hp).update(mg, s.meta_opt_state,
                                                     s.amp_params)
    return optax.apply_updates(s.amp_params, upd), meta_state, loss

  def seed_state(self, params, amp_params=None, key=None,
                 hparams: Optional[Mapping[str, Any]] = None) -> SeedState:
    """One seed's fresh state around given weights (no seed axis).

    For loading weights made elsewhere (e.g. the reference's initial weights)
    and stepping them with :meth:`batch_step`.  ``hparams``: overrides of the
    config's numeric hyperparameters (scalars).
    """
    vals = self.config.hparams()
    for k, v in (hparams or {}).items():
      check_hparam(k, v)
      vals[k] = float(v)
    # float64 under jax_enable_x64 (e.g. a float64 golden trace), else float32
    hp = {k: jnp.asarray(np.float64(v)) for k, v in vals.items()}
    if amp_params is None:
      amp_params = self.init_amplifier() if self.uses_amplifier else {}
    meta_state = (self.meta_optimizer(hp).init(amp_params) if self.has_meta
                  else ())
    return SeedState(params, self.inner_optimizer(hp).init(params), amp_params,
                     meta_state,
                     jax.random.PRNGKey(0) if key is None else key, hp,
                     jnp.array(-1, jnp.int32))

  def batch_step(self, s: SeedState, x, y, w, outer_x, outer_y, step,
                 meta: Optional[bool] = None):
    """One training step of one seed on the given batch (no seed axis).

    ``x`` (B, L) tokens, ``y`` (B,) labels, ``w`` (B,) 0/1 row mask (or
    ``None``); ``outer_x``, ``outer_y``: the outer split; ``step``: the
    0-indexed step number (decides the warm-up and the meta steps).  Returns
    the new state and ``dict(loss, outer_loss)`` (``outer_loss`` NaN on
    steps without a meta step).

    ``meta`` (static, for profiling): ``None`` runs the meta step on the
    steps ``meta_placement`` says (training); ``False`` never runs it;
    ``True`` runs it on every step.
    """
    cfg = self.config
    loss, g = jax.value_and_grad(self.loss_fn)(s.params, x, y, w)
    amp, meta_state = s.amp_params, s.meta_opt_state
    nan = jnp.full([], jnp.nan, loss.dtype)
    outer = nan
    run_meta = self.has_meta and meta is not False
    T = cfg.meta_every
    if run_meta and cfg.meta_placement == "before":
      do = True if meta else step % T == 0
      amp, meta_state, outer = jax.lax.cond(
          do, lambda: self._meta_step(s, g, outer_x, outer_y),
          lambda: (amp, meta_state, nan))
    updates, opt_state = self.inner_optimizer(s.hparams).update(
        g, s.opt_state, s.params, amplifier_params=amp)
    params = optax.apply_updates(s.params, updates)
    if run_meta and cfg.meta_placement == "after":
      # The reference: a copy of the updated model, the gradient recomputed
      # on the same batch, then the look-ahead and the amplifier's update.
      def after():
        s2 = s._replace(params=params, opt_state=opt_state)
        g2 = jax.grad(self.loss_fn)(params, x, y, w)
        return self._meta_step(s2, g2, outer_x, outer_y)
      do = True if meta else (step + 1) % T == 0
      amp, meta_state, outer = jax.lax.cond(
          do, after, lambda: (amp, meta_state, nan))
    new = s._replace(params=params, opt_state=opt_state, amp_params=amp,
                     meta_opt_state=meta_state)
    ok = jnp.isfinite(loss) & _tree_all_finite(params)
    if self.has_meta:
      ok &= _tree_all_finite(amp)
    diverged_at = jnp.where((s.diverged_at < 0) & ~ok, step, s.diverged_at)
    frozen = diverged_at >= 0
    new = jax.tree.map(lambda n, o: jnp.where(frozen, o, n), new, s)
    new = new._replace(diverged_at=diverged_at)
    return new, dict(loss=loss, outer_loss=outer)

  def seed_step(self, s: SeedState, train_idx, outer_idx, data: Data, step,
                meta: Optional[bool] = None):
    """One training step of one seed (vmapped by ``train_steps``): draws the
    step's batch (``batching``) and applies :meth:`batch_step`."""
    x, y, w = self._batch(s.key, train_idx, step, data)
    ox, oy = data.inputs[outer_idx], data.labels[outer_idx]
    return self.batch_step(s, x, y, w, ox, oy, step, meta)

  def _check_shapes(self, state: TrainState, data: Data):
    num_seeds = data.train.shape[0]
    chex.assert_rank(state.step, 0)
    chex.assert_tree_shape_prefix(state.seeds, (num_seeds,))
    chex.assert_equal_shape_prefix([data.train, data.outer, data.test], 1)
    chex.assert_rank([data.train, data.outer, data.test, data.inputs], 2)
    chex.assert_shape(data.labels, (data.inputs.shape[0],))

  def _train_steps(self, state: TrainState, data: Data, num_steps: int,
                   meta: Optional[bool] = None):
    """``num_steps`` steps of all seeds in one ``lax.scan``.

    ``meta`` (static) is for profiling only, see :meth:`seed_step`: the
    default ``None`` is training; ``False`` times the inner step alone,
    ``True`` the inner step plus a meta step on every step.
    """
    if num_steps < 1:
      raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if meta not in (None, True, False):
      raise ValueError(f"meta must be None, True or False, got {meta!r}")
    self._check_shapes(state, data)
    step_all = jax.vmap(functools.partial(self.seed_step, meta=meta),
                        in_axes=(0, 0, 0, None, None))
    data_shared = data._replace(train=None, outer=None, test=None)

    def body(st: TrainState, _):
      seeds, out = step_all(st.seeds, data.train, data.outer, data_shared,
                            st.step)
      return TrainState(st.step + 1, seeds), out

    return jax.lax.scan(body, state, None, length=num_steps)

  def train_step(self, state: TrainState, data: Data):
    """One step for all seeds (a scan of length 1)."""
    return self.train_steps(state, data, num_steps=1)

  # ---------------------------------------------------------------- evaluate
  def _eval_seed(self, s: SeedState, train_idx, outer_idx, test_idx,
                 data: Data):
    out = {}
    for name, idx in (("train", train_idx), ("outer", outer_idx),
                      ("test", test_idx)):
      logits = self.model.apply(s.params, data.inputs[idx])
      labels = data.labels[idx]
      out[f"{name}/loss"] = cross_entropy(logits, labels)
      out[f"{name}/acc"] = accuracy(logits, labels)
    g = jax.grad(self.loss_fn)(s.params, data.inputs[train_idx],
                               data.labels[train_idx])
    pre = self.pre_transform(s.hparams)
    pre_state = s.opt_state[0]
    gt, _ = pre.update(g, pre_state, s.params, amplifier_params=s.amp_params)
    out["grad/norm"] = global_norm(g)
    out["grad/age"] = absolute_entropy(g)
    out["grad/norm_transformed"] = global_norm(gt)
    out["grad/age_transformed"] = absolute_entropy(gt)
    out["weights/norm"] = global_norm(s.params)
    out["weights/entropy"] = absolute_entropy(s.params)
    for name, sub in s.params["params"].items():
      out[f"grad_norm/{name}"] = global_norm(g["params"][name])
    out["diverged_at"] = s.diverged_at
    return out

  def _evaluate(self, state: TrainState, data: Data) -> Dict[str, jax.Array]:
    self._check_shapes(state, data)
    ev = jax.vmap(self._eval_seed, in_axes=(0, 0, 0, 0, None))
    shared = data._replace(train=None, outer=None, test=None)
    out = ev(state.seeds, data.train, data.outer, data.test, shared)
    out["step"] = state.step
    return out
