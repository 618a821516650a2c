"""Seed-axis sharding: sharded runs equal the single-device run.

The multi-device check runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag must be set
before jax starts, so it cannot run in the pytest process).
"""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ngrok_jax.sharding import pad_seeds, seed_mesh, shard_seeds
from ngrok_jax.train import TrainConfig, Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = dict(task="a+b", p=11, depth=1, dim=16, heads=2, batch_size=32,
            amp_hidden=(8, 8), meta_every=2, wd=1e-3)

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from ngrok_jax.sharding import shard_seeds, seed_mesh
    from ngrok_jax.train import TrainConfig, Trainer
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
  tr = Trainer(TrainConfig(method="adam", **TINY))
  state, data = tr.init(seeds=[0, 1, 2])
  assert pad_seeds(3, seed_mesh(jax.devices()[:1])) == 3
  with pytest.raises(ValueError, match="seeds"):
    shard_seeds(state, data, jax.sharding.Mesh(np.asarray(jax.devices()[:1]),
                                               ("other",)))


RUNNER_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import jax
    from ngrok_jax import runner
    from ngrok_jax.train import TrainConfig
    cfg = json.loads(sys.argv[1]); base = sys.argv[2]
    cfg["amp_hidden"] = tuple(cfg["amp_hidden"])
    msgs = []
    kw = dict(methods=["neuralgrok"], seeds=4, steps=20, eval_every=10,
              progress=False, plots=False, report=msgs.append)
    c = TrainConfig(**cfg)
    runner.run(c, out_dir=os.path.join(base, "one"), devices=1, **kw)
    runner.run(c, out_dir=os.path.join(base, "four"), **kw)
    # 4 devices for 10 steps (checkpointed), then resumed on 1 device
    runner.run(c, out_dir=os.path.join(base, "mixed"), checkpoint_every=10,
               **dict(kw, steps=10))
    spec = runner.load_spec(os.path.join(base, "mixed"))
    spec = runner.make_spec(c, ["neuralgrok"], 4, 20, 10, checkpoint_every=10)
    runner.resume(os.path.join(base, "mixed"), spec=spec, force=True,
                  progress=False, plots=False, report=msgs.append, devices=1)
    counts = {s: runner._shard_count(s, None) for s in (1, 3, 4, 5, 8)}
    counts["cap2"] = runner._shard_count(8, 2)
    print(json.dumps(dict(devices=jax.device_count(), msgs=msgs,
                          counts=counts)))
""")


def test_runner_shards_seeds_and_resumes_across_device_counts(tmp_path):
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  res = subprocess.run(
      [sys.executable, "-c", RUNNER_SCRIPT, json.dumps(TINY), str(tmp_path)],
      env=env, capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  out = json.loads(res.stdout.strip().splitlines()[-1])
  assert out["devices"] == 4
  assert "seeds sharded over 4 devices" in out["msgs"]
  # the largest device count <= 4 (or the cap) that divides the seeds
  assert out["counts"] == {"1": 1, "3": 3, "4": 4, "5": 1, "8": 4,
                           "cap2": 2}

  def rows(name):
    with open(tmp_path / name / "metrics.jsonl") as f:
      return [json.loads(l) for l in f]
  one, four, mixed = rows("one"), rows("four"), rows("mixed")
  assert len(one) == len(four) == len(mixed) == 8  # 4 seeds x 2 evals
  for a, b, c in zip(one, four, mixed):
    assert (a["seed"], a["step"]) == (b["seed"], b["step"]) == (
        c["seed"], c["step"])
    for k in ("train/loss", "test/loss", "test/acc", "outer/loss"):
      # sharded programs round differently (see test above): close, not
      # bitwise
      np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(c[k], a[k], rtol=1e-4, atol=1e-6)
