"""ngrok_jax.stats and experiments.paired: AUC, paired differences with
t-intervals, the paired table and its markdown (no training; synthetic rows
and run folders written here)."""
import math
import os
import re
import statistics
import subprocess
import sys

import pytest

from ngrok_jax._src.analysis import stats
from run_folders import write_run_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = list(range(100, 1001, 100))


def _step_curve(at, steps=STEPS):
  """Accuracy 0 before step ``at`` and 1 from it on (None: never)."""
  return [1.0 if at is not None and s >= at else 0.0 for s in steps]


def test_t_table():
  assert stats.t975(1) == 12.706 and stats.t975(4) == 2.776
  assert stats.t975(30) == 2.042 and stats.t975(31) == 1.96
  with pytest.raises(ValueError):
    stats.t975(0)


def test_auc_of_a_step_function():
  # 0 up to step 400, 1 from 500: trapezoids give 50 (the 400-500 ramp) +
  # 500 (500-1000) over a budget of 1000.
  assert stats.auc(STEPS, _step_curve(500), 1000) == pytest.approx(0.55)
  # constant curves; the start defaults to the first evaluation's value
  assert stats.auc(STEPS, [0.3] * 10, 1000) == pytest.approx(0.3)
  assert stats.auc(STEPS, [1.0] * 10, 1000, start=0.0) == pytest.approx(
      1 - 0.5 * 100 / 1000)
  assert stats.auc(STEPS, _step_curve(None), 1000) == 0.0
  assert stats.auc([], [], 1000) == 0.0
  # earlier grokking, larger AUC; never reaching a threshold is not censored
  assert (stats.auc(STEPS, _step_curve(300), 1000) >
          stats.auc(STEPS, _step_curve(500), 1000) >
          stats.auc(STEPS, _step_curve(800), 1000) == pytest.approx(0.25))
  assert stats.auc(STEPS, [0.9] * 10, 1000) == pytest.approx(0.9)
  # unsorted input, non-finite values (a diverged seed) count as 0
  assert stats.auc(STEPS[::-1], _step_curve(500)[::-1], 1000) == \
      pytest.approx(0.55)
  assert stats.auc([100, 200], [1.0, math.nan], 200) == pytest.approx(0.75)
  with pytest.raises(ValueError):
    stats.auc([1, 2], [0.5], 10)
  with pytest.raises(ValueError):
    stats.auc([1], [0.5], 0)


def test_auc_carries_the_last_value_to_the_budget():
  # stopped early at 600 (held >= 99%): as if it had stayed at 1 until 1000
  stopped = stats.auc(STEPS[:6], _step_curve(500)[:6], 1000)
  assert stopped == pytest.approx(stats.auc(STEPS, _step_curve(500), 1000))
  assert stopped == pytest.approx(0.55)
  # a budget shorter than the curve cuts it (interpolated at the budget)
  assert stats.auc(STEPS, _step_curve(500), 450) == pytest.approx(
      (0.5 * 50 * 0.5) / 450)


def test_paired_differences_t_interval():
  a = [1500, 1700, 700, 1400, 1100]
  b = [1600, 1600, 700, 1700, 1100]
  got = stats.paired_differences(a, b)
  d = [x - y for x, y in zip(a, b)]
  mean, sd = statistics.mean(d), statistics.stdev(d)
  half = 2.776 * sd / math.sqrt(5)  # t_{0.975, 4}
  assert got["n_pairs"] == got["n_both"] == 5 and got["diffs"] == d
  assert got["mean"] == pytest.approx(mean) == -60
  assert got["df"] == 4 and got["t"] == 2.776
  assert (got["lo"], got["hi"]) == (pytest.approx(mean - half),
                                    pytest.approx(mean + half))
  assert (got["lo"], got["hi"]) == (pytest.approx(-248.3, abs=0.1),
                                    pytest.approx(128.3, abs=0.1))
  assert (got["a_only"], got["b_only"], got["neither"]) == (0, 0, 0)


def test_paired_differences_none_handling():
  got = stats.paired_differences([100, None, 300, None, 400],
                                 [50, 200, None, None, math.nan])
  assert (got["n_pairs"], got["n_both"]) == (5, 1)
  assert got["mean"] == 50 and got["lo"] is None and got["hi"] is None
  assert (got["a_only"], got["b_only"], got["neither"]) == (2, 1, 1)
  none = stats.paired_differences([None, None], [None, 5])
  assert none["n_both"] == 0 and none["mean"] is None
  with pytest.raises(ValueError):
    stats.paired_differences([1, 2], [1])
  assert stats.paired_auc([0.5, 0.7], [0.4, 0.4])["mean"] == pytest.approx(
      0.2)
  with pytest.raises(ValueError):
    stats.paired_auc([0.5, None], [0.4, 0.4])


def _rows(method, groks_at, hp=None):
  """Metric rows: seed i's test accuracy steps from 0 to 1 at groks_at[i]."""
  out = []
  for seed, at in enumerate(groks_at):
    for s, acc in zip(STEPS, _step_curve(at)):
      r = dict(method=method, seed=seed, step=s, **{"test/acc": acc,
                                                    "train/acc": 1.0})
      r.update({f"hp/{k}": v[seed] for k, v in (hp or {}).items()})
      out.append(r)
  return out


def test_paired_table():
  rows = (_rows("neuralgrok", [300, 500, None, 400]) +
          _rows("adam", [600, 500, 700, None]))
  t = stats.paired_table(rows, "neuralgrok", "adam", [0, 1, 2, 3], 1000)
  assert [e["steps_a"] for e in t["per_seed"]] == [300, 500, None, 400]
  assert [e["ratio"] for e in t["per_seed"]] == [2.0, 1.0, None, None]
  assert t["speedup"]["geomean"] == pytest.approx(math.sqrt(2.0))
  assert t["steps"]["mean"] == -150 and t["steps"]["n_both"] == 2
  assert (t["a_only"], t["b_only"], t["neither"]) == (1, 1, 0)
  assert t["auc"]["n_both"] == 4
  assert t["per_seed"][0]["auc_a"] > t["per_seed"][0]["auc_b"]
  # a budget below the step where a seed reached it: not reached
  t = stats.paired_table(rows, "neuralgrok", "adam", [0], 400)
  assert (t["per_seed"][0]["steps_a"], t["per_seed"][0]["steps_b"]) == (
      300, None)


def _run_folder(path, methods, rows, seeds, hparams=None, overrides=None):
  return write_run_folder(path, methods, seeds, rows, 1000, hparams=hparams,
                          overrides=overrides)


def _cells(line):
  return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def test_paired_markdown(tmp_path):
  run = _run_folder(tmp_path / "run", ["neuralgrok", "adam"],
                    _rows("neuralgrok", [300, 500, None]) +
                    _rows("adam", [600, 500, 700]), [0, 1, 2])
  hp = {"c": [0.1, 0.1, 1.0, 1.0]}
  sweep = _run_folder(tmp_path / "sweep", ["neuralgrok", "rescale"],
                      _rows("neuralgrok", [300, 300, 500, 500], hp) +
                      _rows("rescale", [400, 400, 500, 600], hp),
                      [0, 1, 2, 3], hparams=hp)
  text = stats.paired_markdown(run)
  lines = text.splitlines()
  assert len(lines) == 3 and _cells(lines[0]) == _cells(lines[1]) == 6
  assert all(_cells(l) == 6 for l in lines)
  assert lines[2].startswith("| adam | 3 | -150 [")
  assert lines[2].endswith("| 0 / 1 / 0 |")
  lines = stats.paired_markdown(sweep).splitlines()
  assert [l.split(" | ")[0] for l in lines[2:]] == [
      "| rescale [c=0.1]", "| rescale [c=1]"]
  assert "| 2 | -100 [-100, -100] (n 2) | 1.33x (n 2) |" in lines[2]
  assert "| 2 | -50 [" in lines[3]
  # another folder (same seeds) paired with this folder's reference
  lines = stats.paired_markdown(run, others=[sweep]).splitlines()
  assert lines[-1].startswith("| rescale [c=1] (sweep) | 1 |")
  # folders of the same name are told apart by their parent's name
  twins = [_run_folder(tmp_path / v / "a+b", ["adam"],
                       _rows("adam", [600, 500, 700]), [0, 1, 2])
           for v in ("v1", "v2")]
  lines = stats.paired_markdown(run, others=twins).splitlines()
  assert [l.split(" | ")[0] for l in lines[-2:]] == [
      "| adam (v1/a+b)", "| adam (v2/a+b)"]
  with pytest.raises(ValueError, match="no method 'adamw'"):
    stats.paired_markdown(run, "adamw")


def _paired_script(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(
      [REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  return subprocess.run([sys.executable, "-m", "experiments.paired",
                         *map(str, args)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)


def test_paired_script(tmp_path):
  run = _run_folder(tmp_path / "a+b", ["neuralgrok", "adam"],
                    _rows("neuralgrok", [300, 500]) + _rows("adam", [600, 500]),
                    [0, 1])
  wd = _run_folder(tmp_path / "a+b-wd", ["adam"], _rows("adam", [400, 400]),
                   [0, 1])
  out = tmp_path / "t.md"
  res = _paired_script(run, wd, "--with-suffix=-wd", "--out", out)
  assert res.returncode == 0, res.stderr
  assert res.stdout.count("## ") == 1 and "| adam (a+b-wd) | 2 |" in res.stdout
  assert out.read_text().strip() == res.stdout.strip()
  bad = _paired_script(tmp_path / "nothing")
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [
      f"error: {str(tmp_path / 'nothing')!r} is not a run folder "
      "(no config.json)"]


def test_paired_window_option(tmp_path, monkeypatch, capsys):
  from experiments import paired
  run = _run_folder(tmp_path / "a+b", ["neuralgrok", "adam"],
                    _rows("neuralgrok", [300, 500]) + _rows("adam", [600, 500]),
                    [0, 1])
  monkeypatch.setattr(sys, "argv", ["paired", run, "--window"])
  paired.main()
  out = capsys.readouterr().out
  assert "common window" in out and "| adam | 1000 | +0.150 [" in out
  monkeypatch.setattr(sys, "argv", ["paired", str(tmp_path / "x"),
                                    "--window"])
  with pytest.raises(ValueError, match="is not a run folder"):
    paired.main()


def test_collapses_after_grokking():
  steps = [100, 200, 300, 400, 500, 600, 700, 800]
  acc = [0.2, 0.96, 0.4, 0.3, 0.99, 0.97, 0.1, float("nan")]
  c = stats.collapses(steps, acc)
  # 300-400 is one collapse; 700 and the diverged 800 (NaN counts as 0)
  # another; 0.2 before reaching 95% is none
  assert c == dict(reached_at=200, count=2, starts=[300, 700], lowest=0.0,
                   lowest_at=800)
  w = stats.collapses(steps, acc, window=650)
  assert (w["count"], w["starts"], w["lowest"], w["lowest_at"]) == (
      1, [300], 0.3, 400)
  # a drop to 0.5 exactly or a dip above it is no collapse
  assert stats.collapses(steps[:3], [0.96, 0.5, 0.9])["count"] == 0
  assert stats.collapses(steps[:3], [0.96, 0.49, 0.9],
                         below=0.4)["count"] == 0
  never = stats.collapses(steps[:2], [0.1, 0.0])
  assert never["reached_at"] is None and never["count"] == 0
  # unsorted input is sorted by step first
  assert stats.collapses([300, 100, 200], [0.99, 0.96, 0.1])["starts"] == [200]


def test_common_window_and_window_markdown(tmp_path):
  def rows(method, accs, last):
    return [dict(method=method, seed=s, step=st, **{"test/acc": a,
                                                    "train/acc": 1.0})
            for s, acc in enumerate(accs) for st, a in zip(STEPS, acc)
            if st <= last[s]]
  ref = [[0, 1, 1, 1, 1, 1, 1, 1, 1, 1]] * 2  # stops at 500
  other = [[0, 0, 0, 1, 0.2, 1, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]]
  r = rows("neuralgrok", ref, [500, 500]) + rows("adam", other, [1000, 1000])
  assert stats.common_window(r, ["neuralgrok", "adam"], [0, 1], 1000) == 500
  assert stats.common_window(r, ["adam"], [0, 1], 800) == 800
  with pytest.raises(ValueError, match="no metrics of method 'x'"):
    stats.common_window(r, ["x"], [0], 1000)
  run = _run_folder(tmp_path / "run", ["neuralgrok", "adam"], r, [0, 1])
  lines = stats.window_markdown(run).splitlines()
  assert lines[2] == "| neuralgrok (ref) | - | - | - | - | - | 0 |"
  cells = [c.strip() for c in lines[3].strip("|").split("|")]
  assert cells[0:2] == ["adam", "500"]
  # the window AUC stops at 500; the budget AUC carries the ref to 1000
  aw = [stats.auc(STEPS[:5], ref[s][:5], 500) -
        stats.auc(STEPS[:5], other[s][:5], 500) for s in range(2)]
  ab = [stats.auc(STEPS[:5], ref[s][:5], 1000) -
        stats.auc(STEPS, other[s], 1000) for s in range(2)]
  assert cells[2].startswith(f"{sum(aw) / 2:+.3f} [")
  assert cells[3].startswith(f"{sum(ab) / 2:+.3f} [")
  # seed 0 of adam collapsed at 500 (inside the window) and at 700
  assert cells[4:] == ["0", "1 in 1/2 seeds, lowest 0.200",
                       "2 in 1/2 seeds, lowest 0.000"]
