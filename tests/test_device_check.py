"""experiments/device_check.py: the dry run (every part at a tiny size on the
CPU, so the device script cannot rot), the global budget and the crash
isolation of its parts."""
import json
import os
import subprocess
import sys

import pytest

from experiments import device_check as dc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cpu_dry_run_runs_every_part(tmp_path):
  out = tmp_path / "dc"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.device_check", "--cpu-dry-run",
       "--out", str(out), "--budget-s", "1500"], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rec = json.loads((out / "device_check.json").read_text())
  assert rec["dry_run"] is True
  parts = rec["parts"]
  assert list(parts) == [p[0] for p in dc.PARTS]
  bad = {k: v.get("error") or v.get("result") for k, v in parts.items()
         if v["status"] != "ok"}
  assert not bad, bad
  res = {k: v["result"] for k, v in parts.items()}
  assert res["environment"]["backend"] == "cpu" and res["environment"]["jax"]
  for name in ("golden", "equality_tests"):  # collected, not run, when dry
    assert res[name]["passed"] and "collected" in res[name]["summary"], res[name]
  assert res["golden"]["x64"] is True
  assert res["device_vs_cpu"]["max_rel_diff"]["loss"] == 0.0  # both on CPU
  assert set(res["equalities"]["max_rel_diff"]) == {"group1"}
  assert res["resume"]["bit_identical"] is True
  rows = res["timings"]["rows"]
  assert {r["method"] for r in rows} == {"adam", "rescale", "neuralgrok"}
  for r in rows:
    assert r["s_per_step"] > 0 and r["paper_budget_hours"] > 0
    assert r["seed_steps_per_s"] == pytest.approx(r["seeds"] / r["s_per_step"])
  assert res["amp_method"]["dense_over_pwl"] > 0
  assert set(res["seed_group"]["s_per_step"]) == {"all", "1"}
  assert res["donation"]["not_donated_over_donated"] > 0
  assert res["memory"]["compiled_peak_bytes"]
  hard = res["hard_task"]
  # dry run: the tiny paper-add programs (paper-poly on a device)
  assert hard["steps"] >= 8 and hard["preset"] == "paper-add"
  assert set(hard) >= {"neuralgrok", "adam"}
  csv = (out / "hard_task_curves.csv").read_text().splitlines()
  assert csv[0] == "method,step,seed,train/loss,train/acc,test/loss,test/acc"
  assert len(csv) == 1 + 2 * hard["seeds"] * hard["steps"] // hard["eval_every"]
  assert (out / "hard_task_curves.png").stat().st_size > 1000
  md = (out / "device_check.md").read_text()
  assert "| timings | ok |" in md and "| neuralgrok | 2 |" in md
  assert len(os.listdir(out)) <= 8  # what the device tool brings back


def test_budget_and_crash_isolation(tmp_path, monkeypatch):
  """A raising part is recorded and the next one runs; a part that does not
  fit in what is left is skipped with the reason."""
  def boom(ctx):
    raise ValueError("planted failure")

  monkeypatch.setattr(dc, "PARTS", [("boom", boom, 1),
                                    ("memory", dc.part_memory, 1),
                                    ("huge", boom, 10 ** 6)])
  assert dc.main(["--out", str(tmp_path), "--budget-s", "600"]) == 0
  rec = json.loads((tmp_path / "device_check.json").read_text())
  p = rec["parts"]
  assert p["boom"]["status"] == "error"
  assert "ValueError: planted failure" in p["boom"]["error"]
  assert p["memory"]["status"] == "ok"
  assert p["huge"]["status"] == "skipped" and "budget" in p["huge"]["reason"]
  assert "| boom | error |" in (tmp_path / "device_check.md").read_text()
  with pytest.raises(SystemExit):
    dc.main(["--out", str(tmp_path), "--parts", "nope"])
