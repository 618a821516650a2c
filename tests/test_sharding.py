"""Seed-axis sharding: sharded runs equal the single-device run.

The multi-device check runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag must be set
before jax starts, so it cannot run in the pytest process).
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ngrok_jax._src.core.sharding import pad_seeds, seed_mesh, shard_seeds
from ngrok_jax._src.training.train import TrainConfig
from ngrok_jax._src.training.trainer import Trainer
from tests.tolerances import layout_atol
import run_folders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = dict(run_folders.TINY, wd=1e-3)

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from ngrok_jax._src.core.sharding import shard_seeds, seed_mesh
    from ngrok_jax._src.training.train import TrainConfig
    from ngrok_jax._src.training.trainer import Trainer
    cfg = json.loads(sys.argv[1])
    cfg["amp_hidden"] = tuple(cfg["amp_hidden"])
    out = {"devices": jax.device_count()}
    for method in ("neuralgrok", "adam"):
      tr = Trainer(TrainConfig(method=method, **cfg))
      # single device
      state, data = tr.init(seeds=[0, 1, 2, 3, 4, 5, 6, 7])
      ref, ref_out = tr.train_steps(state, data, num_steps=5)
      ref_ev = tr.evaluate(ref, data)
      # sharded over all 4 devices
      state, data = tr.init(seeds=[0, 1, 2, 3, 4, 5, 6, 7])
      state, data = shard_seeds(state, data)
      sh, sh_out = tr.train_steps(state, data, num_steps=5)
      sh_ev = tr.evaluate(sh, data)
      leaf = jax.tree.leaves(sh.seeds.params)[0]
      def rel(x, y):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return float(np.max(np.abs(x - y)) / max(1.0, float(np.max(np.abs(x)))))
      floats = lambda t: [l for l in jax.tree.leaves(t)
                          if np.issubdtype(np.asarray(l).dtype, np.floating)]
      p_ref = np.concatenate([np.ravel(l) for l in floats(ref.seeds.params)])
      p_sh = np.concatenate([np.ravel(l) for l in floats(sh.seeds.params)])
      out[method] = dict(
          metrics_rel_diff=max(rel(x, y) for x, y in zip(
              floats((ref_out, ref_ev)), floats((sh_out, sh_ev)))),
          state_rel_diff=max(rel(x, y) for x, y in zip(
              floats(ref), floats(sh))),
          params_frac_differ=float(np.mean(np.abs(p_ref - p_sh) > 1e-6)),
          int_equal=all(np.array_equal(a, b) for a, b in zip(
              jax.tree.leaves((ref, ref_ev)), jax.tree.leaves((sh, sh_ev)))
              if not np.issubdtype(np.asarray(a).dtype, np.floating)),
          out_devices=len(leaf.sharding.device_set),
          shard_shape=list(leaf.addressable_shards[0].data.shape),
          full_shape=list(leaf.shape),
          finite=bool(np.all(np.isfinite(np.asarray(sh_out["loss"])))))
    tr = Trainer(TrainConfig(method="adam", **cfg))
    state, data = tr.init(seeds=[0, 1, 2])
    try:
      shard_seeds(state, data)
      out["uneven_error"] = None
    except ValueError as e:
      out["uneven_error"] = str(e)
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.slow  # opt-in: test_runner_shards_seeds_and_resumes_across_device_counts
# (and test_multiprocess) check sharded == 1-device runs in CI
def test_sharded_run_equals_single_device_run():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=4").strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(TINY)],
                        env=env, cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  res = json.loads(line[len("RESULT"):])
  assert res["devices"] == 4
  assert res["uneven_error"] and "multiple of 4" in res["uneven_error"]
  for method in ("neuralgrok", "adam"):
    r = res[method]
    assert r["finite"]
    assert r["out_devices"] == 4, r  # the output stays sharded
    assert r["shard_shape"][0] == 2 and r["full_shape"][0] == 8, r
    assert r["int_equal"], r
    # Same computation per seed; only XLA's per-shape kernel choices (float
    # summation order) differ.  The attention key bias has a gradient that is
    # exactly zero in real arithmetic (softmax ignores it), i.e. pure rounding
    # noise, and Adam turns noise into +-lr steps whose sign can flip between
    # the two programs: those few entries differ by up to ~lr * steps.
    assert r["metrics_rel_diff"] <= 1e-4, r
    assert r["state_rel_diff"] <= 2e-3, r
    assert r["params_frac_differ"] <= 0.01, r


def test_shard_seeds_single_device_is_identity():
  tr = Trainer(TrainConfig(method="adam", **TINY))
  state, data = tr.init(seeds=[0, 1])
  s2, d2 = shard_seeds(state, data, seed_mesh(jax.devices()[:1]))
  for a, b in zip(jax.tree.leaves((state, data)), jax.tree.leaves((s2, d2))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mesh_without_seed_axis_is_rejected():
  # the seeds of the test above: the same compiled init program
  tr = Trainer(TrainConfig(method="adam", **TINY))
  state, data = tr.init(seeds=[0, 1])
  assert pad_seeds(3, seed_mesh(jax.devices()[:1])) == 3
  with pytest.raises(ValueError, match="seeds"):
    shard_seeds(state, data, jax.sharding.Mesh(np.asarray(jax.devices()[:1]),
                                               ("other",)))


RUNNER_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import jax
    from ngrok_jax import TrainConfig
    from ngrok_jax._src.running import runner
    cfg = json.loads(sys.argv[1]); four, one_to_four, ready = sys.argv[2:5]
    cfg["amp_hidden"] = tuple(cfg["amp_hidden"])
    msgs = []
    kw = dict(progress=False, plots=False, report=msgs.append)
    # all local devices (the default): 4 seeds on 4 devices
    runner.run(TrainConfig(**cfg), out_dir=four, methods=["neuralgrok"],
               seeds=4, steps=20, eval_every=10, checkpoint_every=10, **kw)
    # a checkpoint written by the 1-device test process, continued here on
    # 4 devices (that process writes `ready` once the folder is in place)
    t0 = time.time()
    while not os.path.exists(ready):
      if time.time() - t0 > 600:
        sys.exit("timed out waiting for " + ready)
      time.sleep(0.2)
    runner.resume(one_to_four, **kw)
    counts = {s: runner._shard_count(s, None) for s in (1, 3, 4, 5, 8)}
    counts["cap2"] = runner._shard_count(8, 2)
    print(json.dumps(dict(devices=jax.device_count(), msgs=msgs,
                          counts=counts)))
""")


def _rows(folder):
  with open(os.path.join(folder, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


def _rewind(src, dst):
  """A copy of run folder ``src`` as if it had stopped after its step-10
  checkpoint (the step-20 checkpoint removed; resume rewrites the metrics
  from the checkpoint's history)."""
  shutil.copytree(src, dst)
  shutil.rmtree(os.path.join(dst, "checkpoints", "neuralgrok", "20"))
  os.remove(os.path.join(dst, "summary.json"))


def test_runner_shards_seeds_and_resumes_across_device_counts(tmp_path):
  """The runner on 4 forced host devices against the same run here (1
  device), and checkpoints moved between the two processes both ways."""
  from ngrok_jax._src.running import runner
  one, four = str(tmp_path / "one"), str(tmp_path / "four")
  ready = str(tmp_path / "ready")
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  # The 4-device process starts its run while this one does the reference
  # run (compiling dominates; the two overlap on two cores).
  log_out, log_err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
  with open(log_out, "w") as fo, open(log_err, "w") as fe:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER_SCRIPT, json.dumps(TINY), four,
         str(tmp_path / "one_to_four"), ready], env=env, stdout=fo, stderr=fe)
  try:
    kw = dict(progress=False, plots=False, report=lambda m: None, devices=1)
    runner.run(TrainConfig(**TINY), out_dir=one, methods=["neuralgrok"],
               seeds=4, steps=20, eval_every=10, checkpoint_every=10, **kw)
    _rewind(one, str(tmp_path / "one_to_four"))
    open(ready, "w").close()
    proc.wait(timeout=600)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  stdout, stderr = log_out.read_text(), log_err.read_text()
  assert proc.returncode == 0, stderr[-3000:]
  assert "donat" not in stderr, stderr[-3000:]  # donation still works
  out = json.loads(stdout.strip().splitlines()[-1])
  assert out["devices"] == 4
  assert out["msgs"].count("seeds sharded over 4 devices") == 2, out["msgs"]
  assert "neuralgrok: resuming from step 10" in out["msgs"]
  # the largest device count <= 4 (or the cap) that divides the seeds
  assert out["counts"] == {"1": 1, "3": 3, "4": 4, "5": 1, "8": 4,
                           "cap2": 2}
  # a checkpoint written by the 4-device process, continued here on 1
  _rewind(four, str(tmp_path / "four_to_one"))
  runner.resume(str(tmp_path / "four_to_one"), **kw)

  ref = _rows(one)
  assert len(ref) == 8  # 4 seeds x 2 evaluations
  for name in ("four", "one_to_four", "four_to_one"):
    rows = _rows(str(tmp_path / name))
    assert len(rows) == len(ref), name
    for a, b in zip(ref, rows):
      assert a.keys() == b.keys()
      for k, v in a.items():
        if not isinstance(v, float):  # method, seed, step, diverged_at
          assert b[k] == v, (name, k)
        elif k.endswith("/acc"):
          assert b[k] == v, (name, k)
        else:
          # Not bit for bit: each device runs a program vmapped over 1 seed
          # instead of 4, and XLA's CPU kernels round differently for
          # different shapes (the same happens on one device for seeds=[0]
          # vs [0, 1, 2, 3]); measured <= 3e-7 relative after 20 steps.
          # weights/entropy (-sum |w| log |w| over raw parameters) also sees
          # the attention key bias, whose true gradient is 0 (pure rounding
          # noise that Adam turns into +-lr steps): measured 2.6e-6.
          rtol = 1e-5 if k == "weights/entropy" else 1e-6
          np.testing.assert_allclose(b[k], v, rtol=rtol,
                                     atol=layout_atol(k),
                                     err_msg=f"{name} {k}")
