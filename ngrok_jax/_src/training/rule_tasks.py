"""Modular-arithmetic inner problems for meta-training a learned rule.

:func:`arith_task` builds an :class:`ngrok_jax.pes.InnerTask` over several
tasks modulo one prime (tasks with one operator token, e.g. ``a+b``,
``a-b``, ``a*b``, ``a+b-a*b``, share the inputs and differ only in their
labels, so a particle's task is an index into stacked labels).  Every
inner run has its own transformer initialisation and its own random split
of the examples into ``train``, ``meta`` (the held-out split of the
meta-objective) and ``test`` (never seen by meta-training; only
:func:`probe` reads it).  Batches are i.i.d. draws from the train split.

:func:`probe` runs one unperturbed inner run with the rule and measures
how far its updates are from Adam's and from rescaling's (Adam on the
per-tensor normalised gradient, :func:`ngrok_jax.normalize_gradients`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngrok_jax._src.core import tasks as tasks_lib
from ngrok_jax._src.optim.learned_rule import (RuleConfig, init_rule_state,
                                               rule_distances, rule_update)
from ngrok_jax._src.core.model import Transformer, accuracy, cross_entropy
from ngrok_jax._src.optim.pes import InnerTask
from ngrok_jax._src.optim.registry import muon_dimension_numbers
from ngrok_jax._src.optim.transforms import normalize_gradients

__all__ = ["ArithConfig", "arith_data", "arith_task", "probe", "steps_to"]


@dataclasses.dataclass(frozen=True)
class ArithConfig:
  """One prime's inner problem (hashable).

  Attributes:
    p: the modulus.
    tasks: task names with one operator token (shared inputs).
    dim, depth, heads: the transformer's size.
    batch_size: i.i.d. training batch per step.
    meta_batch: held-out examples drawn (i.i.d.) from the meta split for
      each step's meta loss (0: the whole meta split).
    fractions: (train, meta, test) fractions of the examples.
  """
  p: int = 47
  tasks: Tuple[str, ...] = ("a+b", "a-b", "a*b", "a+b-a*b")
  dim: int = 64
  depth: int = 1
  heads: int = 4
  batch_size: int = 128
  meta_batch: int = 64
  fractions: Tuple[float, float, float] = (0.4, 0.1, 0.5)

  def __post_init__(self):
    for t in self.tasks:
      if t not in tasks_lib.TASKS:
        raise ValueError(f"unknown task {t!r}; valid tasks: "
                         f"{', '.join(sorted(tasks_lib.TASKS))}")
      spec = tasks_lib.TASKS[t]
      if spec["arity"] != 2 or spec["ops"] != 1:
        raise ValueError(f"task {t!r} does not share the inputs of the "
                         "one-operator binary tasks (a+b, a-b, a*b, a/b, "
                         "a+b-a*b)")


def arith_data(cfg: ArithConfig) -> Tuple[jax.Array, jax.Array, Tuple[int, ...]]:
  """``(inputs (N, L), labels (G, N), (n_train, n_meta, n_test))``."""
  ts = [tasks_lib.make_task(t, cfg.p) for t in cfg.tasks]
  for t in ts[1:]:
    if not np.array_equal(np.asarray(t.inputs), np.asarray(ts[0].inputs)):
      raise ValueError("the tasks do not share their inputs")
  sizes = tasks_lib.split_sizes(ts[0].num_examples, cfg.fractions)
  return ts[0].inputs, jnp.stack([t.labels for t in ts]), sizes


def _model(cfg: ArithConfig, seq_len: int) -> Transformer:
  return Transformer(vocab_size=cfg.p + 2, seq_len=seq_len, dim=cfg.dim,
                     heads=cfg.heads, depth=cfg.depth)


def arith_task(cfg: ArithConfig, rule: RuleConfig, *, data=None
               ) -> InnerTask:
  """The inner problem: init (fresh weights, split, batch key; ``index``
  picks the task) and one step of the rule (``meta_loss``: the loss after
  the step on ``meta_batch`` examples of the meta split; ``train_loss``: the batch loss).

  Inner state: ``dict(params, rule_state, perm, key, task)``.  ``data``:
  :func:`arith_data`'s triple (default: computed from ``cfg``).
  """
  inputs, labels, (n_tr, n_meta, _) = data or arith_data(cfg)
  model = _model(cfg, inputs.shape[1])
  n = inputs.shape[0]

  def init(key, index):
    k_model, k_split, k_batch = jax.random.split(key, 3)
    params = model.init(k_model, inputs[:1])
    return dict(params=params, rule_state=init_rule_state(rule, params),
                perm=jax.random.permutation(k_split, n).astype(jnp.int32),
                key=k_batch, task=jnp.asarray(index, jnp.int32))

  def loss(params, idx, y_all):
    return cross_entropy(model.apply(params, inputs[idx]), y_all[idx])

  def step(theta, inner):
    key, sub, k_meta = jax.random.split(inner["key"], 3)
    y_all = labels[inner["task"]]
    pos = jax.random.randint(sub, (cfg.batch_size,), 0, n_tr)
    batch = inner["perm"][pos]
    train_loss, grads = jax.value_and_grad(loss)(inner["params"], batch, y_all)
    upd, rs = rule_update(rule, theta, grads, inner["rule_state"],
                          inner["params"],
                          dimension_numbers=muon_dimension_numbers)
    params = optax.apply_updates(inner["params"], upd)
    meta_idx = inner["perm"][n_tr:n_tr + n_meta]
    if cfg.meta_batch:
      meta_idx = meta_idx[jax.random.randint(k_meta, (cfg.meta_batch,), 0,
                                             n_meta)]
    meta_loss = loss(params, meta_idx, y_all)
    new = dict(inner, params=params, rule_state=rs, key=key)
    return new, dict(meta_loss=meta_loss, train_loss=train_loss)

  return InnerTask(init, step)


@functools.lru_cache(maxsize=8)
def _probe_program(cfg: ArithConfig, rule: RuleConfig, steps: int,
                   every: int):
  inputs, labels, (n_tr, n_meta, _) = arith_data(cfg)
  task = arith_task(cfg, rule)
  adam = optax.adam(rule.lr)
  resc = optax.chain(normalize_gradients(1.0), optax.adam(rule.lr))
  model = _model(cfg, inputs.shape[1])

  def test_acc(inner):
    test = inner["perm"][n_tr + n_meta:]
    logits = model.apply(inner["params"], inputs[test])
    y = labels[inner["task"]][test]
    return cross_entropy(logits, y), accuracy(logits, y)

  def body(theta, carry, i):
    inner, sa, sr = carry
    y_all = labels[inner["task"]]
    _, sub, _ = jax.random.split(inner["key"], 3)  # the batch task.step draws
    pos = jax.random.randint(sub, (cfg.batch_size,), 0, n_tr)
    idx = inner["perm"][pos]
    grads = jax.grad(lambda p: cross_entropy(model.apply(p, inputs[idx]),
                                             y_all[idx]))(inner["params"])
    ua, sa = adam.update(grads, sa, inner["params"])
    ur, sr = resc.update(grads, sr, inner["params"])
    d, acc = jax.lax.cond(i % every == 0, lambda: (rule_distances(
        rule, theta, grads, inner["rule_state"], inner["params"], [ua, ur],
        dimension_numbers=muon_dimension_numbers), test_acc(inner)[1]),
                          lambda: (jnp.full((2,), jnp.nan, jnp.float32),
                                   jnp.asarray(jnp.nan, jnp.float32)))
    inner, m = task.step(theta, inner)
    return (inner, sa, sr), (d, m["meta_loss"], acc)

  def one(theta, key, task_index):
    inner = task.init(key, task_index)
    carry = (inner, adam.init(inner["params"]), resc.init(inner["params"]))
    (inner, _, _), (d, ml, acc) = jax.lax.scan(
        lambda c, i: body(theta, c, i), carry, jnp.arange(steps))
    test_loss, test_acc_end = test_acc(inner)
    curve = jnp.concatenate([acc[::every], test_acc_end[None]])
    return dict(dist_adam=jnp.nanmean(d[:, 0]), dist_rescale=jnp.nanmean(
        d[:, 1]), meta_loss=ml[-1], test_loss=test_loss,
                test_acc=test_acc_end, test_acc_curve=curve)
  return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def probe(cfg: ArithConfig, rule: RuleConfig, theta, seeds: Sequence[int],
          *, steps: int, task_index=0, every: int = 10
          ) -> Dict[str, np.ndarray]:
  """Inner runs of ``steps`` steps with the unperturbed rule, one per seed
  (vmapped), on task ``cfg.tasks[task_index]`` (``task_index``: one int,
  or one per seed: several tasks in one program).

  Along the rule's trajectory, Adam (``optax.adam(rule.lr)``) and
  rescaling (``chain(normalize_gradients(1), adam)``) see the same
  gradients; every ``every`` steps the distance of the rule's update from
  theirs is measured (:func:`ngrok_jax.learned_rule.rule_distances`).

  Returns:
    per seed, (len(seeds),) arrays: ``dist_adam``, ``dist_rescale`` (means
    over the measured steps), and at the end ``meta_loss``, ``test_loss``,
    ``test_acc``; ``test_acc_curve`` (len(seeds), C): the test accuracy
    after 0, ``every``, 2 ``every``, ... steps and at ``steps``
    (``curve_steps``, (C,)), from which :func:`steps_to` reads when a run
    groks.
  """
  keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
  index = np.broadcast_to(np.asarray(task_index, np.int32), (len(keys),))
  fn = _probe_program(cfg, rule, int(steps), int(every))
  out = {k: np.asarray(v) for k, v in jax.device_get(
      fn(theta, keys, jnp.asarray(index))).items()}
  out["curve_steps"] = np.append(np.arange(0, int(steps), int(every)),
                                 int(steps))
  return out


def steps_to(result: Dict[str, np.ndarray], threshold: float = 0.95
             ) -> List[Optional[int]]:
  """Per seed of a :func:`probe` result, the first measured step whose test
  accuracy is at least ``threshold`` (``None``: not within the run).

  Args:
    result: :func:`probe`'s output.
    threshold: the accuracy.

  Returns:
    One step (or ``None``) per seed.
  """
  out = []
  for row in result["test_acc_curve"]:
    hit = np.nonzero(row >= threshold)[0]
    out.append(int(result["curve_steps"][hit[0]]) if hit.size else None)
  return out
