"""End-to-end runs of the paper-experiment scripts (``python -m
experiments.<name>``) at a tiny size, each as a subprocess, checking exit status, the printed tables
and the run folders they leave.

p is 11, not smaller: the tasks' outer split (1%) of p=7's examples is empty
and the scripts refuse it.  Compiling dominates; the subprocesses share the
session's persistent compilation cache through the environment
(tests/conftest.py sets it in os.environ before any test runs).  The
independent training scripts (compare, sweep_c, weight_decay) start together
in the background when the module's first test needs them, transfer.py as
soon as compare.py is done, so compiling overlaps on a multi-core machine.
The argument errors run in-process, through the scripts' own
``main_guard(main)``.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--quick", "--p", "11", "--steps", "20", "--eval-every", "10",
        "--seeds", "2", "--no-progress"]
STEPS = (10, 20)  # evaluated steps of a 20-step run evaluated every 10


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(
      [REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  return env


def _argv(name, args, tiny):
  """``python -m experiments.<name>`` (``name``: the script's file name)."""
  return ([sys.executable, "-m", "experiments." + name[:-len(".py")]] +
          (TINY if tiny else []) + [str(a) for a in args])


def _script(name, *args, tiny=True, timeout=600):
  return subprocess.run(_argv(name, args, tiny), cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=timeout)


class _Job:
  """A script started in the background; output to files (no pipe to fill)."""

  def __init__(self, logdir, key, name, *args):
    self.log = [os.path.join(logdir, f"{key}.{s}") for s in ("out", "err")]
    self.argv = _argv(name, args, True)
    with open(self.log[0], "w") as out, open(self.log[1], "w") as err:
      self.proc = subprocess.Popen(self.argv, cwd=REPO, env=_env(),
                                   stdout=out, stderr=err)

  def result(self):
    rc = self.proc.wait(timeout=600)
    text = []
    for path in self.log:
      with open(path) as f:
        text.append(f.read())
    return subprocess.CompletedProcess(self.argv, rc, *text)

  def kill(self):
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()


def _in_process(name, args, tiny, monkeypatch, capsys):
  """``python -m experiments.<name>``'s own path (``main_guard(main)``)
  in-process, for the scripts' argument errors (no JAX import and no
  compile to pay again): (exit status, stdout, stderr)."""
  import importlib
  from experiments import _common
  mod = importlib.import_module("experiments." + name[:-len(".py")])
  monkeypatch.setattr(sys, "argv", [mod.__file__] + (TINY if tiny else []) +
                      [str(a) for a in args])
  try:
    _common.main_guard(mod.main)
    rc = 0
  except SystemExit as e:
    rc = e.code
  out, err = capsys.readouterr()
  return rc, out, err


def _ok(proc):
  assert proc.returncode == 0, (
      f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n"
      f"{proc.stderr}")
  return proc.stdout


def _table(text, marker):
  """Rows (lists of cells) of the first markdown table at or after the first
  line containing ``marker``; header first, the ---|--- line dropped."""
  lines = text.splitlines()
  start = next(i for i, l in enumerate(lines) if marker in l)
  rows = []
  for line in lines[start:]:
    if line.startswith("|"):
      cells = [c.strip() for c in line.strip().strip("|").split("|")]
      if not all(set(c) <= {"-"} for c in cells):
        rows.append(cells)
    elif rows:
      break
  assert rows, f"no table after {marker!r} in:\n{text}"
  return rows


def _json(path):
  with open(path) as f:
    return json.load(f)


def _metric_keys(run):
  with open(os.path.join(run, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  return sorted((r["method"], r["seed"], r["step"]) for r in rows)


def _check_run_folder(run, methods, seeds):
  for f in ("config.json", "metrics.jsonl", "summary.json"):
    assert os.path.isfile(os.path.join(run, f)), (run, f)
  config = _json(os.path.join(run, "config.json"))
  summary = _json(os.path.join(run, "summary.json"))
  assert config["methods"] == list(methods)
  assert config["seeds"] == list(seeds)
  assert (config["steps"], config["eval_every"]) == (20, 10)
  assert config["configs"][methods[0]]["p"] == 11
  assert list(summary["methods"]) == list(methods)
  for m in methods:
    assert summary["methods"][m]["complete"] is True
    assert summary["methods"][m]["last_step"] == [20] * len(seeds)
  assert _metric_keys(run) == sorted(
      (m, s, t) for m in methods for s in seeds for t in STEPS)
  return config, summary


COMPARE_TESTS = {"test_compare", "test_compare_same_wd_folder",
                 "test_age_on_compare_runs", "test_transfer_from_compare_runs",
                 "test_export_results_round_trip",
                 "test_amplifier_vs_rescale"}


@pytest.fixture(scope="module")
def jobs(request, tmp_path_factory):
  """(base folder, {key: _Job}): the training scripts that the selected
  tests of this module need, started together."""
  base = tmp_path_factory.mktemp("experiments")
  wanted = {getattr(i, "originalname", i.name) for i in request.session.items
            if i.path == request.path}
  started = {}
  if wanted & COMPARE_TESTS:
    started["compare"] = _Job(base, "compare", "compare.py",
                              "--out", base / "compare", "--tasks", "a+b",
                              "--methods", "neuralgrok,adam")
  if "test_sweep_c" in wanted:
    started["sweep"] = _Job(base, "sweep", "sweep_c.py",
                            "--out", base / "sweep", "--task", "a+b",
                            "--values", "0.5,2", "--methods", "rescale",
                            "--wd", "1e-3", "--no-plots")
  if "test_weight_decay" in wanted:
    started["wd"] = _Job(base, "wd", "weight_decay.py",
                         "--out", base / "wd", "--task", "a+b",
                         "--values", "0.1,1", "--methods", "adamw",
                         "--no-plots")
  if "test_tune" in wanted:
    started["tune"] = _Job(base, "tune", "tune.py", "--out", base / "tune",
                           "--task", "a+b", "--methods", "adamw,orthograd",
                           "--grid", "lr=3e-3", "--grid", "wd=0.3,1",
                           "--tune-seeds", "1", "--heldout-seeds", "2",
                           "--no-plots")
  started["_wanted"] = wanted
  yield str(base), started
  wanted = started.pop("_wanted")
  for job in started.values():
    job.kill()


@pytest.fixture(scope="module")
def compare_run(jobs):
  """compare.py on a+b with neuralgrok and adam, shared by the tests that
  analyse its folders (age.py --runs, transfer.py --source-runs); transfer.py
  starts as soon as it is done."""
  base, started = jobs
  proc = started["compare"].result()
  if (proc.returncode == 0 and "transfer" not in started and
      "test_transfer_from_compare_runs" in started["_wanted"]):
    started["transfer"] = _Job(
        base, "transfer", "transfer.py", "--out",
        os.path.join(base, "transfer"), "--sources", "a+b", "--targets",
        "a-b", "--source-runs", os.path.join(base, "compare"), "--no-plots")
  return os.path.join(base, "compare"), proc


def test_compare(compare_run):
  out, proc = compare_run
  stdout = _ok(proc)
  rows = _table(stdout, "## NeuralGrok vs baselines")
  assert rows[0][:3] == ["run", "method", "95% median"]
  assert [r[:2] for r in rows[1:]] == [
      ["a+b", "neuralgrok"], ["a+b", "adam"], ["a+b-wd0", "adam [wd=0]"]]
  for r in rows[1:]:
    assert r[4].endswith("/2")  # 95% success over 2 seeds
  assert sorted(os.listdir(out)) == ["a+b", "a+b-wd0"]
  config, _ = _check_run_folder(os.path.join(out, "a+b"),
                                ["neuralgrok", "adam"], [0, 1])
  assert config["hparams"] == {}
  assert config["configs"]["neuralgrok"]["wd"] == 1e-3  # the preset's
  # the authors' baseline: Adam with NeuralGrok's weight decay, unclipped
  assert config["configs"]["adam"]["wd"] == 1e-3
  assert config["configs"]["adam"]["clip"] == "inf"  # method default: none
  assert config["configs"]["neuralgrok"]["task"] == "a+b"
  assert config["configs"]["neuralgrok"]["amp_hidden"] == [32, 32]  # quick
  assert os.path.isfile(os.path.join(out, "a+b", "amplifier.msgpack"))


def test_compare_same_wd_folder(compare_run):
  """adam (rescale not asked for) again without weight decay."""
  out, proc = compare_run
  _ok(proc)
  run = os.path.join(out, "a+b-wd0")
  config, summary = _check_run_folder(run, ["adam"], [0, 1])
  assert config["hparams"] == {"wd": [0.0, 0.0]}
  assert list(summary["methods"]["adam"]["groups"]) == ["wd=0"]


def test_age_on_compare_runs(compare_run, tmp_path):
  runs, proc = compare_run
  _ok(proc)
  run = os.path.join(runs, "a+b")
  out = str(tmp_path / "age")
  stdout = _ok(_script("age.py", "--out", out, "--runs", run))
  rows = _table(stdout, f"## AGE over training: {run}")
  assert rows[0] == ["method", "step", "AGE raw", "AGE transformed",
                     "weight entropy", "test acc"]
  assert [(r[0], int(r[1])) for r in rows[1:]] == [
      (m, s) for m in ("neuralgrok", "adam") for s in STEPS]
  for r in rows[1:]:
    age, age_t, _, acc = (float(x) for x in r[2:])
    assert age > 0 and age_t > 0 and 0 <= acc <= 1
    if r[0] == "adam":  # no transform: the transformed gradient is the raw
      assert age_t == age
  assert f"plots: {os.path.join(run, 'plots', 'age.png')}" in stdout
  assert os.path.isfile(os.path.join(run, "plots", "age.png"))
  assert not os.path.exists(out)  # analysed, nothing trained


@pytest.mark.slow  # opt-in: keeps the CI suite under 15 min
def test_transfer_from_compare_runs(compare_run, jobs):
  runs, proc = compare_run
  _ok(proc)
  base, started = jobs
  out = os.path.join(base, "transfer")
  stdout = _ok(started["transfer"].result())
  rows = _table(stdout, "## Transfer: steps to 95% test accuracy")
  assert rows[0] == ["frozen amplifier from \\ target", "a-b"]
  assert rows[1][0] == "a+b"
  assert rows[1][1].endswith("/2)")  # "<median or never> (k/2)"
  # compare ran a+b only: no reference runs on the target a-b
  assert rows[2:] == [[f"(neuralgrok on the target, {runs})", "-"],
                      [f"(adam on the target, {runs})", "-"]]
  # the source amplifier came from compare's folder, none was trained
  assert sorted(os.listdir(out)) == ["a+b__to__a-b"]
  config, _ = _check_run_folder(os.path.join(out, "a+b__to__a-b"),
                                ["neuralgrok-frozen"], [0, 1])
  assert config["amplifier"] == os.path.abspath(os.path.join(runs, "a+b"))
  assert config["amplifier_seed"] == 0
  assert config["configs"]["neuralgrok-frozen"]["task"] == "a-b"
  assert config["configs"]["neuralgrok-frozen"]["amp_hidden"] == [32, 32]


@pytest.mark.slow  # opt-in: keeps the CI suite under 15 min
def test_sweep_c(jobs):
  base, started = jobs
  out = os.path.join(base, "sweep")
  stdout = _ok(started["sweep"].result())
  rows = _table(stdout, "## rescaling coefficient c on a+b")
  assert [r[:2] for r in rows[1:]] == [
      ["sweep", "rescale [c=0.5,wd=0.001]"], ["sweep", "rescale [c=2,wd=0.001]"]]
  assert all(r[4].endswith("/2") for r in rows[1:])  # 2 seeds per value
  config, summary = _check_run_folder(out, ["rescale"], [0, 1, 2, 3])
  assert not os.path.exists(os.path.join(out, "plots"))  # --no-plots
  assert config["hparams"] == {"c": [0.5, 0.5, 2.0, 2.0], "wd": [1e-3] * 4}
  groups = summary["methods"]["rescale"]["groups"]
  assert list(groups) == ["c=0.5,wd=0.001", "c=2,wd=0.001"]
  assert [g["seeds"] for g in groups.values()] == [[0, 1], [2, 3]]


def test_tune(jobs):
  base, started = jobs
  out = os.path.join(base, "tune")
  stdout = _ok(started["tune"].result())
  result = _json(os.path.join(out, "tune.json"))
  assert list(result["methods"]) == ["adamw", "orthograd"]
  assert result["heldout_seeds"] == [0, 1] and result["tune_seeds"] == 1
  for m in ("adamw", "orthograd"):
    r = result["methods"][m]
    assert r["grid"] == {"lr": [3e-3], "wd": [0.3, 1.0]}
    assert sorted(c["index"] for c in r["ranked"]) == [0, 1]
    assert r["chosen"]["lr"] == 3e-3
    assert r["chosen"]["wd"] == r["ranked"][0]["cell"]["wd"]
    # the grid: one run folder per cell, every cell on the same tuning
    # seed (the default --seeding shared), far from the held-out seeds
    for k, wd in enumerate((0.3, 1.0)):
      config, _ = _check_run_folder(os.path.join(out, "grid", m,
                                                 f"cell-{k}"), [m], [1000])
      assert config["hparams"] == {"lr": [3e-3], "wd": [wd]}
    assert [c["seeds"] for c in r["ranked"]] == [[1000], [1000]]
    assert r["heldout"]["final_test_acc"] and len(
        r["heldout"]["steps_to_95"]) == 2
  # the held-out run: both methods at their chosen cells, seeds 0 and 1
  config, _ = _check_run_folder(os.path.join(out, "heldout"),
                                ["adamw", "orthograd"], [0, 1])
  assert not os.path.exists(os.path.join(out, "heldout", "plots"))
  for m in ("adamw", "orthograd"):
    assert config["configs"][m]["wd"] == result["methods"][m]["chosen"]["wd"]
  rows = _table(stdout, "## Grid and chosen cell")
  assert [r[0] for r in rows[1:]] == ["adamw", "orthograd"]
  assert rows[1][1] == "lr 0.003; wd 0.3/1"
  held = _table(stdout, "## Held-out seeds")
  assert [r[1] for r in held[1:]] == ["adamw", "orthograd"]
  paired = _table(stdout, "## Paired with the best-tuned adamw")
  assert [r[0] for r in paired[1:]] == ["orthograd"]
  with open(os.path.join(out, "TUNE.md")) as f:
    assert f.read().strip() in stdout


@pytest.mark.slow  # opt-in (about 2 min on 2 cores): keeps CI < 12 min
def test_learned_part(tmp_path):
  out = str(tmp_path / "lp")
  stdout = _ok(_script("learned_part.py", "--out", out, "--tasks", "a+b",
                       "--options", "meta-lr-1e-2,rich", timeout=1800))
  rows = _table(stdout, "## a+b: every NeuralGrok variant vs rescaling")
  assert [r[0] for r in rows[1:]] == [
      "neuralgrok", "neuralgrok (a+b-meta-lr-1e-2)", "neuralgrok (a+b-rich)"]
  assert all(r[1] == "2" for r in rows[1:])  # 2 seeds, paired
  moved = _table(stdout, "### a+b: how far each amplifier moved")
  assert [r[0] for r in moved[1:]] == ["recipe", "meta-lr-1e-2", "rich",
                                       "rescale"]
  # meta lr 1e-2 moves the amplifier's parameters further than 1e-4
  assert float(moved[2][2]) > 10 * float(moved[1][2])
  _check_run_folder(os.path.join(out, "a+b"), ["neuralgrok", "rescale"],
                    [0, 1])
  config, _ = _check_run_folder(os.path.join(out, "a+b-rich"),
                                ["neuralgrok"], [0, 1])
  assert config["configs"]["neuralgrok"]["amp_inputs"] == "rich"
  assert os.path.isfile(os.path.join(out, "a+b-scores.png"))


@pytest.mark.slow  # opt-in (about 4 min on 2 cores): keeps CI < 12 min
def test_cross_task(tmp_path):
  out = str(tmp_path / "ct")
  stdout = _ok(_script("cross_task.py", "--out", out, "--held-out", "a/b",
                       timeout=1800))
  rows = _table(stdout, "## held-out a/b: frozen cross-task amplifiers")
  assert [r[0] for r in rows[1:]] == [
      "neuralgrok", "neuralgrok-frozen (adivb-cross-recipe)",
      "neuralgrok-frozen (adivb-cross-meta-lr-1e-2-wd0)",
      "neuralgrok-frozen (adivb-init)"]
  assert all(r[1] == "2" for r in rows[1:])  # 2 seeds, paired
  moved = _table(stdout, "## the cross-task amplifiers during meta-training")
  assert [r[:2] for r in moved[1:]] == [
      [v, t] for v in ("recipe", "meta-lr-1e-2-wd0")
      for t in ("a+b", "a-b", "a*b")]
  # meta lr 1e-2 moves the shared amplifier further than 1e-4
  assert float(moved[4][4]) > 10 * float(moved[1][4])
  for t in ("a+b", "a-b", "axb"):
    _check_run_folder(os.path.join(out, "cross-recipe", t), ["neuralgrok"],
                      [0, 1])
  config, _ = _check_run_folder(os.path.join(out, "adivb-cross-recipe"),
                                ["neuralgrok-frozen"], [0, 1])
  assert config["amplifier_seed"] == "each"
  assert os.path.isfile(os.path.join(out, "scores.png"))


@pytest.mark.slow  # opt-in: keeps the CI suite under 15 min
def test_weight_decay(jobs):
  base, started = jobs
  out = os.path.join(base, "wd")
  stdout = _ok(started["wd"].result())
  rows = _table(stdout, "## weight decay on a+b")
  assert [r[1] for r in rows[1:]] == ["adamw [wd=0.1]", "adamw [wd=1]"]
  inst = _table(stdout, "| method | wd | max drop after 95%")
  assert inst[0][:2] == ["method", "wd"]
  assert [r[:2] for r in inst[1:]] == [["adamw", "0.1"], ["adamw", "1"]]
  for r in inst[1:]:
    assert r[3].endswith("/2") and r[4].endswith("/2")
  config, summary = _check_run_folder(out, ["adamw"], [0, 1, 2, 3])
  assert config["hparams"] == {"wd": [0.1, 0.1, 1.0, 1.0]}
  assert list(summary["methods"]["adamw"]["groups"]) == ["wd=0.1", "wd=1"]


@pytest.mark.parametrize("script,args", [
    ("compare.py", ["--tasks", "nope"]),
    ("sweep_c.py", ["--task", "nope"]),
    ("weight_decay.py", ["--task", "nope"]),
    ("age.py", ["--task", "nope"]),
    ("transfer.py", ["--targets", "nope"]),
    ("tune.py", ["--task", "nope"]),
    ("learned_part.py", ["--tasks", "nope"]),
])
def test_unknown_task_is_a_one_line_error(script, args, tmp_path,
                                           monkeypatch, capsys):
  out = str(tmp_path / "out")
  rc, _, err = _in_process(script, ["--out", out, *args], True, monkeypatch,
                           capsys)
  assert rc == 2, err
  assert "Traceback" not in err
  assert err.strip().splitlines() == [
      "error: unknown task 'nope'; valid tasks: a+b, a-b, a*b, a*a-b, "
      "a*c+b*d-e, a/b"]
  assert not os.path.exists(out)


def test_cross_task_unknown_task_is_a_one_line_error(tmp_path, monkeypatch,
                                                      capsys):
  out = str(tmp_path / "out")
  rc, _, err = _in_process("cross_task.py", ["--out", out, "--held-out",
                                             "a/b,nope"], True, monkeypatch,
                           capsys)
  assert rc == 2, err
  assert err.strip().splitlines() == [
      "error: unknown task 'nope'; valid tasks: a+b, a-b, a*b, a*a-b, "
      "a*c+b*d-e, a/b"]
  assert not os.path.exists(out)


def test_age_runs_not_a_run_folder(tmp_path, monkeypatch, capsys):
  missing = str(tmp_path / "missing")
  rc, _, err = _in_process("age.py", ["--runs", missing], False, monkeypatch,
                           capsys)
  assert rc == 2, err
  assert err.strip().splitlines() == [
      f"error: {missing!r} is not a run folder (no config.json)"]


@pytest.mark.slow  # opt-in: keeps the CI suite under 15 min
def test_export_results_round_trip(compare_run, tmp_path):
  """export_results.py keeps what report/read_metrics need: the exported
  folder (metrics.jsonl.gz, no checkpoints) gives the same rows and table."""
  from ngrok_jax._src.storage.ampfile import load_amplifier
  from ngrok_jax._src.analysis.report import markdown_table
  from ngrok_jax._src.analysis.results import read_metrics
  runs, proc = compare_run
  _ok(proc)
  dst = str(tmp_path / "exported")
  res = _script("export_results.py", runs, dst, tiny=False)
  assert res.returncode == 0, res.stderr
  for name in ("a+b", "a+b-wd0"):
    src_run, dst_run = os.path.join(runs, name), os.path.join(dst, name)
    amp = ("amplifier.json", "amplifier.msgpack")
    assert sorted(os.listdir(dst_run)) == sorted(
        f for f in ("config.json", "summary.json", "metrics.jsonl.gz",
                    "plots") + amp
        if f not in amp or os.path.exists(os.path.join(src_run, f)))
    if name == "a+b":  # compare.py ran neuralgrok there: its amplifier
      assert load_amplifier(dst_run)[1]["seeds"] == [0, 1]
    assert read_metrics(dst_run) == read_metrics(src_run)
    assert markdown_table([dst_run]) == markdown_table([src_run])
  bad = _script("export_results.py", str(tmp_path / "nothing"), dst,
                tiny=False)
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_export_copies_amplifier_files(tmp_path):
  """No training: the amplifier files go along, checkpoints stay behind."""
  from experiments.export_results import export
  run = tmp_path / "src" / "a+b"
  (run / "checkpoints").mkdir(parents=True)
  for f in ("config.json", "summary.json", "metrics.jsonl",
            "amplifier.msgpack", "amplifier.json", "checkpoints/x"):
    (run / f).write_bytes(b"{}")
  assert export(str(tmp_path / "src"), str(tmp_path / "dst")) == ["a+b"]
  assert sorted(os.listdir(tmp_path / "dst" / "a+b")) == [
      "amplifier.json", "amplifier.msgpack", "config.json",
      "metrics.jsonl.gz", "summary.json"]
  assert (tmp_path / "dst" / "a+b" / "amplifier.msgpack").read_bytes() == b"{}"


@pytest.mark.slow  # opt-in: keeps the CI suite under 15 min
def test_amplifier_vs_rescale(compare_run):
  runs, proc = compare_run
  _ok(proc)
  res = _script("amplifier_vs_rescale.py", os.path.join(runs, "a+b"),
                tiny=False)
  assert res.returncode == 0, res.stderr
  rows = _table(res.stdout, "| run |")
  assert [r[:3] for r in rows[1:]] == [["a+b", "1-32-32-1", "2"]]
  nums = [float(x) for x in rows[1][3:7]]
  assert all(np.isfinite(nums)) and all(x >= 0 for x in nums)
  assert nums[0] > 0  # an amplifier at init is not exactly rescaling
  # a folder without a neuralgrok run is a one-line error, exit 2
  bad = _script("amplifier_vs_rescale.py", os.path.join(runs, "a+b-wd0"),
                tiny=False)
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_amplify_with_constant_scores_is_rescaling():
  import jax.numpy as jnp
  from experiments.amplifier_vs_rescale import distance
  g = {"a": jnp.arange(-3.0, 3.0, 0.5).reshape(3, 4), "b": jnp.ones((5,))}
  assert distance(g, lambda v: jnp.full_like(v, 2.0)) == (0.0, 0.0)
  rel, dev = distance(g, lambda v: v)
  assert rel > 1e-2 and dev > 1e-2
