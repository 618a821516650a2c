"""Smoke test: ``experiments/benchmark.py --quick`` writes valid records."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHATS = {"adam_step", "inner_step", "meta_step", "amortised_step", "compile"}


def test_quick_benchmark_writes_json_records(tmp_path):
  out = tmp_path / "bench.json"
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS",
                                                        "cpu"))
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "benchmark.py"),
       "--quick", "--configs", "a+b", "--seeds", "1", "--repeats", "1",
       "--steps", "3", "--json", str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| config | S |" in proc.stdout  # the table
  records = json.loads(out.read_text())
  assert isinstance(records, list) and records
  for r in records:
    assert {"config", "seeds", "what", "seconds", "device"} <= set(r), r
    assert r["config"] in ("a+b", "a*c+b*d-e")
    assert isinstance(r["seeds"], int) and r["seeds"] >= 1
    assert isinstance(r["device"], str) and r["device"]
  timed = {r["what"]: r for r in records if r["seconds"] is not None}
  assert WHATS <= set(timed), sorted(timed)
  for what in WHATS - {"meta_step"}:  # meta_step is a difference of medians
    assert timed[what]["seconds"] > 0, timed[what]
  assert timed["amortised_step"]["peak_bytes"] > 0
