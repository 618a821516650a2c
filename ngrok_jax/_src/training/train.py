"""The jitted NeuralGrok bilevel step and the baselines, vmapped over seeds.

A functional core: :func:`init`, :func:`train_steps` (many steps in one
``lax.scan``) and :func:`evaluate` are module-level pure functions of a
(frozen, hashable) :class:`TrainConfig`, jitted with the config's
structural part static (:func:`programs`), so configs that differ only in
numeric hyperparameters share compiled programs.  The transformer
parameters and their optimizer state live in one per-seed
:class:`SeedState`; for NeuralGrok the optimizer state is the
:func:`ngrok_jax.neuralgrok` transformation's, which holds the amplifier
parameters (phi) and the meta optimizer's state.  All seeds are stacked
along a leading axis and advanced by one compiled program;
:class:`ngrok_jax.Trainer` (``nj.Trainer``) is a thin facade::

    trainer = Trainer(TrainConfig(task="a+b", p=23, method="neuralgrok"))
    state, data = trainer.init(seeds=[0, 1, 2, 3])
    state, losses = trainer.train_steps(state, data, 300)   # lax.scan
    metrics = trainer.evaluate(state, data)                 # dict of (S,)

    state, data = init(cfg, seeds=[0, 1])                   # the same, bare
    state, out = train_steps(cfg, state, data, 300)

Each step: the method's optimizer (:func:`ngrok_jax._src.training.methods.optimizer`:
:func:`ngrok_jax.neuralgrok` around clip + Adam, or a baseline's chain)
applied to the batch gradient; for NeuralGrok the step counter, shared by
all seeds, is the one clock of the meta steps (passed as the
transformation's ``count=step``: it decides ``is_meta_step(step, T)`` and
becomes the optimizer state's count), so the ``cond`` stays a real branch
under ``vmap``.  ``seed_group`` runs the
seeds in groups of vmapped seeds one after another (``lax.map``; faster on
a CPU, same results).

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

from ngrok_jax._src.core import tasks as tasks_lib
from ngrok_jax._src.training.config import (HPARAMS, METHODS, TrainConfig,
                                            check_hparam)
from ngrok_jax._src.training.methods import (hparams_of, init_amplifier_params,
                                             loss_fn, model_of, optimizer,
                                             program_config, task_of,
                                             transform_gradient)
from ngrok_jax._src.training.amp_learning import amplifier_learning
from ngrok_jax._src.optim.neuralgrok import NeuralGrokState
from ngrok_jax._src.training.seed_step import batch_step, eval_seed, scan_seeds
from ngrok_jax._src.core.sharding import (CPU_SEED_GROUP, group_size,
                                          resolve_seed_group)

__all__ = ["METHODS", "HPARAMS", "TrainConfig", "SeedState", "TrainState",
           "Data", "init", "train_steps", "evaluate",
           "train_steps_fn", "evaluate_fn",
           "batch_step", "optimizer", "transform_gradient", "loss_fn",
           "amplifier_learning",
           "CPU_SEED_GROUP", "group_size", "resolve_seed_group"]

class SeedState(NamedTuple):
  """Per-seed state; every leaf has a leading seed axis inside TrainState.

  ``opt_state`` is the method's optimizer state: a
  :class:`ngrok_jax.NeuralGrokState` for the amplifier methods (it holds the
  amplifier parameters, see :attr:`amp_params`), else the state of
  ``chain(method transform, Adam)``.
  """
  params: Any
  opt_state: Any
  key: jax.Array  # uint32 (2,) PRNG key for batches
  hparams: Dict[str, jax.Array]
  diverged_at: jax.Array  # int32, -1 while finite

  @property
  def amp_params(self):
    """The amplifier parameters (``{}`` for methods without an amplifier)."""
    if isinstance(self.opt_state, NeuralGrokState):
      return self.opt_state.amplifier_params
    return {}


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


def init_amplifier(cfg: TrainConfig, seed: int = 0):
  return init_amplifier_params(cfg, jax.random.PRNGKey(seed))


# -------------------------------------------------------------------- init
def _init_seed(cfg: TrainConfig, key, hp, amp_params):
  k_model, k_batch, k_amp = jax.random.split(key, 3)
  dummy = jnp.zeros((1, task_of(cfg).seq_len), jnp.int32)
  params = model_of(cfg).init(k_model, dummy)
  if amp_params is None and cfg.record.uses_amplifier:
    amp_params = init_amplifier_params(cfg, k_amp)
  opt_state = optimizer(cfg, hp, amp_params).init(params)
  return SeedState(params, opt_state, k_batch, hp, jnp.array(-1, jnp.int32))


def _init_seeds(cfg, keys, hp, amp_params):
  return jax.vmap(lambda k, h: _init_seed(cfg, k, h, amp_params))(keys, hp)


def _init_seeds_each(cfg, keys, hp, amp_params):  # one amplifier per seed
  return jax.vmap(functools.partial(_init_seed, cfg))(keys, hp, amp_params)


def init(cfg: TrainConfig, seeds: Sequence[int],
         hparams: Optional[Mapping[str, Any]] = None,
         amp_params: Any = None, amp_per_seed: bool = False
         ) -> Tuple[TrainState, Data]:
  """Initial state and data for ``seeds`` (each seed: init, split, batches).

  Args:
    cfg: the configuration (validated here).
    seeds: distinct integer seeds, one per vmapped run.
    hparams: optional ``{name: value or per-seed values}`` overrides.
    amp_params: amplifier parameters to start from (required for
      ``neuralgrok-frozen``), shared by all seeds.
    amp_per_seed: ``amp_params`` has a leading seed axis: seed i starts
      from amplifier i.

  Returns:
    ``(state, data)``: the :class:`TrainState` (every leaf of
    ``state.seeds`` with a leading seed axis, the step counter at 0) and
    the :class:`Data` (the task's examples and each seed's split).
  """
  cfg = cfg.validate()
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("seeds must be a non-empty list of integers")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds must be distinct, got {seeds}")
  if cfg.record.needs_trained_amplifier and amp_params is None:
    raise ValueError(f"method {cfg.method!r} needs amp_params (a "
                     "trained amplifier)")
  hp = hparams_of(cfg, len(seeds), hparams)
  data = make_data(cfg, seeds)
  keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
  if amp_params is not None:
    amp_params = jax.tree.map(jnp.asarray, amp_params)
    want = init_amplifier(cfg)
    lead = (len(seeds),) if amp_per_seed else ()
    if jax.tree.structure(amp_params) != jax.tree.structure(want) or any(
        a.shape != lead + w.shape for a, w in zip(
            jax.tree.leaves(amp_params), jax.tree.leaves(want))):
      raise ValueError("amp_params do not match the configured amplifier "
                       f"(amp_hidden={cfg.amp_hidden}"
                       + (f", one per seed: leading axis {len(seeds)})"
                          if amp_per_seed else ")"))
  if amp_per_seed:
    if amp_params is None:
      raise ValueError("amp_per_seed needs amp_params (one per seed)")
    seeds_state = programs(cfg).init_each(keys, hp, amp_params)
  else:
    seeds_state = programs(cfg).init(keys, hp, amp_params)
  return TrainState(jnp.zeros([], jnp.int32), seeds_state), data


def make_data(cfg: TrainConfig, seeds: Sequence[int]) -> Data:
  """The task's examples and each seed's split (``cfg.split_seed``: one
  split for all)."""
  seeds = [int(s) for s in seeds]
  split_seeds = seeds if cfg.split_seed is None else [cfg.split_seed] * len(
      seeds)
  task = task_of(cfg)
  sp = tasks_lib.make_splits(task, split_seeds, cfg.fractions,
                             pool_outer=cfg.pools_outer)
  return Data(task.inputs, task.labels, sp["train"], sp["outer"], sp["test"])


def seed_state(cfg: TrainConfig, params, amp_params=None, key=None,
               hparams: Optional[Mapping[str, Any]] = None) -> SeedState:
  """One seed's fresh state around given weights (no seed axis).

  For loading weights made elsewhere (e.g. the reference's initial weights)
  and stepping them with :func:`batch_step`.  ``hparams``: overrides of the
  config's numeric hyperparameters (scalars).
  """
  vals = cfg.hparams()
  for k, v in (hparams or {}).items():
    check_hparam(k, v)
    vals[k] = float(v)
  # float64 under jax_enable_x64 (e.g. a float64 golden trace), else float32
  hp = {k: jnp.asarray(np.float64(v)) for k, v in vals.items()}
  if amp_params is None and cfg.record.uses_amplifier:
    amp_params = init_amplifier(cfg)
  return SeedState(params, optimizer(cfg, hp, amp_params).init(params),
                   jax.random.PRNGKey(0) if key is None else key, hp,
                   jnp.array(-1, jnp.int32))


def check_shapes(state: TrainState, data: Data) -> None:
  num_seeds = data.train.shape[0]
  chex.assert_rank(state.step, 0)
  chex.assert_tree_shape_prefix(state.seeds, (num_seeds,))
  chex.assert_equal_shape_prefix([data.train, data.outer, data.test], 1)
  chex.assert_rank([data.train, data.outer, data.test, data.inputs], 2)
  chex.assert_shape(data.labels, (data.inputs.shape[0],))


def train_steps_fn(cfg: TrainConfig, state: TrainState, data: Data,
                   num_steps: int, seed_group: Optional[int] = None):
  """The un-jitted function behind :func:`train_steps`, to be traced inside
  another transformation (``jax.vmap`` over tasks, ``jax.jit``).

  Args:
    cfg: the configuration.
    state: the seeds' state.
    data: the seeds' data.
    num_steps: how many steps (an integer >= 1; static under ``jit``).
    seed_group: seeds per group of the scan, or None for all at once.

  Returns:
    ``(state, out)``: the state after ``num_steps`` and the per-step outputs.
  """
  if isinstance(num_steps, bool) or int(num_steps) != num_steps or (
      num_steps < 1):
    raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
  check_shapes(state, data)
  shared = data._replace(train=None, outer=None, test=None)
  num_seeds = data.train.shape[0]
  g = group_size(num_seeds, seed_group)
  if g == num_seeds:
    seeds, out = scan_seeds(cfg, state.seeds, data.train, data.outer, shared,
                       state.step, num_steps)
  else:  # groups of g vmapped seeds, one group after another
    n = num_seeds // g
    split = lambda x: x.reshape((n, g) + x.shape[1:])
    grouped = jax.tree.map(split, (state.seeds, data.train, data.outer))
    seeds, out = jax.lax.map(
        lambda a: scan_seeds(cfg, *a, shared, state.step, num_steps), grouped)
    seeds = jax.tree.map(lambda x: x.reshape((num_seeds,) + x.shape[2:]),
                         seeds)
    out = jax.tree.map(
        lambda x: jnp.moveaxis(x, 0, 1).reshape(num_steps, num_seeds), out)
  return TrainState(state.step + num_steps, seeds), out


# ---------------------------------------------------------------- evaluate
def evaluate_fn(cfg: TrainConfig, state: TrainState, data: Data
                ) -> Dict[str, jax.Array]:
  """The un-jitted function behind :func:`evaluate`, to be traced inside
  another transformation.

  Args:
    cfg: the configuration.
    state: the seeds' state.
    data: the seeds' data.

  Returns:
    The per-seed evaluation metrics, with ``step``.
  """
  check_shapes(state, data)
  ev = jax.vmap(functools.partial(eval_seed, cfg),
                in_axes=(0, 0, 0, 0, None))
  shared = data._replace(train=None, outer=None, test=None)
  out = ev(state.seeds, data.train, data.outer, data.test, shared)
  out["step"] = state.step
  return out


# ---------------------------------------------------------------- programs
class Programs(NamedTuple):
  """The jitted programs of one config: ``init(keys, hp, amp_params)``
  (one amplifier for all seeds), ``init_each(keys, hp, amp_params)`` (one
  per seed), ``train_steps(state, data, num_steps=, seed_group=)``
  (``num_steps`` and ``seed_group`` static, ``state`` donated),
  ``evaluate(state, data)``."""
  init: Any
  train_steps: Any
  evaluate: Any
  init_each: Any


def programs(cfg: TrainConfig) -> Programs:
  """The compiled programs of ``cfg``, shared by every config with the same
  :func:`ngrok_jax._src.training.methods.program_config`: configs that
  differ only in the numeric hyperparameters of ``HPARAMS`` (per-seed
  arrays in the state) share them, so a new learning rate, weight decay,
  ``c``, ``clip``, ... compiles nothing.

  A bounded cache: the programs of the 4 most recently used keys stay
  alive.  An evicted key's programs are freed with their jit objects
  (each CPU executable holds thousands of memory mappings; keeping every
  config of a long session alive exhausts the kernel's map limit).  Use
  ``programs(cfg).train_steps.lower(...)`` for ahead-of-time compilation.

  Args:
    cfg: the configuration (its per-seed hyperparameters are not read).

  Returns:
    The :class:`Programs` of ``cfg``'s key (the same object for every
    config with that key while it is cached).
  """
  return _programs(program_config(cfg))


@functools.lru_cache(maxsize=4)
def _programs(key: TrainConfig) -> Programs:
  return Programs(
      jax.jit(functools.partial(_init_seeds, key)),
      jax.jit(functools.partial(train_steps_fn, key),
              static_argnames=("num_steps", "seed_group"),
              donate_argnames="state"),
      jax.jit(functools.partial(evaluate_fn, key)),
      jax.jit(functools.partial(_init_seeds_each, key)))


programs.cache_info = _programs.cache_info
programs.cache_clear = _programs.cache_clear


def train_steps(cfg: TrainConfig, state: TrainState, data: Data,
                num_steps: int, seed_group: Optional[int] = None):
  """``num_steps`` steps of all seeds in one ``lax.scan`` (jitted, the
  config's program from :func:`programs`; ``state`` is donated).

  Args:
    cfg: the configuration.
    state: the state from :func:`init` or from the previous call (donated:
      continue from the returned one).
    data: the data from :func:`init`.
    num_steps: the number of steps (a static argument: each new value
      compiles once).
    seed_group: run groups of that many vmapped seeds one after another
      (the largest divisor of S not above it); ``None``: all seeds vmapped
      at once.  The results are the same either way.

  Returns:
    ``(state, out)``: the new state and ``dict(loss, outer_loss)`` of
    shape (num_steps, S) (``outer_loss`` NaN on steps without a meta step).
  """
  return programs(cfg).train_steps(state, data, num_steps=num_steps,
                                   seed_group=seed_group)


def evaluate(cfg: TrainConfig, state: TrainState, data: Data
             ) -> Dict[str, jax.Array]:
  """Metrics of every seed, jitted per config.

  Args:
    cfg: the configuration.
    state: the current state (not donated).
    data: the data from :func:`init`.

  Returns:
    A flat dict of (S,) arrays with slash-separated names (``test/acc``,
    ``train/loss``, ``grad/age``, ...), plus the shared ``step``.
  """
  return programs(cfg).evaluate(state, data)
