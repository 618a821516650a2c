"""Checkpoints: round trip, keep-K, corruption fallback, exact resume after
SIGKILL of a real run, SIGTERM checkpointing, config mismatch on resume."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import ngrok_jax as nj
from ngrok_jax import runner
from ngrok_jax.checkpoint import CheckpointError, Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(task="a+b", p=11, dim=16, heads=2, depth=1, amp_hidden=(8, 8),
            batch_size=32, meta_every=2)


def _state(method="neuralgrok", seeds=(0, 1), steps=10):
  tr = nj.Trainer(nj.TrainConfig(method=method, **TINY))
  state, data = tr.init(list(seeds))
  if steps:
    state, _ = tr.train_steps(state, data, steps)
  return tr, state, data


def _equal(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y)) and
             np.asarray(x).dtype == np.asarray(y).dtype
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_round_trip_keep_k_and_corruption_fallback(tmp_path):
  tr, state, data = _state()
  states = {}
  with Checkpointer(str(tmp_path / "ck"), max_to_keep=2) as ck:
    for step in (10, 20, 30):
      states[step] = jax.tree.map(np.array, state)
      ck.save(step, state, dict(rows=[{"a": step}], wall_time=1.5))
      state, _ = tr.train_steps(state, data, 10)
  ck = Checkpointer(str(tmp_path / "ck"), max_to_keep=2)
  assert ck.steps() == [20, 30]  # keeps the last K
  step, restored, meta = ck.restore_latest(states[30])
  assert step == 30 and meta["rows"] == [{"a": 30}]
  assert meta["wall_time"] == 1.5
  assert _equal(restored, states[30])  # bit for bit, dtypes included
  assert isinstance(restored, nj.TrainState)

  # corrupt the newest checkpoint: truncate every data file of its state
  for root, _, files in os.walk(tmp_path / "ck" / "30" / "state"):
    for f in files:
      p = os.path.join(root, f)
      with open(p, "r+b") as fh:
        fh.truncate(max(os.path.getsize(p) // 2, 0))
  reports = []
  step, restored, _ = ck.restore_latest(states[30], report=reports.append)
  assert step == 20 and _equal(restored, states[20])
  assert reports and "checkpoint 30" in reports[0]
  assert ck.steps() == [20]  # moved aside: step 30 can be saved again
  assert any(d.startswith("corrupt.30") for d in os.listdir(tmp_path / "ck"))

  # and the older one too: nothing usable left -> CheckpointError
  for root, _, files in os.walk(tmp_path / "ck" / "20" / "state"):
    for f in files:
      open(os.path.join(root, f), "wb").close()
  with pytest.raises(CheckpointError):
    ck.restore_latest(states[30], report=lambda m: None)
  ck.save(30, states[30], {})  # the quarantined steps can be saved again
  ck.wait()
  assert ck.steps() == [30]
  ck.close()


def test_checksum_detects_flipped_bytes_and_template_mismatch(tmp_path):
  tr, state, _ = _state(method="adam", steps=0)
  ck = Checkpointer(str(tmp_path / "ck"))
  ck.save(0, state, {})
  ck.wait()
  meta_file = tmp_path / "ck" / "0" / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  meta["checksum"] = "0" * 64
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(CheckpointError, match="checksum"):
    ck.restore(0, state)
  _, other, _ = _state(method="rescale", steps=0)  # other opt state
  with pytest.raises(CheckpointError):
    ck.restore(0, other)
  ck.close()
  with pytest.raises(ValueError):
    Checkpointer(str(tmp_path / "x"), max_to_keep=0)


def _cli(args, env_extra=None, **kw):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
  return subprocess.Popen([sys.executable, "-m", "ngrok_jax"] + args,
                          cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


TRAIN = ["train", "--task", "a+b", "--p", "11", "--dim", "16", "--heads", "2",
         "--depth", "1", "--amp-hidden", "8,8", "--batch-size", "32",
         "--meta-every", "2", "--methods", "neuralgrok,grokfast-ma",
         "--window", "3", "--seeds", "2", "--steps", "80", "--eval-every",
         "10", "--checkpoint-every", "20", "--no-progress", "--no-plots"]


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
  cache = {}  # the session's compilation cache is inherited via os.environ
  ref = _cli(TRAIN + ["--out", str(tmp_path / "ref")], cache)
  out, err = ref.communicate(timeout=600)
  assert ref.returncode == 0, err[-3000:]

  victim = tmp_path / "victim"
  proc = _cli(TRAIN + ["--out", str(victim)],
              dict(cache, NGROK_JAX_TEST_SLEEP="0.5"))
  ck = victim / "checkpoints" / "neuralgrok"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    steps = [d for d in os.listdir(ck)] if ck.exists() else []
    if any(s.isdigit() and int(s) >= 20 for s in steps):
      break
    time.sleep(0.1)
  assert proc.poll() is None, "the run ended before it could be killed"
  time.sleep(0.5)  # somewhere between checkpoints, maybe mid-save
  proc.send_signal(signal.SIGKILL)
  proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  summary = json.loads((victim / "summary.json").read_text()) if (
      victim / "summary.json").exists() else None
  assert summary is None or not summary["methods"]["grokfast-ma"]["complete"]
  # atomic writes: whatever was on disk at the kill parses completely
  json.loads((victim / "config.json").read_text())
  if (victim / "metrics.jsonl").exists():
    runner.read_metrics(str(victim))

  res = _cli(["train", "--resume", str(victim), "--no-progress",
              "--no-plots"], cache)
  out, err = res.communicate(timeout=600)
  assert res.returncode == 0, err[-3000:]
  assert "resuming from step" in err
  assert (victim / "metrics.jsonl").read_bytes() == (
      tmp_path / "ref" / "metrics.jsonl").read_bytes()
  a = json.loads((victim / "summary.json").read_text())
  b = json.loads((tmp_path / "ref" / "summary.json").read_text())
  for m in ("neuralgrok", "grokfast-ma"):
    a["methods"][m].pop("wall_time_s"), b["methods"][m].pop("wall_time_s")
  assert a == b


def test_sigterm_saves_checkpoint_and_in_process_resume_matches(
    tmp_path, monkeypatch):
  cfg = nj.TrainConfig(method="adam", **TINY)
  kw = dict(methods=["adam"], seeds=2, steps=40, eval_every=10,
            progress=False, plots=False, report=lambda m: None)
  ref = runner.run(cfg, out_dir=str(tmp_path / "ref"), **kw)
  calls = []

  def throttle():
    calls.append(1)
    if len(calls) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
  monkeypatch.setattr(runner, "_test_throttle", throttle)
  with pytest.raises(runner.RunInterrupted) as ei:
    runner.run(cfg, out_dir=str(tmp_path / "b"), **kw)
  assert ei.value.signum == signal.SIGTERM
  assert "step 20/40" in str(ei.value)
  ck = Checkpointer(str(tmp_path / "b" / "checkpoints" / "adam"))
  assert ck.steps() == [20]
  ck.close()
  monkeypatch.setattr(runner, "_test_throttle", lambda: None)
  # a differing configuration is refused, naming the field
  with pytest.raises(ValueError, match=r"configs\.adam\.lr"):
    runner.run(nj.TrainConfig(method="adam", lr=2e-3, **TINY),
               out_dir=str(tmp_path / "b"), resume=True, **kw)
  got = runner.resume(str(tmp_path / "b"), progress=False, plots=False,
                      report=lambda m: None)
  assert (tmp_path / "b" / "metrics.jsonl").read_bytes() == (
      tmp_path / "ref" / "metrics.jsonl").read_bytes()
  assert got["methods"]["adam"]["steps_to_95"] == \
      ref["methods"]["adam"]["steps_to_95"]
  # the handlers are restored
  assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) or \
      not isinstance(signal.getsignal(signal.SIGTERM), type(throttle))


def test_signal_in_the_last_chunk_of_a_method_is_not_swallowed(
    tmp_path, monkeypatch):
  # SIGTERM while the first method runs its final chunk: that method
  # completes and is saved, the next one must not start, and run() must
  # raise instead of returning as if the whole run were done.
  cfg = nj.TrainConfig(method="adam", **TINY)
  kw = dict(methods=["adam", "rescale"], seeds=2, steps=20, eval_every=10,
            progress=False, plots=False, report=lambda m: None)
  calls = []

  def throttle():
    calls.append(1)
    if len(calls) == 2:  # adam's last chunk (step 20/20)
      os.kill(os.getpid(), signal.SIGTERM)
  monkeypatch.setattr(runner, "_test_throttle", throttle)
  with pytest.raises(runner.RunInterrupted) as ei:
    runner.run(cfg, out_dir=str(tmp_path / "r"), **kw)
  assert ei.value.signum == signal.SIGTERM
  assert "rescale" in str(ei.value)
  assert len(calls) == 2  # rescale never ran a chunk
  monkeypatch.setattr(runner, "_test_throttle", lambda: None)
  run = runner.load_run(str(tmp_path / "r"))
  assert {r["method"] for r in run["rows"]} == {"adam"}
  got = runner.resume(str(tmp_path / "r"), progress=False, plots=False,
                      report=lambda m: None)
  assert got["methods"]["rescale"]["complete"]
