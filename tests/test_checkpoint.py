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
from ngrok_jax._src.running import runner
from ngrok_jax._src.storage.checkpoint import CheckpointError, Checkpointer
from run_folders import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_plain_orbax_reads_the_state_tree_with_named_leaves(tmp_path):
  """A checkpoint is the state pytree as it is: orbax alone (no ngrok_jax
  helpers, no template) restores it as nested dicts keyed by field names."""
  import orbax.checkpoint as ocp
  _, state, _ = _state()  # the round trip's program (no recompile)
  with Checkpointer(str(tmp_path / "ck")) as ck:
    ck.save(4, state, dict(rows=[], wall_time=0.0))
  mngr = ocp.CheckpointManager(str(tmp_path / "ck"),
                               item_names=("state", "meta"))
  got = mngr.restore(4, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
  mngr.close()
  tree, meta = got["state"], got["meta"]
  assert meta["layout"] == "tree" and meta["step"] == 4
  assert int(np.asarray(tree["step"])) == 10  # the state's own step
  seeds = tree["seeds"]
  assert {"params", "opt_state", "hparams"} <= set(seeds)
  kernel = seeds["params"]["params"]["head"]["kernel"]
  np.testing.assert_array_equal(
      kernel, np.asarray(state.seeds.params["params"]["head"]["kernel"]))
  assert np.asarray(seeds["hparams"]["lr"]).shape == (2,)  # per seed

  def keys(t):  # every dict key of the restored tree
    if isinstance(t, dict):
      return set(t) | set().union(*map(keys, t.values()))
    if isinstance(t, (list, tuple)):
      return set().union(*map(keys, t))
    return set()
  # the amplifier's parameters and the Adam moments are there by name too
  assert {"kernel_0", "bias_0", "mu", "nu", "tok_emb"} <= keys(seeds)
  # as many leaves as the state, none flattened away
  assert len(jax.tree.leaves(tree)) == len(jax.tree.leaves(state))


def test_old_flat_checkpoints_still_restore(tmp_path):
  """Checkpoints of the earlier layout ({"0000": leaf, ...}, no "layout" in
  meta) restore into the template's structure, bit for bit."""
  import orbax.checkpoint as ocp
  from ngrok_jax._src.storage.checkpoint import state_checksum
  _, state, _ = _state()  # the round trip's program (no recompile)
  leaves = [np.array(l) for l in jax.tree.leaves(state)]
  flat = {f"{i:04d}": l for i, l in enumerate(leaves)}
  meta = dict(rows=[{"step": 4}], wall_time=1.0, step=4,
              checksum=state_checksum(state), num_leaves=len(flat))
  mngr = ocp.CheckpointManager(str(tmp_path / "ck"),
                               item_names=("state", "meta"))
  mngr.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave(flat),
                                       meta=ocp.args.JsonSave(meta)))
  mngr.wait_until_finished()
  mngr.close()
  with Checkpointer(str(tmp_path / "ck")) as ck:
    step, restored, got = ck.restore_latest(state)
    assert step == 4 and got["rows"] == [{"step": 4}]
    assert _equal(restored, state) and isinstance(restored, nj.TrainState)
    # another configuration's template: a clear error, not a wrong state
    _, other, _ = _state(method="rescale", steps=0)
    with pytest.raises(CheckpointError, match="different state structure"):
      ck.restore(4, other)


#: ``python -m ngrok_jax`` with a per-chunk hook that sleeps 0.5 s, so that
#: a run can be killed mid-way (hooks are a Python argument of cli.main).
SLOW = ["-c", "import sys, time; from ngrok_jax import cli; sys.exit("
        "cli.main(sys.argv[1:], hooks=[lambda chunk: time.sleep(0.5)]))"]


def _cli(args, slow=False):
  # the session's compilation cache is inherited via os.environ
  return subprocess.Popen(
      [sys.executable] + (SLOW if slow else ["-m", "ngrok_jax"]) + args,
      cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


TRAIN = ["train", "--task", "a+b", "--p", "11", "--dim", "16", "--heads", "2",
         "--depth", "1", "--amp-hidden", "8,8", "--batch-size", "32",
         "--meta-every", "2", "--methods", "neuralgrok,grokfast-ma",
         "--window", "3", "--seeds", "2", "--steps", "80", "--eval-every",
         "10", "--checkpoint-every", "20", "--no-progress", "--no-plots"]


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
  ref = _cli(TRAIN + ["--out", str(tmp_path / "ref")])
  out, err = ref.communicate(timeout=600)
  assert ref.returncode == 0, err[-3000:]

  victim = tmp_path / "victim"
  proc = _cli(TRAIN + ["--out", str(victim)], slow=True)
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
              "--no-plots"])
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


def test_sigterm_saves_checkpoint_and_in_process_resume_matches(tmp_path):
  cfg = nj.TrainConfig(method="adam", **TINY)
  kw = dict(methods=["adam"], seeds=2, steps=40, eval_every=10,
            progress=False, plots=False, report=lambda m: None)
  ref = runner.run(cfg, out_dir=str(tmp_path / "ref"), **kw)
  calls = []

  def sigterm_at_second_chunk(chunk):
    calls.append(chunk.step)
    if len(calls) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(runner.RunInterrupted) as ei:
    runner.run(cfg, out_dir=str(tmp_path / "b"),
               hooks=[sigterm_at_second_chunk], **kw)
  assert ei.value.signum == signal.SIGTERM
  assert "step 20/40" in str(ei.value)
  ck = Checkpointer(str(tmp_path / "b" / "checkpoints" / "adam"))
  assert ck.steps() == [20]
  ck.close()
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
      not isinstance(signal.getsignal(signal.SIGTERM),
                     type(sigterm_at_second_chunk))


def test_signal_in_the_last_chunk_of_a_method_is_not_swallowed(tmp_path):
  # SIGTERM while the first method runs its final chunk: that method
  # completes and is saved, the next one must not start, and run() must
  # raise instead of returning as if the whole run were done.
  cfg = nj.TrainConfig(method="adam", **TINY)
  kw = dict(methods=["adam", "rescale"], seeds=2, steps=20, eval_every=10,
            progress=False, plots=False, report=lambda m: None)
  calls = []

  def sigterm_at_second_chunk(chunk):
    calls.append((chunk.method, chunk.step))
    if len(calls) == 2:  # adam's last chunk (step 20/20)
      os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(runner.RunInterrupted) as ei:
    runner.run(cfg, out_dir=str(tmp_path / "r"),
               hooks=[sigterm_at_second_chunk], **kw)
  assert ei.value.signum == signal.SIGTERM
  assert "rescale" in str(ei.value)
  assert calls == [("adam", 10), ("adam", 20)]  # rescale never ran a chunk
  run = runner.load_run(str(tmp_path / "r"))
  assert {r["method"] for r in run["rows"]} == {"adam"}
  got = runner.resume(str(tmp_path / "r"), progress=False, plots=False,
                      report=lambda m: None)
  assert got["methods"]["rescale"]["complete"]
