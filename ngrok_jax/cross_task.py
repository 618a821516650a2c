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

:func:`run` trains it with evaluations, checkpoints and resume, and writes::

    out_dir/cross_task.json            tasks, seeds, steps, base config
    out_dir/<task>/                    a run folder per training task
                                       (config.json, metrics.jsonl,
                                       summary.json, plots/: ngrok-jax
                                       report and experiments.paired read
                                       it)
    out_dir/amplifier.msgpack          the trained amplifier, one per seed
    out_dir/amplifier_init.msgpack     the initial one (a control)
    out_dir/checkpoints/               the state (resume)

Both amplifier files are what ``ngrok-jax train --methods neuralgrok-frozen
--amplifier PATH`` reads: freeze the cross-task amplifier and train a fresh
transformer on a held-out task (``experiments/cross_task.py``).

Example::

    from ngrok_jax import TrainConfig, cross_task
    cfg = TrainConfig(p=23, depth=1, dim=32, heads=2, amp_hidden=(8, 8),
                      batch_size=64, meta_every=4)
    summary = cross_task.run(cfg, ["a+b", "a-b", "a*b"], seeds=2, steps=200,
                             eval_every=100, out_dir="runs/cross")
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ngrok_jax import ampfile, results
from ngrok_jax import tasks as tasks_lib
from ngrok_jax import train as train_lib
from ngrok_jax.config import TrainConfig
from ngrok_jax.distributed import to_host
from ngrok_jax.fileio import atomic_write, dumps
from ngrok_jax.hooks import ProgressBar, RunInterrupted, StopFlag
from ngrok_jax.spec import RunSpec
from ngrok_jax.train import Data, TrainState
from ngrok_jax.trainer import Trainer

__all__ = ["TASK_AXIS", "METHOD", "configs", "init", "train_steps",
           "evaluate", "amplifier", "run", "task_folder", "load_header"]

#: The name of the vmapped task axis (the meta-gradient's ``pmean`` axis).
TASK_AXIS = "task"
#: The method of every task's run folder.
METHOD = "neuralgrok"
_STATE_AXES = TrainState(None, 0)  # the step is shared, the seeds per task


def load_header(out_dir: str) -> Dict[str, Any]:
  """The arguments of the cross-task run in ``out_dir`` (its
  ``cross_task.json``) as keyword arguments of :func:`run`: ``config``
  (a :class:`TrainConfig`), ``tasks``, ``seeds``, ``steps``, ``eval_every``,
  ``hparams``, ``checkpoint_every``."""
  path = os.path.join(out_dir, "cross_task.json")
  if not os.path.isfile(path):
    raise ValueError(f"{out_dir!r} is not a cross-task run (no "
                     "cross_task.json)")
  with open(path) as f:
    h = json.load(f)
  return dict(config=TrainConfig.from_dict(h["config"]), tasks=h["tasks"],
              seeds=h["seeds"], steps=h["steps"], eval_every=h["eval_every"],
              hparams=h["hparams"] or None,
              checkpoint_every=h.get("checkpoint_every"))


def task_folder(task: str) -> str:
  """The run folder name of ``task`` (``*`` and ``/`` are not portable)."""
  return task.replace("*", "x").replace("/", "div")


def configs(config: TrainConfig, tasks: Sequence[str]
            ) -> Dict[str, TrainConfig]:
  """Each task's config: ``config`` with that task and ``meta_axis_name =
  TASK_AXIS``, validated.  Raises ValueError unless the method is
  ``neuralgrok``, the tasks are >= 2 distinct known tasks, and they share
  the transformer's shapes (vocabulary, sequence length, examples)."""
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
                                meta_axis_name=TASK_AXIS).validate()
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


@functools.lru_cache(maxsize=2)
def _programs(cfg: TrainConfig):
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


# ----------------------------------------------------------------- run
def _spec(cfg: TrainConfig, seeds, steps, eval_every, hp, ce) -> RunSpec:
  return RunSpec(configs={METHOD: cfg}, seeds=tuple(seeds), steps=steps,
                 eval_every=eval_every, hparams=hp,
                 checkpoint_every=ce or None).validate()


def _grad_range(cfgs, state, data):
  """(lo, hi, seed-0 gradient of the first task) over every task."""
  los, his, g0 = [], [], None
  for i, c in enumerate(cfgs.values()):
    fn = ampfile.grad_range_fn(Trainer(c))
    sl = jax.tree.map(lambda x: x[i], (state.seeds, data))
    lo, hi, g = to_host(fn(TrainState(state.step, sl[0]), sl[1]))
    los.append(lo)
    his.append(hi)
    g0 = g if g0 is None else g0
  return np.min(los, axis=0), np.max(his, axis=0), g0


def run(config: TrainConfig, tasks: Sequence[str],
        seeds: Any = 4, steps: int = 1000, eval_every: int = 100,
        out_dir: Optional[str] = None, *,
        hparams: Optional[Mapping[str, Any]] = None,
        checkpoint_every: Optional[int] = None, resume: bool = False,
        progress: bool = True, plots: bool = True,
        report=print) -> Dict[str, Any]:
  """Meta-trains one amplifier per seed across ``tasks``; returns
  ``{task: summary}`` (the runner's summary of each task's run folder).

  Args:
    config: the NeuralGrok configuration (its ``task`` is replaced).
    tasks: >= 2 tasks sharing the transformer's shapes.
    seeds: a count (seeds 0..n-1) or the list of seeds.
    steps, eval_every: the budget and the evaluation interval.
    out_dir: the output folder (see the module docstring); ``None``: in
      memory only.
    hparams: per-seed hyperparameters ``{name: value or list}``.
    checkpoint_every: also checkpoint every that many steps (a multiple of
      ``eval_every``); there is always one at the end and on SIGINT/SIGTERM.
    resume: continue ``out_dir`` from its newest checkpoint (the same
      arguments are required).
    plots: write each task folder's PNG plots (``<task>/plots``) at the end.
  """
  cfgs = configs(config, tasks)
  tasks = list(cfgs)
  seeds = list(range(seeds)) if isinstance(seeds, int) else [
      int(s) for s in seeds]
  hp = {k: tuple(float(x) for x in np.broadcast_to(
      np.asarray(v, np.float64), (len(seeds),))) for k, v in
        (hparams or {}).items()}
  specs = {t: _spec(cfgs[t], seeds, steps, eval_every, hp,
                    checkpoint_every) for t in tasks}
  header = dict(format="ngrok_jax.cross_task/1", tasks=tasks, seeds=seeds,
                steps=steps, eval_every=eval_every,
                checkpoint_every=checkpoint_every or None,
                config=dataclasses.replace(config, meta_axis_name=None,
                                           task=tasks[0]).to_dict(),
                hparams={k: list(v) for k, v in hp.items()})
  path = (lambda *a: os.path.join(out_dir, *a)) if out_dir else None
  if out_dir is not None:
    saved = path("cross_task.json")
    if os.path.exists(saved) and not resume:
      raise ValueError(f"{out_dir!r} already holds a cross-task run: "
                       "resume it (resume=True) or choose another folder")
    if resume and os.path.exists(saved):
      with open(saved) as f:
        old = json.load(f)
      if json.loads(dumps(header)) != old:
        raise ValueError(f"{out_dir!r} holds a cross-task run with other "
                         "arguments; resume it with the same ones")
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(saved, dumps(header))
    for t in tasks:
      os.makedirs(path(task_folder(t)), exist_ok=True)
      atomic_write(path(task_folder(t), "config.json"),
                   dumps(specs[t].to_dict()))
  state, data = init(config, tasks, seeds, hp or None)
  rows: Dict[str, List[dict]] = {t: [] for t in tasks}
  step, wall, extra = 0, 0.0, {}
  ckpt = None
  if out_dir is not None:
    from ngrok_jax.checkpoint import Checkpointer
    ckpt = Checkpointer(path("checkpoints"))
  try:
    got = ckpt.restore_latest(state, report=report) if (
        resume and ckpt is not None) else None
    if got is not None:
      step, state, meta = got
      rows = {t: list(meta["rows"][t]) for t in tasks}
      wall, extra = float(meta["wall_time"]), dict(meta["extra"])
      report(f"cross-task: resuming from step {step}")
    if out_dir is not None:  # drops rows appended after the checkpoint
      for t in tasks:
        results.write_metrics(path(task_folder(t)), rows[t])
    if out_dir is not None and "grad_range0" not in extra:
      lo, hi, _ = _grad_range(cfgs, state, data)
      extra["grad_range0"] = [float(np.min(lo)), float(np.max(hi))]

    def save(at):
      ckpt.save(at, state, dict(rows=rows, wall_time=wall, extra=extra))

    bar = ProgressBar(steps, step, "cross-task " + ",".join(tasks), progress)
    try:
      with StopFlag() as stop:
        while step < steps:
          n = min(eval_every, steps - step)
          t0 = time.perf_counter()
          state, out = train_steps(config, tasks, state, data, n)
          ev = to_host(evaluate(config, tasks, state, data))
          wall += time.perf_counter() - t0
          step += n
          chunk_rows = []
          for i, t in enumerate(tasks):
            e = {k: np.asarray(v)[i] for k, v in ev.items() if k != "step"}
            e["batch_loss"] = np.mean(np.asarray(out["loss"][i], np.float64),
                                      axis=0)
            new = results.metric_rows(METHOD, seeds, step, e, hp)
            for r in new:
              r["task"] = t
            rows[t] += new
            chunk_rows += new
            if out_dir is not None:
              results.append_metrics(path(task_folder(t)), new)
          bar(_ChunkView(n, chunk_rows))
          if ckpt is not None and (step >= steps or stop.signum is not None or
                                   (checkpoint_every and
                                    step % checkpoint_every == 0)):
            save(step)
          if stop.signum is not None:
            if ckpt is not None:
              ckpt.wait()
            raise RunInterrupted(f"cross-task run stopped at step {step} "
                                 "(checkpoint saved)", stop.signum, out_dir)
    finally:
      bar.close()
    summaries = {}
    for t in tasks:
      summaries[t] = results.summarize(rows[t], specs[t], {METHOD: wall},
                                       {METHOD: step >= steps})
      if out_dir is not None:
        results.write_metrics(path(task_folder(t)), rows[t])
        atomic_write(path(task_folder(t), "summary.json"),
                     dumps(summaries[t]))
    if out_dir is not None:
      _save_amplifiers(cfgs, tasks, seeds, state, data, extra, summaries,
                       path)
      if plots:
        from ngrok_jax import plots as plots_lib
        for t in tasks:
          try:
            plots_lib.plot_run(path(task_folder(t)))
          except Exception as e:  # noqa: BLE001 - plotting never loses a run
            report(f"plotting {t} failed: {type(e).__name__}: {e}")
    return summaries
  finally:
    if ckpt is not None:
      ckpt.close()


@dataclasses.dataclass
class _ChunkView:  # what ProgressBar reads of a chunk
  size: int
  rows: List[dict]


def _save_amplifiers(cfgs, tasks, seeds, state, data, extra, summaries,
                     path) -> None:
  c0 = cfgs[tasks[0]]
  host = to_host(jax.tree.map(lambda x: x[0], state.seeds))
  ranges = _grad_range(cfgs, state, data)
  to95 = {t: summaries[t]["methods"][METHOD]["steps_to_95"] for t in tasks}
  meta = ampfile.run_amplifier_meta(
      dataclasses.replace(c0, meta_axis_name=None),
      seeds, TrainState(state.step, host), ranges, extra.get("grad_range0"),
      to95[tasks[0]])
  meta.update(task=",".join(tasks), cross_task=tasks, steps_to_95=to95)
  ampfile.save_amplifier(path(ampfile.FILE), amplifier(state), meta)
  ampfile.save_amplifier(path("amplifier_init.msgpack"),
                         amplifier(state, "init"), dict(meta, step=0))
