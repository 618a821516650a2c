"""One amplifier meta-trained across several tasks at once.

The NeuralGrok paper names a limitation and future work: its amplifier is
meta-trained on, and used for, one task.  Here the tasks are one more array
axis.  The single-task training program (``lax.scan`` over steps of the
vmapped seeds) is vmapped over a task axis named :data:`TASK_AXIS`: every
task has its own transformer per seed, its own data and splits, and its own
inner optimizer; per seed, every task starts from the same initial weights
and the same amplifier :math:`\\phi_0`.  At each meta step the amplifier's
meta-gradient is averaged over the task axis
(:func:`ngrok_jax.neuralgrok` with ``meta_axis_name``), so each seed's
amplifier is ONE function updated from the outer losses of all tasks,

.. math::
    \\phi \\leftarrow \\phi + \\mathrm{meta}\\Big(\\nabla_\\phi \\frac{1}{n}
    \\sum_{t=1}^{n} \\mathcal{L}^{(t)}_{outer}\\big(\\theta_t'(\\phi)\\big)
    \\Big),

and its copies along the task axis stay equal (tested).  The tasks must
share the transformer's shapes (vocabulary, sequence length, number of
examples): e.g. ``a+b``, ``a-b``, ``a*b``, ``a/b`` modulo the same p.
A (task, seed) whose loss or weights stop being finite is frozen, as in
single-task training; on a meta step its non-finite meta-gradient makes the
average non-finite, which freezes that seed in every task.  Frozen between
meta steps, it stays frozen while the seed's other tasks go on: its copy of
the amplifier then stops following theirs (:func:`amplifier` returns the
copy of a task that did not diverge).  The program runs on one device (the
runner's seed sharding is not used here).

The runner trains it (``runner.run(config, tasks=[...])``, a run spec with
``tasks``): evaluations, hooks, checkpoints and resume as in any run; the
run folder's layout is :mod:`ngrok_jax._src.running.cross_folder`'s.  Its
``amplifier.msgpack`` (the trained amplifier, one per seed) and
``amplifier_init.msgpack`` (the initial one, a control) are what
``ngrok-jax train --methods neuralgrok-frozen --amplifier PATH`` reads: freeze the cross-task amplifier and train a fresh
transformer on a held-out task (``experiments/cross_task.py``).

Example::

    from ngrok_jax import TrainConfig, runner
    cfg = TrainConfig(p=23, depth=1, dim=32, heads=2, amp_hidden=(8, 8),
                      batch_size=64, meta_every=4)
    summaries = runner.run(cfg, tasks=["a+b", "a-b", "a*b"], seeds=2,
                           steps=200, eval_every=100, out_dir="runs/cross")
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ngrok_jax._src.core import tasks as tasks_lib
from ngrok_jax._src.training import train as train_lib
from ngrok_jax._src.optim.registry import DEFAULT_METHOD
from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.training.methods import program_config
from ngrok_jax._src.training.train import Data, TrainState

__all__ = ["TASK_AXIS", "METHOD", "configs", "init", "train_steps",
           "evaluate", "amplifier", "task_folder"]

#: The name of the vmapped task axis (the meta-gradient's ``pmean`` axis).
TASK_AXIS = "task"
#: The one method of a run with a task axis (its amplifier is meta-trained
#: across the tasks); the method of every task's run folder.
METHOD = DEFAULT_METHOD
_STATE_AXES = TrainState(None, 0)  # the step is shared, the seeds per task


def task_folder(task: str) -> str:
  """The run folder name of ``task`` (``*`` and ``/`` are not portable)."""
  return task.replace("*", "x").replace("/", "div")


def configs(config: TrainConfig, tasks: Sequence[str]
            ) -> Dict[str, TrainConfig]:
  """Each task's config: ``config`` with that task and ``meta_axis_name =
  TASK_AXIS``, resolved (:meth:`ngrok_jax.TrainConfig.resolve`).  Raises
  ValueError unless the method is ``neuralgrok``, the tasks are >= 2
  distinct known tasks, and they share the transformer's shapes
  (vocabulary, sequence length, examples)."""
  tasks = list(tasks)
  if config.method != METHOD:
    raise ValueError(f"a cross-task amplifier is meta-trained by method "
                     f"{METHOD!r}, got {config.method!r}")
  if len(tasks) < 2 or len(set(tasks)) != len(tasks):
    raise ValueError(f"tasks must be at least 2 distinct tasks, got {tasks}")
  for t in tasks:
    if t not in tasks_lib.TASKS:
      raise ValueError(f"unknown task {t!r}; valid tasks: "
                       f"{', '.join(sorted(tasks_lib.TASKS))}")
  out = {t: dataclasses.replace(config, task=t,
                                meta_axis_name=TASK_AXIS).resolve()
         for t in tasks}
  shapes = {}
  for t, c in out.items():
    task = train_lib.task_of(c)
    shapes[t] = (task.vocab_size, task.seq_len, task.num_examples)
  if len(set(shapes.values())) > 1:
    raise ValueError("the tasks must share the transformer's shapes "
                     "(vocabulary, sequence length, examples) to be vmapped: "
                     + ", ".join(f"{t} {s}" for t, s in shapes.items()))
  return out


def init(config: TrainConfig, tasks: Sequence[str], seeds: Sequence[int],
         hparams: Optional[Mapping[str, Any]] = None
         ) -> Tuple[TrainState, Data]:
  """The initial state and data, with a leading task axis.

  Per seed, every task starts from the same transformer weights, amplifier
  and batch key (those of the single-task ``init`` of the first task);
  each task has its own examples and the seed's split of them.  ``state``:
  ``step`` scalar, every ``seeds`` leaf (n_tasks, S, ...); ``data``: every
  leaf (n_tasks, ...).
  """
  cfgs = configs(config, tasks)
  tasks = list(cfgs)
  state, d0 = train_lib.init(cfgs[tasks[0]], seeds, hparams)
  datas = [d0] + [train_lib.make_data(cfgs[t], seeds) for t in tasks[1:]]
  data = jax.tree.map(lambda *x: jnp.stack(x), *datas)
  n = len(tasks)
  seeds_state = jax.tree.map(lambda x: jnp.repeat(x[None], n, axis=0),
                             state.seeds)
  return TrainState(state.step, seeds_state), data


def _programs(cfg: TrainConfig):
  """The jitted ``(train_steps, evaluate)`` of ``cfg``'s
  :func:`ngrok_jax._src.training.methods.program_config` (shared by configs
  that differ only in per-seed hyperparameters)."""
  return _compiled(program_config(cfg))


@functools.lru_cache(maxsize=2)
def _compiled(cfg: TrainConfig):
  def steps(state, data, num_steps):
    fn = functools.partial(train_lib.train_steps_fn, cfg, num_steps=num_steps)
    return jax.vmap(fn, in_axes=(_STATE_AXES, 0), out_axes=(_STATE_AXES, 0),
                    axis_name=TASK_AXIS)(state, data)

  def ev(state, data):
    return jax.vmap(functools.partial(train_lib.evaluate_fn, cfg),
                    in_axes=(_STATE_AXES, 0))(state, data)
  return (jax.jit(steps, static_argnames="num_steps", donate_argnames="state"),
          jax.jit(ev))


def _first(config: TrainConfig, tasks: Sequence[str]) -> TrainConfig:
  return configs(config, tasks)[list(tasks)[0]]


def train_steps(config: TrainConfig, tasks: Sequence[str], state: TrainState,
                data: Data, num_steps: int):
  """``num_steps`` steps of every task and seed in one jitted program
  (``state`` donated).  Returns the new state and ``dict(loss, outer_loss)``
  of shape (n_tasks, num_steps, S)."""
  return _programs(_first(config, tasks))[0](state, data,
                                             num_steps=int(num_steps))


def evaluate(config: TrainConfig, tasks: Sequence[str], state: TrainState,
             data: Data) -> Dict[str, jax.Array]:
  """The single-task evaluation metrics of every task and seed, as
  (n_tasks, S) arrays (``step``: (n_tasks,))."""
  return _programs(_first(config, tasks))[1](state, data)


def amplifier(state: TrainState, which: str = "trained") -> Any:
  """The shared amplifier of every seed (leading seed axis): ``"trained"``
  (its current parameters) or ``"init"`` (the initial ones), per seed the
  copy of the first task in which that seed has not diverged (task 0 if it
  diverged in all).  Raises RuntimeError if the copies of the tasks that
  did not diverge differ (they cannot: a test checks it)."""
  if which not in ("trained", "init"):
    raise ValueError(f"which must be 'trained' or 'init', got {which!r}")
  ng = state.seeds.opt_state
  tree = ng.amplifier_params if which == "trained" else ng.amplifier_init
  alive = np.asarray(state.seeds.diverged_at) < 0  # (n_tasks, S)
  pick = np.where(alive.any(0), np.argmax(alive, axis=0), 0)
  out = []
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(leaf)
    for s in range(a.shape[1]):
      live = a[alive[:, s], s]
      if live.size and not np.array_equal(
          live, np.broadcast_to(live[:1], live.shape)):
        raise RuntimeError("the amplifier's copies along the task axis "
                           "differ")
    out.append(a[pick, np.arange(a.shape[1])])
  return jax.tree.unflatten(jax.tree.structure(tree), out)
