"""The results layer and the runner's pieces: the run folders committed in
experiments/results still load and summarize the same, metrics.jsonl is
appended per chunk (a torn last line is ignored), the shared table
helpers, seeds x sweep values, and the module structure (no import cycle,
no environment or assert in production code)."""
import ast
import glob
import os
import subprocess
import sys

import pytest

from ngrok_jax._src.analysis import results
from ngrok_jax._src.running import runner
from ngrok_jax._src.storage import spec as spec_lib
from ngrok_jax._src.core import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "ngrok_jax")
SAVED = sorted(os.path.dirname(p) for p in glob.glob(
    os.path.join(REPO, "experiments", "results", "**", "config.json"),
    recursive=True))


def test_committed_run_folders_load_and_summarize_the_same():
  """Folders written by earlier versions (metrics.jsonl.gz, configs with
  and without stop_acc) load; their summaries recompute identically and
  their specs survive the JSON codec."""
  assert len(SAVED) >= 20
  for d in SAVED:
    run = results.load_run(d)
    assert run["rows"], d
    spec = run["spec"]
    assert spec.diff(spec_lib.RunSpec.from_dict(spec.to_dict())) == [], d
    again = results.summarize(run["rows"], spec)["methods"]
    for m, per in run["summary"]["methods"].items():
      for k in ("steps_to_95", "steps_to_99", "diverged_at", "last_step",
                "final_test_acc", "t95", "t99", "groups"):
        if k in per:
          assert per[k] == again[m][k], (d, m, k)


def test_metrics_are_appended_per_chunk_and_resume_rewrites_once(
    tmp_path, tiny_fields):
  out = str(tmp_path / "run")
  path = os.path.join(out, results.METRICS_FILE)
  seen = []

  def snapshot(chunk):  # runs before the metrics writer of this chunk
    seen.append((chunk.method, chunk.step, open(path, "rb").read(),
                 os.stat(path).st_ino))
  runner.run(tiny_fields, methods="adam,rescale", seeds=2, steps=30, eval_every=10,
             out_dir=out, progress=False, plots=False, hooks=[snapshot])
  final = open(path, "rb").read()
  assert [s[:2] for s in seen] == [(m, t) for m in ("adam", "rescale")
                                   for t in (10, 20, 30)]
  for (m, t, text, _), nxt in zip(seen, seen[1:] + [(None, None, final, 0)]):
    assert nxt[2].startswith(text) and len(nxt[2]) > len(text)  # appended
    assert text.count(b"\n") == 2 * ((t // 10 - 1) + 3 * (m == "rescale"))
  # within a method the file is never replaced (same inode)
  assert len({s[3] for s in seen if s[0] == "adam"}) == 1
  rows = results.read_metrics(out)
  assert [(r["method"], r["step"], r["seed"]) for r in rows] == [
      (m, t, s) for m in ("adam", "rescale") for t in (10, 20, 30)
      for s in (0, 1)]

  # a torn append (no newline, not JSON) is ignored; a bad inner line is not
  with open(path, "ab") as f:
    f.write(b'{"method": "adam", "se')
  assert results.read_metrics(out) == rows
  with open(path, "wb") as f:
    f.write(final.replace(b"\n", b"\nnot json\n", 1))
  with pytest.raises(ValueError, match="line 2"):
    results.read_metrics(out)


def test_markdown_table_and_steps_cells():
  assert tables.md_table(["a", "b"], [[1, "x"], ("y", 2.5)]).splitlines() == [
      "| a | b |", "|---|---|", "| 1 | x |", "| y | 2.5 |"]
  never = dict(median=None, q25=None, q75=None, success=0, n=4)
  some = dict(median=1250.0, q25=1100.0, q75=1400.0, success=3, n=4)
  assert tables.steps_cells(never) == ("never", "-", "0/4")
  assert tables.steps_cells(some) == ("1250", "1100-1400", "3/4")
  assert tables.steps_text(some) == "1250 (3/4)"
  per = dict(t95=some, t99=never, num_diverged=1, wall_time_s=12.34)
  assert results.summary_line("adam", per) == (
      "             adam: 95% 3/4 seeds, median 1250 (IQR 1100-1400); "
      "99% never (0/4); diverged 1; 12.3 s")
  assert results.sweep_label({"c": 0.5, "clip": "inf", "wd": 1e-3}) == \
      "c=0.5,clip=inf,wd=0.001"
  assert results.row_sweep({"hp/wd": 1.0, "seed": 0, "hp/c": 2.0}) == {
      "c": 2.0, "wd": 1.0}


def test_sweep_seeds():
  assert spec_lib.sweep_seeds(2, {"c": [0.5, 1, 2]}) == (
      [0, 1, 2, 3, 4, 5], {"c": [0.5, 0.5, 1.0, 1.0, 2.0, 2.0]})
  assert spec_lib.sweep_seeds([3, 5], [("c", [1, 2]), ("wd", [0, 0.1])]) == (
      [3, 5, 9, 11], {"c": [1.0, 1.0, 2.0, 2.0], "wd": [0.0, 0.0, 0.1, 0.1]})
  assert spec_lib.sweep_seeds(3, {}) == ([0, 1, 2], {})
  with pytest.raises(ValueError, match="same number"):
    spec_lib.sweep_seeds(2, {"c": [1, 2], "wd": [0]})
  with pytest.raises(ValueError, match="twice"):
    spec_lib.sweep_seeds(2, [("c", [1]), ("c", [2])])


def test_readers_do_not_import_the_runner():
  """results/spec/ampfile/report/plots/stats never import the runner (the
  runner calls plots, not the other way round)."""
  code = ("import sys; import ngrok_jax._src.analysis.results, ngrok_jax._src.storage.spec, "
          "ngrok_jax._src.storage.ampfile, ngrok_jax._src.analysis.report, ngrok_jax._src.analysis.plots, "
          "ngrok_jax._src.analysis.stats, ngrok_jax._src.running.hooks, ngrok_jax._src.core.tables; "
          "print('ngrok_jax._src.running.runner' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, cwd=REPO, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "False"


def _tree(name):
  with open(os.path.join(PACKAGE, name)) as f:
    return ast.parse(f.read(), name)


def test_no_assert_in_production_code_and_no_environment_in_the_loop():
  for d, _, files in os.walk(PACKAGE):
    for name in sorted(f for f in files if f.endswith(".py")):
      name = os.path.relpath(os.path.join(d, name), PACKAGE)
      asserts = [n.lineno for n in ast.walk(_tree(name))
                 if isinstance(n, ast.Assert)]
      assert not asserts, f"ngrok_jax/{name}: assert at lines {asserts}"
  for name in ("_src/running/runner.py", "_src/running/hooks.py",
               "_src/analysis/results.py", "_src/storage/spec.py"):
    used = {n.attr for n in ast.walk(_tree(name))
            if isinstance(n, ast.Attribute)}
    assert not used & {"environ", "getenv"}, name
