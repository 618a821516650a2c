"""A run folder written before the package layout (flat modules, no
``ngrok_jax._src``) still loads and resumes. Nothing of a run folder names
a module: config.json and summary.json are plain JSON (format
``ngrok_jax.run/1``), metrics.jsonl rows, and orbax checkpoints of the state
pytree (leaves named by their path) with a JSON checksum.

tests/fixtures/run_pre_layout was written by that layout: ``runner.run``
of ``TINY`` below, method neuralgrok, seeds 0 and 1, 30 steps, an evaluation
every 10, stopped by SIGTERM after the second evaluation (checkpoint at
step 20).
"""
import json
import os
import shutil

import numpy as np

from ngrok_jax._src.analysis import results
from ngrok_jax._src.running import runner
from ngrok_jax._src.storage import spec as spec_lib
from ngrok_jax._src.storage.checkpoint import Checkpointer

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "fixtures", "run_pre_layout")
TINY = dict(task="a+b", p=11, dim=16, heads=2, depth=1, amp_hidden=(8, 8),
            batch_size=32, meta_every=2)
QUIET = dict(progress=False, plots=False, report=lambda m: None)


def _lines(path):
  with open(os.path.join(path, "metrics.jsonl"), encoding="utf-8") as f:
    return f.read().splitlines()


def test_pre_layout_run_folder_loads_and_resumes(tmp_path):
  out = str(tmp_path / "old")
  shutil.copytree(FIXTURE, out)
  spec = spec_lib.load_spec(out)
  assert spec.methods == ["neuralgrok"] and spec.steps == 30
  run = results.load_run(out)
  assert sorted((r["seed"], r["step"]) for r in run["rows"]) == [
      (0, 10), (0, 20), (1, 10), (1, 20)]
  ck = Checkpointer(os.path.join(out, "checkpoints", "neuralgrok"))
  assert ck.steps() == [20]
  ck.close()
  before = _lines(out)
  got = runner.resume(out, **QUIET)
  assert got["methods"]["neuralgrok"]["last_step"] == [30, 30]
  after = _lines(out)
  assert after[:len(before)] == before and len(after) == len(before) + 2
  # the resumed steps 20..30 continue the saved state: they match a run
  # of the same spec from scratch (float32 rounding of another machine
  # that wrote the fixture aside)
  fresh = runner.run(TINY, methods=["neuralgrok"], seeds=2, steps=30,
                     eval_every=10, out_dir=str(tmp_path / "new"), **QUIET)
  assert fresh["methods"]["neuralgrok"]["last_step"] == [30, 30]
  new = {(r["seed"], r["step"]): r for r in map(json.loads,
                                                 _lines(tmp_path / "new"))}
  for r in map(json.loads, after[len(before):]):
    ref = new[(r["seed"], r["step"])]
    assert sorted(r) == sorted(ref)
    for k, v in r.items():
      if isinstance(v, float):
        np.testing.assert_allclose(v, ref[k], rtol=1e-4, atol=1e-6,
                                   err_msg=k)
      else:
        assert v == ref[k], k
