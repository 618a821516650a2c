"""Runner: steps-to-generalize on synthetic curves, summaries (sweep groups,
divergence), divergence of one seed in a vmapped run, atomic writes."""
import json
import os

import jax
import numpy as np
import pytest

import ngrok_jax as nj
from ngrok_jax._src.running import runner
from run_folders import TINY



def _spec(methods=("adam",), seeds=(0, 1, 2), steps=50, eval_every=10,
          hparams=None):
  return runner.make_spec(TINY, list(methods), list(seeds), steps,
                          eval_every, hparams=hparams)


def _rows(method, seed, accs, diverged_at=-1, eval_every=10):
  return [{"method": method, "seed": seed, "step": (i + 1) * eval_every,
           "test/acc": a, "diverged_at": diverged_at}
          for i, a in enumerate(accs)]


def test_steps_to_generalize_on_synthetic_curves():
  rows = (_rows("adam", 0, [0.1, 0.5, 0.96, 0.97, 0.995]) +
          _rows("adam", 1, [0.1, 0.2, 0.3, 0.4, 0.5]) +            # never
          _rows("adam", 2, [0.2, 0.951, 0.99, None, None], diverged_at=35))
  s = runner.summarize(rows, _spec())
  per = s["methods"]["adam"]
  assert per["steps_to_95"] == [30, None, 20]
  assert per["steps_to_99"] == [50, None, 30]
  assert per["diverged_at"] == [None, None, 35] and per["num_diverged"] == 1
  assert per["t95"]["success"] == 2 and per["t95"]["success_rate"] == \
      pytest.approx(2 / 3)
  assert per["t95"]["median"] == 25 and per["t95"]["iqr"] == pytest.approx(5)
  assert per["final_test_acc"] == [0.995, 0.5, None]
  json.dumps(s, allow_nan=False)  # valid JSON, "never" is null

  # all never: median and IQR are None, success 0
  rows = [r for sd in (0, 1, 2) for r in _rows("adam", sd, [0.1] * 5)]
  per = runner.summarize(rows, _spec())["methods"]["adam"]
  assert per["t95"]["median"] is None and per["t95"]["iqr"] is None
  assert per["t95"]["success_rate"] == 0
  line = runner.summary_line("adam", per)
  assert "never (0/3)" in line and "\n" not in line

  # a frozen (diverged) seed's later evaluations do not count
  rows = _rows("adam", 0, [0.1, 0.2, 0.99, 0.99, 0.99], diverged_at=15)
  per = runner.summarize(rows, _spec(seeds=[0]))["methods"]["adam"]
  assert per["steps_to_95"] == [None]


def test_sweep_groups_in_summary():
  spec = _spec(methods=("rescale",), seeds=(0, 1, 2, 3),
               hparams={"c": [0.5, 0.5, 2.0, 2.0]})
  rows = (_rows("rescale", 0, [0.96] * 5) + _rows("rescale", 1, [0.1] * 5) +
          _rows("rescale", 2, [0.1, 0.99, 1, 1, 1]) +
          _rows("rescale", 3, [0.1, 0.1, 0.97, 1, 1]))
  g = runner.summarize(rows, spec)["methods"]["rescale"]["groups"]
  assert set(g) == {"c=0.5", "c=2"}
  assert g["c=0.5"]["steps_to_95"] == [10, None]
  assert g["c=2"]["t95"]["median"] == 25 and g["c=2"]["t95"]["success"] == 2


def test_one_seed_diverges_others_unaffected(tmp_path):
  # seed 1 gets a huge learning rate: non-finite, marked, frozen
  cfg = nj.TrainConfig(method="adam", **TINY)
  kw = dict(methods=["adam"], steps=30, eval_every=10, progress=False,
            plots=False, report=lambda m: None)
  # (adam is unclipped by default, as the reference's baseline)
  s = runner.run(cfg, seeds=[0, 1], hparams={"lr": [1e-3, 1e30]},
                 out_dir=str(tmp_path / "div"), **kw)
  per = s["methods"]["adam"]
  assert per["diverged_at"][0] is None
  assert per["diverged_at"][1] is not None and per["num_diverged"] == 1
  rows = runner.read_metrics(str(tmp_path / "div"))
  # the same seed next to a healthy neighbour instead (same program)
  alone = runner.run(cfg, seeds=[0, 2], out_dir=str(tmp_path / "alone"), **kw)
  rows0 = [r for r in runner.read_metrics(str(tmp_path / "alone"))
           if r["seed"] == 0]
  a = [r for r in rows if r["seed"] == 0]
  assert len(a) == len(rows0) == 3
  for r, q in zip(a, rows0):
    for k in ("train/loss", "test/acc", "weights/norm", "grad/age"):
      assert r[k] == pytest.approx(q[k], rel=1e-4, abs=1e-6), k
  assert alone["methods"]["adam"]["diverged_at"] == [None, None]
  d = [r for r in rows if r["seed"] == 1]
  assert all(r["diverged_at"] == per["diverged_at"][1] for r in d
             if r["step"] > per["diverged_at"][1])
  # frozen: its parameters stop changing after divergence
  norms = [r["weights/norm"] for r in d if r["step"] > per["diverged_at"][1]]
  assert len(set(norms)) <= 1
  summary = json.load(open(tmp_path / "div" / "summary.json"))
  assert summary["methods"]["adam"]["diverged_at"] == per["diverged_at"]


def test_nan_gradient_marks_seed_diverged():
  # a NaN learning-rate path is refused up front; a NaN from the data side is
  # simulated with an infinite c for rescaling (c * g / ||g|| -> inf, NaN)
  with pytest.raises(ValueError, match="c must be > 0"):
    runner.make_spec(TINY, ["rescale"], 2, 10, 5,
                     hparams={"c": [1.0, float("nan")]})
  cfg = nj.TrainConfig(method="rescale", **TINY)
  tr = nj.Trainer(cfg)
  state, data = tr.init([0, 1])
  # poison seed 1's parameters with a NaN: the next step marks it diverged
  import jax.numpy as jnp
  leaves, tdef = jax.tree.flatten(state.seeds.params)
  leaves[0] = leaves[0].at[1].set(jnp.nan)
  state = state._replace(seeds=state.seeds._replace(
      params=jax.tree.unflatten(tdef, leaves)))
  state, _ = tr.train_steps(state, data, 10)
  m = tr.evaluate(state, data)
  assert list(np.asarray(m["diverged_at"])) == [-1, 0]


def test_in_memory_run_and_validation_messages():
  s = runner.run(nj.TrainConfig(method="grokfast-ema", **TINY),
                 methods="grokfast-ema", seeds=2, steps=20, eval_every=10,
                 out_dir=None, progress=False, plots=False)
  assert s["methods"]["grokfast-ema"]["last_step"] == [20, 20]
  for kw, msg in ((dict(steps=0), "steps must be a positive"),
                  (dict(eval_every=20), "must be <= steps"),
                  (dict(seeds=[1, 1]), "distinct"),
                  (dict(seeds=0), "positive number of seeds"),
                  (dict(methods="adam,foo"), "unknown method 'foo'"),
                  (dict(checkpoint_every=7), "multiple of eval_every"),
                  (dict(keep_checkpoints=0), "keep_checkpoints"),
                  (dict(hparams={"lr": [1e-3]}), "one value per seed"),
                  (dict(hparams={"zeta": 1}), "unknown hyperparameter"),
                  (dict(config={"task": "a+b", "dimm": 3}), "unknown config"),
                  (dict(config=3), "TrainConfig or a dict")):
    args = dict(config=TINY, methods="adam", seeds=2, steps=10, eval_every=5)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
      runner.make_spec(**args)
  with pytest.raises(ValueError, match="resume needs out_dir"):
    runner.run(TINY, methods="adam", seeds=1, steps=5, eval_every=5,
               resume=True, progress=False)


def test_atomic_write_and_existing_run_refused(tmp_path):
  p = str(tmp_path / "x.json")
  runner.atomic_write(p, "{}")
  runner.atomic_write(p, b'{"a": 1}')
  assert json.load(open(p)) == {"a": 1}
  assert os.listdir(tmp_path) == ["x.json"]  # no temporary left behind
  os.makedirs(tmp_path / "run")
  (tmp_path / "run" / "config.json").write_text("{}")
  with pytest.raises(ValueError, match="already holds a run"):
    runner.run(TINY, methods="adam", seeds=1, steps=5, eval_every=5,
               out_dir=str(tmp_path / "run"), progress=False)
  with pytest.raises(ValueError, match="not a valid run config"):
    runner.resume(str(tmp_path / "run"))


def test_held_evaluations_counts_the_latest_streak_of_every_seed():
  rows = (_rows("adam", 0, [0.5, 0.99, 0.995, 1.0]) +
          _rows("adam", 1, [0.99, 0.2, 0.999, 0.999]))
  assert runner.held_evaluations(rows, "adam", [0, 1]) == 2
  assert runner.held_evaluations(rows, "adam", [0]) == 3
  rows += _rows("adam", 2, [0.99, 0.99, 0.99, 0.5])
  assert runner.held_evaluations(rows, "adam", [0, 1, 2]) == 0


def test_stop_after_ends_a_method_early_and_is_recorded(tmp_path):
  # every evaluation "holds" when the bar is 0, so the run must stop after
  # exactly stop_after evaluations, save, and stay finished on --resume
  out = str(tmp_path / "run")
  s = runner.run(TINY, methods="adam", seeds=2, steps=100, eval_every=10,
                 out_dir=out, progress=False, plots=False, stop_after=3,
                 stop_acc=0.0)
  per = s["methods"]["adam"]
  assert per["last_step"] == [30, 30] and per["stopped_early_at"] == 30
  assert per["complete"]
  saved = json.load(open(os.path.join(out, "config.json")))
  assert (saved["stop_after"], saved["stop_acc"]) == (3, 0.0)
  assert len(runner.read_metrics(out)) == 3 * 2  # nothing after the stop
  s2 = runner.resume(out, progress=False, plots=False)
  assert s2["methods"]["adam"]["last_step"] == [30, 30]
  assert s2["methods"]["adam"]["stopped_early_at"] == 30
  with pytest.raises(ValueError, match="stop_after"):
    runner.make_spec(TINY, "adam", 1, 10, 5, stop_after=-1)
  # without stop_after the same run goes to the end
  s3 = runner.run(TINY, methods="adam", seeds=1, steps=30, eval_every=10,
                  out_dir=None, progress=False, plots=False)
  assert s3["methods"]["adam"]["stopped_early_at"] is None


def test_run_takes_a_preset_and_its_values_for_arguments_left_none(
    monkeypatch):
  """runner.run(preset=...) passes the preset to make_spec: an argument
  left as None takes the preset's value, else make_spec's default."""
  got = []
  monkeypatch.setattr(runner, "execute",
                      lambda spec, out_dir, **kw: got.append(spec))
  runner.run({"p": 11}, ["adamw", "adam"], preset="paper-add")
  s = got[-1]
  assert (s.seeds, s.steps, s.eval_every, s.checkpoint_every) == (
      (0, 1, 2, 3), 300_000, 100, 10_000)
  assert s.configs["adamw"].wd == 1.0 and s.configs["adam"].wd == 1e-3
  assert s.configs["adamw"].p == 11 and s.configs["adamw"].depth == 2
  runner.run({"wd": 0.5}, ["adamw"], 2, 20, 10, preset="paper-add",
             checkpoint_every=0, method_overrides={"adamw": {"lr": 0.01}})
  s = got[-1]
  assert (s.seeds, s.steps, s.eval_every, s.checkpoint_every) == (
      (0, 1), 20, 10, None)
  assert s.configs["adamw"].wd == 0.5 and s.configs["adamw"].lr == 0.01
  runner.run(TINY, "adam")  # no preset: the defaults, as before
  s = got[-1]
  assert (s.seeds, s.steps, s.eval_every, s.keep_checkpoints,
          s.amplifier_seed, s.stop_acc, s.checkpoint_every) == (
              (0, 1, 2, 3), 1000, 100, 3, 0, runner.STOP_ACC, None)


def test_grad_range_is_one_program_per_config_and_the_gradient_extremes():
  """``ampfile.grad_range_fn``: trainers of equal configs share one jitted
  program (a run asks at its start and its end); per seed it gives the
  min and max gradient component over the seed's train split, and seed
  0's gradient tree."""
  from ngrok_jax import ampfile
  cfg = nj.TrainConfig(**{**TINY, "method": "neuralgrok"})
  a, b = nj.Trainer(cfg), nj.Trainer(cfg)
  assert ampfile.grad_range_fn(a) is ampfile.grad_range_fn(b)
  other = nj.Trainer(nj.TrainConfig(**{**TINY, "method": "neuralgrok",
                                       "p": 13}))
  assert ampfile.grad_range_fn(other) is not ampfile.grad_range_fn(a)
  state, data = a.init(seeds=[0, 1])
  lo, hi, g0 = ampfile.grad_range_fn(b)(state, data)
  for s in range(2):
    params = jax.tree.map(lambda x: x[s], state.seeds.params)
    idx = np.asarray(data.train[s])
    g = jax.grad(a.loss_fn)(params, data.inputs[idx], data.labels[idx])
    flat = np.concatenate([np.ravel(l) for l in jax.tree.leaves(g)])
    np.testing.assert_allclose([lo[s], hi[s]], [flat.min(), flat.max()],
                               rtol=1e-5, atol=1e-8)
    if s == 0:
      for x, y in zip(jax.tree.leaves(g0), jax.tree.leaves(g)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-8)


def test_compilation_is_a_reported_stage_before_the_training(tmp_path):
  """The compilation is a stage of its own, reported with its time before
  the first chunk trains (so the progress bar's rate and ETA measure the
  training alone)."""
  lines = []

  def hook(chunk):
    lines.append(f"chunk {chunk.step}")

  runner.run(TINY, methods="adam", seeds=1, steps=20, eval_every=10,
             out_dir=None, progress=False, plots=False, report=lines.append,
             hooks=[hook])
  assert lines[0] == "adam: compiling the training step..."
  assert lines[1].startswith("adam: compiled in ") and lines[1].endswith(" s")
  assert lines[2:4] == ["chunk 10", "chunk 20"], lines


def test_a_stop_signal_is_announced_at_once_even_while_c_code_runs():
  """The first SIGINT says at once what will happen while the main thread
  is blocked in C code (as in a compilation: Python's own handler waits
  until it returns), the second that it aborts; the handler still only
  sets the flag, then raises KeyboardInterrupt."""
  import signal
  import threading
  import time
  from ngrok_jax._src.running.hooks import (ABORT_NOTICE, STOP_NOTICE,
                                            StopFlag)
  said = []
  r, w = os.pipe()
  try:
    with StopFlag(notify=lambda m: said.append((time.perf_counter(), m))) as s:
      # the kernel restarts the blocked read after the signal (SA_RESTART):
      # the main thread stays in C until the pipe is written, 1 s later
      signal.siginterrupt(signal.SIGINT, False)
      threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
      threading.Timer(1.0, os.write, (w, b"x")).start()
      os.read(r, 1)
      back = time.perf_counter()
      assert s.signum == signal.SIGINT
      assert said and said[0][1] == STOP_NOTICE.format(name="SIGINT")
      assert said[0][0] < back - 0.5, "the notice waited for the C code"
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
      deadline = time.perf_counter() + 5
      while len(said) < 2 and time.perf_counter() < deadline:
        time.sleep(0.01)
  finally:
    os.close(r)
    os.close(w)
  assert [m for _, m in said] == [STOP_NOTICE.format(name="SIGINT"),
                                  ABORT_NOTICE]
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_chunks_drives_any_engine_and_saves_only_where_it_may():
  """Protects the one loop that training and meta-training share: any
  :class:`ngrok_jax.runner.Engine` is driven in chunks to the budget, its
  rows gathered, hooks closed; the checkpoint hook saves what the engine
  says, never where it declines (``--synchronized``: mid-epoch), and a
  time limit ends the run at the first chunk where it may stop."""
  from ngrok_jax.hooks import CheckpointSaver, StopFlag, TimeLimit
  from ngrok_jax.runner import Engine, run_chunks

  class Counter:
    def advance(self, state, step, n):
      return state + n, [dict(step=step + k + 1) for k in range(n)]

    def checkpoint(self, chunk):  # only every 4 steps
      return None if chunk.step % 4 else (chunk.state, dict(
          num_rows=len(chunk.history)))

  class Saves:
    def __init__(self):
      self.saved, self.waited = [], False

    def save(self, step, state, meta):
      self.saved.append((step, state, meta))

    def wait(self):
      self.waited = True
  assert isinstance(Counter(), Engine)
  ck, history = Saves(), [dict(step=0)]
  state, last = run_chunks(Counter(), "count", 0, 0, 10, 2, history, 0.0,
                           [CheckpointSaver(ck, 2, StopFlag(), {},
                                            Counter().checkpoint)])
  assert state == 10 and last.step == 10 and last.done and ck.waited
  assert [r["step"] for r in history] == list(range(11))
  assert ck.saved == [(4, 4, dict(num_rows=5)), (8, 8, dict(num_rows=9))]
  state, last = run_chunks(Counter(), "count", 2, 2, 10, 1, [], 0.0, [
      TimeLimit(1e-9, StopFlag(), lambda chunk: chunk.step % 4 == 0)])
  assert state == 4 and last.step == 4 and last.done
