"""One amplifier meta-trained across tasks (a vmapped task axis whose
meta-gradients are averaged, a run spec with ``tasks`` trained by the
runner), then frozen on a held-out task."""
import dataclasses
import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj
from ngrok_jax._src.cli import cli
from ngrok_jax._src.training import cross_task
from ngrok_jax._src.training import train as train_lib
from ngrok_jax._src.storage import runfolder
from ngrok_jax._src.running import runner
from ngrok_jax._src.storage.ampfile import load_amplifier
from ngrok_jax._src.analysis.results import load_run, read_metrics
from ngrok_jax._src.storage.spec import load_spec

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "cross_task_v1")

TASKS = ["a+b", "a-b", "a*b"]
CFG = nj.TrainConfig(p=11, depth=1, dim=8, heads=2, amp_hidden=(4, 4),
                     batch_size=16, meta_every=2, meta_lr=1e-2, meta_wd=0.0)
SEEDS, STEPS, EVERY = [0, 3], 8, 4


# ------------------------------------------------ the transform's axis
def _problem(k):
  r = np.random.default_rng(k)
  params = {"w": jnp.asarray(r.normal(size=(3, 2)), jnp.float32)}
  x = jnp.asarray(r.normal(size=(10, 3)), jnp.float32)
  y = jnp.asarray(r.normal(size=(10, 2)), jnp.float32)
  return params, x, y


def _loss(p, x, y):
  return jnp.mean((x @ p["w"] - y) ** 2)


def test_meta_axis_name_averages_the_meta_gradient_over_the_axis():
  """Two problems vmapped over a named axis, meta optimizer SGD(1): the
  shared amplifier's step (phi - phi0) is the mean of the two single-problem steps, and
  the copies stay equal; without the axis each copy takes its own step."""
  amp = nj.Amplifier((5,), "dense")
  phi0 = amp.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  probs = [_problem(k) for k in (1, 2)]

  def step(axis, params, x, y):
    tx = nj.neuralgrok(optax.sgd(0.1), amp.apply, phi0, meta_every=1,
                       lookahead=optax.sgd(0.5),
                       meta_optimizer=optax.sgd(1.0), placement="before",
                       meta_axis_name=axis)
    st = tx.init(params)
    g = jax.grad(_loss)(params, x, y)
    _, st = tx.update(g, st, params, outer_loss=lambda p: _loss(p, x, y))
    return jax.tree.map(lambda a, b: a - b, st.amplifier_params, phi0)

  single = [step(None, *pr) for pr in probs]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *probs)
  shared = jax.vmap(lambda p, x, y: step("t", p, x, y), axis_name="t")(
      *stacked)
  want = jax.tree.map(lambda a, b: (a + b) / 2, *single)
  scale = max(float(np.abs(l).max()) for l in jax.tree.leaves(single))
  for got_l, want_l in zip(jax.tree.leaves(shared), jax.tree.leaves(want)):
    np.testing.assert_allclose(got_l[0], want_l, rtol=1e-4,
                               atol=1e-5 * scale)
    np.testing.assert_array_equal(got_l[0], got_l[1])
  # the problems' own steps disagree (else the mean would prove nothing)
  assert max(float(np.abs(a - b).max()) for a, b in zip(
      *map(jax.tree.leaves, single))) > 0.1 * scale
  with pytest.raises(ValueError, match="meta_axis_name"):
    nj.neuralgrok(optax.sgd(0.1), amp.apply, phi0, meta_axis_name=3)


# ------------------------------------------------------ cross_task
def test_configs_refuse_bad_task_sets():
  with pytest.raises(ValueError, match="shapes"):
    cross_task.configs(CFG, ["a+b", "a*a-b"])  # 5 tokens vs 4
  with pytest.raises(ValueError, match="at least 2 distinct"):
    cross_task.configs(CFG, ["a+b", "a+b"])
  with pytest.raises(ValueError, match="neuralgrok"):
    cross_task.configs(dataclasses.replace(CFG, method="adam"), TASKS)
  with pytest.raises(ValueError, match="unknown task"):
    cross_task.configs(CFG, ["a+b", "a^b"])
  with pytest.raises(ValueError, match="meta_axis_name"):
    dataclasses.replace(CFG, method="rescale", meta_axis_name="t").validate()


def test_the_runner_refuses_a_cross_task_config_and_bad_task_specs():
  cfg = dataclasses.replace(CFG, meta_axis_name=cross_task.TASK_AXIS)
  with pytest.raises(ValueError, match="tasks="):
    runner.run(cfg, ["neuralgrok"], seeds=1, steps=2, eval_every=2)
  for kw, msg in ((dict(methods="neuralgrok,adam"), "alone"),
                  (dict(tasks=["a+b"]), "at least 2"),
                  (dict(tasks=["a+b", "a*a-b"]), "shapes"),
                  (dict(stop_after=2), "stop_after")):
    with pytest.raises(ValueError, match=msg):
      runner.make_spec(CFG, **{**dict(tasks=TASKS, seeds=1, steps=4,
                                      eval_every=2), **kw})
  spec = runner.make_spec(CFG, tasks=TASKS, seeds=2, steps=4, eval_every=2)
  assert spec.methods == ["neuralgrok"] and spec.tasks == tuple(TASKS)
  assert spec.configs["neuralgrok"].task == "a+b"
  assert type(spec).from_dict(spec.to_dict()) == spec
  assert "tasks" not in runner.make_spec(CFG, "adam", 1, 4, 2).to_dict()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("cross") / "run")
  msgs = []
  summaries = runner.run(CFG, tasks=TASKS, seeds=SEEDS, steps=STEPS,
                         eval_every=EVERY, out_dir=out,
                         checkpoint_every=EVERY, progress=False,
                         report=msgs.append)
  assert not any("failed" in m for m in msgs), msgs
  return out, summaries


def test_one_program_trains_every_task_with_one_shared_amplifier(trained):
  out, summaries = trained
  assert list(summaries) == TASKS
  state, data = cross_task.init(CFG, TASKS, SEEDS)
  assert data.inputs.shape[0] == 3 and data.train.shape[:2] == (3, 2)
  # the tasks' labels differ, their inputs (and splits) are the same pairs
  assert not np.array_equal(data.labels[0], data.labels[2])
  np.testing.assert_array_equal(data.inputs[0], data.inputs[1])
  jitted = cross_task._programs(cross_task._first(CFG, TASKS))[0]
  before = jitted._cache_size()
  for _ in range(2):
    state, out_ = cross_task.train_steps(CFG, TASKS, state, data, EVERY)
  assert jitted._cache_size() == before  # the run compiled it: reused
  assert out_["loss"].shape == (3, EVERY, 2)
  trained_amp = cross_task.amplifier(state)  # raises if the copies differ
  init_amp = cross_task.amplifier(state, "init")
  moved = [np.abs(a - b).max() for a, b in zip(
      jax.tree.leaves(trained_amp), jax.tree.leaves(init_amp))]
  assert max(moved) > 0
  # the saved amplifier is this one (seed axis), and it loads
  params, meta = load_amplifier(out, seed_index=None)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(trained_amp)):
    np.testing.assert_array_equal(a, b)
  assert meta["cross_task"] == TASKS and meta["seeds"] == SEEDS
  p0, _ = load_amplifier(os.path.join(out, "amplifier_init.msgpack"))
  for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(init_amp)):
    np.testing.assert_array_equal(a, b[0])
  # a run folder: config.json holds the spec with its tasks; each task's
  # folder is a run folder the report reads, its rows carry the task
  assert load_spec(out).tasks == tuple(TASKS)
  assert {r["task"] for r in read_metrics(os.path.join(out, "a-b"))} == {
      "a-b"}
  assert os.path.isfile(os.path.join(out, "axb", "plots",
                                     "amplifier_learning.png"))
  run = load_run(os.path.join(out, "axb"))
  assert len(run["rows"]) == 2 * STEPS // EVERY
  assert run["summary"]["methods"]["neuralgrok"]["complete"]


def _chunked(train, state, data, axis):
  """``STEPS`` steps as ``STEPS // EVERY`` calls of ``train(state, data,
  EVERY)`` (the run's chunk: the programs the ``trained`` run compiled);
  the losses concatenated along ``axis``."""
  outs = []
  for _ in range(STEPS // EVERY):
    state, out = train(state, data, EVERY)
    outs.append(np.asarray(out["loss"]))
  return state, np.concatenate(outs, axis=axis)


def test_every_task_contributes_and_each_task_trains_as_alone():
  """With meta lr 0 the amplifier stays put, and every task's transformer
  follows its single-task run (the task axis changes nothing else): the
  same batch losses at every step and the same function at the end.  (Not
  every weight: components whose gradient is zero up to rounding, e.g. the
  attention's key bias, take Adam steps of rounding noise, which a
  different reduction order changes.)  With a meta lr, the shared amplifier
  differs from the one a+b learns alone: the other tasks' outer losses
  count.  (The meta lr is a per-seed hyperparameter: both settings run
  the same programs.)"""
  frozen = {"meta_lr": 0.0}
  cross = lambda st, d, n: cross_task.train_steps(CFG, TASKS, st, d, n)
  state, data = cross_task.init(CFG, TASKS, SEEDS, frozen)
  state, loss = _chunked(cross, state, data, axis=1)
  apply = jax.jit(train_lib.model_of(CFG).apply)
  for i, t in enumerate(TASKS):
    cfg = dataclasses.replace(CFG, task=t)
    s1, d1 = train_lib.init(cfg, SEEDS, frozen)
    s1, loss1 = _chunked(functools.partial(train_lib.train_steps, cfg), s1,
                         d1, axis=0)
    np.testing.assert_allclose(loss[i], loss1, rtol=1e-5)
    p1 = jax.tree.map(np.asarray, s1.seeds.params)
    px = jax.tree.map(lambda x: np.asarray(x[i]), state.seeds.params)
    for k in range(len(SEEDS)):
      np.testing.assert_allclose(
          apply(jax.tree.map(lambda x: x[k], px), d1.inputs),
          apply(jax.tree.map(lambda x: x[k], p1), d1.inputs),
          rtol=1e-4, atol=1e-4)
  for a, b in zip(jax.tree.leaves(cross_task.amplifier(state)),
                  jax.tree.leaves(cross_task.amplifier(state, "init"))):
    np.testing.assert_array_equal(a, b)  # meta lr 0: the amplifier stayed
  state, data = cross_task.init(CFG, TASKS, SEEDS)
  state, _ = _chunked(cross, state, data, axis=1)
  cfg = dataclasses.replace(CFG, task="a+b")
  s1, d1 = train_lib.init(cfg, SEEDS)
  s1, _ = _chunked(functools.partial(train_lib.train_steps, cfg), s1, d1,
                   axis=0)
  alone = s1.seeds.amp_params
  shared = cross_task.amplifier(state)
  diff = max(float(np.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(alone), jax.tree.leaves(shared)))
  assert diff > 1e-6


def test_resume_continues_to_the_same_result(trained, tmp_path):
  """A run cut off after its step-4 checkpoint and resumed
  (``runner.resume``) ends where the uninterrupted run ended (same
  amplifier, bit-identical metric rows)."""
  out, _ = trained
  cut = str(tmp_path / "cut")
  shutil.copytree(out, cut)
  shutil.rmtree(os.path.join(cut, "checkpoints", str(STEPS)))
  os.remove(os.path.join(cut, "amplifier.msgpack"))
  with pytest.raises(ValueError, match="already holds"):
    runner.run(CFG, tasks=TASKS, seeds=SEEDS, steps=STEPS, eval_every=EVERY,
               out_dir=cut, progress=False)
  with pytest.raises(ValueError, match="differs"):
    runner.run(CFG, tasks=TASKS, seeds=SEEDS, steps=STEPS + 4,
               eval_every=EVERY, out_dir=cut, resume=True,
               checkpoint_every=EVERY, progress=False)
  msgs = []
  runner.resume(cut, progress=False, plots=False, report=msgs.append)
  assert any("resuming from step 4" in m for m in msgs)
  a, _ = load_amplifier(out, None)
  b, _ = load_amplifier(cut, None)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  for t in ("a+b", "axb"):
    ra = read_metrics(os.path.join(out, t))
    rb = read_metrics(os.path.join(cut, t))
    assert json.dumps(ra) == json.dumps(rb)
    assert len(rb) == 2 * STEPS // EVERY


def test_the_frozen_cross_task_amplifier_trains_a_held_out_task(trained,
                                                               tmp_path):
  out, _ = trained
  held = dataclasses.replace(CFG, task="a/b")
  s = runner.run(held, ["neuralgrok-frozen"], seeds=1, steps=4,
                 eval_every=4, out_dir=str(tmp_path / "held"),
                 amplifier=out, amplifier_seed=1, progress=False,
                 plots=False, report=lambda m: None)
  assert s["methods"]["neuralgrok-frozen"]["complete"]
  assert list(load_spec(out).tasks) == TASKS


def test_each_seed_can_use_its_own_cross_task_amplifier(trained, tmp_path):
  """--amplifier-seed each: held-out seed i trains with amplifier i of the
  file (paired); the frozen state holds exactly those amplifiers; a file
  with another number of amplifiers is refused."""
  out, _ = trained
  held = dataclasses.replace(CFG, task="a/b", method="neuralgrok-frozen")
  amps, _ = load_amplifier(out, None)
  trainer = nj.Trainer(held)
  state, _ = trainer.init(SEEDS, amp_params=amps, amp_per_seed=True)
  for a, b in zip(jax.tree.leaves(state.seeds.amp_params),
                  jax.tree.leaves(amps)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(*jax.tree.leaves(amps)[0][:2])  # they differ
  with pytest.raises(ValueError, match="one per seed"):
    trainer.init([0, 1, 2], amp_params=amps, amp_per_seed=True)
  rc = cli.main(["train", "--task", "a/b", "--p", "11", "--depth", "1",
                    "--dim", "8", "--heads", "2", "--batch-size", "16",
                    "--methods", "neuralgrok-frozen", "--seeds", "0,3",
                    "--steps", "4", "--eval-every", "4", "--amplifier", out,
                    "--amplifier-seed", "each", "--no-progress",
                    "--no-plots", "--out", str(tmp_path / "each")])
  assert rc == 0
  with open(tmp_path / "each" / "config.json") as f:
    assert json.load(f)["amplifier_seed"] == "each"
  with pytest.raises(ValueError, match="holds 2 amplifiers for 3 seeds"):
    runner.run(dataclasses.replace(CFG, task="a/b"), ["neuralgrok-frozen"],
               seeds=3, steps=4, eval_every=4, amplifier=out,
               amplifier_seed="each")


def test_amplifier_takes_a_live_tasks_copy():
  """A (task, seed) frozen by divergence keeps its stale amplifier copy:
  amplifier() takes, per seed, the copy of a task that did not diverge;
  copies that disagree among live tasks are an error."""
  state, _ = cross_task.init(CFG, TASKS, SEEDS)
  ng = state.seeds.opt_state
  leaf0 = jax.tree.leaves(ng.amplifier_params)[0]
  stale = leaf0.at[0, 1].add(1.0)  # task 0's copy of seed 1 is stale
  div = state.seeds.diverged_at.at[0, 1].set(5)
  tree = jax.tree.unflatten(jax.tree.structure(ng.amplifier_params),
                            [stale] + jax.tree.leaves(ng.amplifier_params)[1:])
  st = state._replace(seeds=state.seeds._replace(
      diverged_at=div, opt_state=ng._replace(amplifier_params=tree)))
  got = jax.tree.leaves(cross_task.amplifier(st))[0]
  np.testing.assert_array_equal(got, leaf0[1])  # seed 0: task 0, seed 1:
  with pytest.raises(RuntimeError, match="differ"):  # task 1 (both fresh)
    cross_task.amplifier(state._replace(seeds=state.seeds._replace(
        opt_state=ng._replace(amplifier_params=tree))))
  with pytest.raises(ValueError, match="which"):
    cross_task.amplifier(state, "final")


def test_command_line_trains_and_resumes_a_cross_task_run(tmp_path, capsys):
  out = str(tmp_path / "cli")
  flags = ["--p", "11", "--depth", "1", "--dim", "8", "--heads", "2",
           "--amp-hidden", "4,4", "--batch-size", "16", "--meta-every", "2",
           "--meta-lr", "0.01", "--meta-wd", "0", "--lr", "0.001", "--wd", "0"]
  rc = cli.main(["train", "--cross-tasks", "a+b,a-b,a*b", *flags,
                 "--seeds", "0,3", "--steps", "8", "--eval-every", "4",
                 "--checkpoint-every", "4", "--no-progress", "--no-plots",
                 "--out", out])
  assert rc == 0
  printed = capsys.readouterr().out
  assert printed.count("| neuralgrok |") == 3  # one table row per task
  spec = load_spec(out)
  assert list(spec.tasks) == TASKS and list(spec.seeds) == SEEDS
  assert spec.configs["neuralgrok"] == dataclasses.replace(
      CFG, wd=0.0).resolve()  # as given, every default filled in
  # cut off after the step-4 checkpoint, resumed: the same amplifier
  a, _ = load_amplifier(out, None)
  shutil.rmtree(os.path.join(out, "checkpoints", "8"))
  rc = cli.main(["train", "--resume", out, "--no-progress", "--no-plots"])
  assert rc == 0
  b, _ = load_amplifier(out, None)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert cli.main(["train", "--resume", out, "--steps", "12"]) == 2
  assert "no other configuration options" in capsys.readouterr().err
  assert cli.main(["train", "--cross-tasks", "a+b,a-b", "--methods", "adam",
                   "--out", str(tmp_path / "x")]) == 2
  assert "neuralgrok only" in capsys.readouterr().err


# The fixture was written at XLA's backend optimisation level 0 with the
# default (fusion) emitters; other code generation rounds differently in the
# last bits (the tests' conftest also picks the older emitters), so its rows
# are reproduced in a process compiling as the fixture's did, whatever
# XLA_FLAGS this session was given.
_FIRST_FORMAT = """
import os, shutil, sys
from ngrok_jax import runner
from ngrok_jax._src.running.runner import execute
from ngrok_jax._src.storage.spec import load_spec
fixture, cut, new = sys.argv[1:4]
shutil.copytree(fixture, cut)
shutil.rmtree(os.path.join(cut, "checkpoints", "4"))
msgs = []
runner.resume(cut, progress=False, plots=False, report=msgs.append)
assert any("resuming from step 2" in m for m in msgs), msgs
execute(load_spec(fixture), new, progress=False, plots=False,
               report=lambda m: None)
"""


def test_a_first_format_folder_loads_and_resumes_to_the_same_rows(tmp_path):
  """A folder written by the first cross-task runner (cross_task.json,
  checkpoints/<step>, checkpoint rows kept per task) loads as a spec with
  tasks, resumes from its step-2 checkpoint to the rows it had (every key
  of the first format), and a new run of the same spec writes those rows
  too.

  The rows kept from before the checkpoint, and every key that is not a
  float, must be equal bit for bit.  A float the run recomputes on this
  machine must equal the fixture's to float32 rounding: XLA's CPU code
  differs between processors (the fixture's machine and an AMD EPYC with
  AVX-512 differ by up to 6e-6 relative, and by 2.4e-7 in a difference of
  two losses), while a wrong resume (another step, state or batch) moves
  the values by orders of magnitude more."""
  import subprocess
  import sys
  spec = load_spec(FIXTURE)
  assert spec.tasks == ("a+b", "a-b") and spec.seeds == (0, 1)
  assert spec.hparams == {"lr": (1e-3, 2e-3)} and spec.steps == 4
  spec.validate()
  cut, new = str(tmp_path / "old"), str(tmp_path / "new")
  env = dict(os.environ, XLA_FLAGS=" ".join(
      [f for f in os.environ.get("XLA_FLAGS", "").split()
       if "xla_backend_optimization_level" not in f
       and "xla_cpu_use_fusion_emitters" not in f]
      + ["--xla_backend_optimization_level=0"]), JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", _FIRST_FORMAT, FIXTURE, cut,
                         new], env=env, capture_output=True, text=True,
                        timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert load_spec(cut) == spec  # now with a config.json
  for folder in (cut, new):
    for t in ("a+b", "a-b"):
      want = read_metrics(os.path.join(FIXTURE, t))
      got = read_metrics(os.path.join(folder, t))
      assert len(got) == len(want) == 4
      for g, w in zip(got, want):
        if folder == cut and w["step"] <= 2:  # kept from the checkpoint
          assert {k: g[k] for k in w} == w
        for k, v in w.items():
          if isinstance(v, float) and not isinstance(g[k], bool):
            assert np.isclose(g[k], v, rtol=5e-5, atol=1e-6), (t, k, g, w)
          else:
            assert g[k] == v, (t, k, g[k], v)


def test_a_failing_cross_task_start_is_rolled_back(tmp_path, monkeypatch):
  """The runner's Guard: a cross-task run that fails before its first chunk
  leaves no folder behind; the memory estimate counts every task."""
  from ngrok_jax._src.running import cross_folder

  def boom(*a, **k):
    raise RuntimeError("no program")
  monkeypatch.setattr(cross_folder.TaskAxis, "start", boom)
  out = tmp_path / "fail"
  with pytest.raises(RuntimeError, match="no program"):
    runner.run(CFG, tasks=TASKS, seeds=SEEDS, steps=STEPS, eval_every=EVERY,
               out_dir=str(out), progress=False, report=lambda m: None)
  assert not out.exists()
  monkeypatch.undo()
  one = runner.make_spec(CFG, "neuralgrok", SEEDS, STEPS, EVERY)
  three = runner.make_spec(CFG, tasks=TASKS, seeds=SEEDS, steps=STEPS,
                           eval_every=EVERY)
  assert runfolder.estimate_bytes(three) == 3 * runfolder.estimate_bytes(one)
  monkeypatch.setattr(runfolder, "_available_bytes", lambda: 1000)
  with pytest.raises(ValueError, match="memory"):
    runner.run(CFG, tasks=TASKS, seeds=SEEDS, steps=STEPS, eval_every=EVERY,
               out_dir=str(out), progress=False, report=lambda m: None)
  assert not out.exists()
