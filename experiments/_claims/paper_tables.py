"""The generated tables of the paper-size section, the noise-floor claims
and the README's headline table (RESULTS.md, README.md); the claims of the
paper-size section are in :mod:`experiments._claims.paper`."""
import numpy as np

from experiments._claims.base import *  # noqa: F401,F403 (the registry)
from experiments._claims.base import nf_pairs, nf_seeds, nf_table
from experiments._claims.paper import med95
from ngrok_jax import stats
from ngrok_jax.tables import md_table
from ngrok_jax.report import markdown_table


# ------------------------------------------------------------------ tables
def _report(D, dirs, relabel=()):
  text = markdown_table([D.path(d) for d in dirs])
  for a, b in relabel:
    text = text.replace(a, b)
  return text


def _seed_table(D):
  return md_table(["method", "seed 0", "seed 1", "seed 2"], [
      [{"neuralgrok": "NeuralGrok", "rescale": "rescaling"}.get(m, NAMES[m])]
      + ["never" if x is None else str(x)
         for x in D.per(f"{P}/sqsub", m)["steps_to_95"]]
      for m in ("neuralgrok",) + OTHERS])


TABLES += [
    Table("paper.table1", tuple(f"{P}/{d}" for d in (
        "add", "mul", "add-adam-wd0", "mul-adam-wd0")),
        lambda D: _report(D, [f"{P}/add", f"{P}/mul", f"{P}/add-adam-wd0",
                              f"{P}/mul-adam-wd0"], [
            ("| add-adam-wd0 | adam |", "| add-adam-wd0 | adam (wd 0) |"),
            ("| mul-adam-wd0 | adam |", "| mul-adam-wd0 | adam (wd 0) |")])),
    Table("paper.poly", (f"{P}/poly",), lambda D: _report(D, [f"{P}/poly"])),
    Table("paper.sub", (f"{P}/sub",), lambda D: _report(D, [f"{P}/sub"])),
    Table("paper.sqsub", (f"{P}/sqsub",),
          lambda D: _report(D, [f"{P}/sqsub"])),
    Table("paper.sqsub.seeds", (f"{P}/sqsub",), _seed_table),
] + [Table(f"paper.{t}.paired", (f"{P}/{t}",),
           lambda D, t=t: stats.paired_markdown(D.path(f"{P}/{t}")))
     for t in ("add", "mul")] + [
    Table(f"paper.{t}.window", (f"{P}/{t}",),
          lambda D, t=t: stats.window_markdown(D.path(f"{P}/{t}")))
    for t in TASKS]

#: Tables in checked regions that are not regenerated here, by their first
#: line, with the reason.

def _against_nf(D, t, name):
  """One task's comparisons against the noise floor: which mean paired
  differences exceed it, and which of those also have an interval
  excluding 0 (measured)."""
  fs, fa = noise_floor(D)
  nm = lambda ms: ", ".join(NAMES[m] for m in ms) or "none"  # noqa: E731

  def part(key, floor, window):
    ds = {m: D.pair(f"{P}/{t}", m, window)[key] for m in OTHERS}
    beyond = [m for m in OTHERS if abs(ds[m]["mean"]) > floor]
    meas = [m for m in beyond if ds[m]["lo"] > 0 or ds[m]["hi"] < 0]
    return f"beyond it: {nm(beyond)} (measured: {nm(meas)})"
  return (f"on {name}, steps to 95% {part('steps', fs, False)}; AUC over the "
          f"common window {part('auc', fa, True)}")


many("nf", [p for pr in NF_PAIRS for p in pr], {
    "floor": lambda D: "up to {:.0f} steps and its AUC by up to {:.3f}".format(
        *noise_floor(D)),
    "add": lambda D: _against_nf(D, "add", "a+b"),
    "mul": lambda D: _against_nf(D, "mul", "a*b"),
    "sub": lambda D: _against_nf(D, "sub", "a-b"),
    "sqsub": lambda D: _against_nf(D, "sqsub", "a*a-b"),
    "ab_seeds": lambda D: "gave per-seed steps to 95% of {}".format(
        nf_seeds(D, *NF_PAIRS[0])),
    "axb_seeds": lambda D: "on a*b {}".format(nf_seeds(D, *NF_PAIRS[1])),
    "rescale_same": lambda D: _rescale_same(D),
})


def _rescale_same(D):
  keys = ("train/loss", "test/loss", "test/acc", "train/acc")
  for a, b in NF_PAIRS:
    for s in D.run(a)["spec"].seeds:
      for k in keys:
        x, y = D.curve(a, "rescale", s, k), D.curve(b, "rescale", s, k)
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
  return "rescaling, run in both, gave the same curves to the last bit"


def _nf_diverge(D):
  same, first = [], []
  for a, b in NF_PAIRS:
    for s in D.run(a)["spec"].seeds:
      (x, u), (y, v) = (D.curve(a, "neuralgrok", s, "train/loss"),
                        D.curve(b, "neuralgrok", s, "train/loss"))
      assert np.array_equal(x, y)
      same.append(u[0] == v[0])
      first.append(int(x[np.nonzero(u != v)[0][0]]))
  assert all(same)
  return (f"agree to the last bit at step {D.run(NF_PAIRS[0][0])['spec'].eval_every}"
          f" and first differ at steps {min(first)}-{max(first)} (train loss)")


many("nf", [p for pr in NF_PAIRS for p in pr], {"diverge": _nf_diverge})


def _nf_ctrl(D):
  a, b = "noise_floor/g1", "noise_floor/gall"
  first = []
  for s in D.run(a)["spec"].seeds:
    (x, u), (y, v) = (D.curve(a, "neuralgrok", s, "train/loss"),
                      D.curve(b, "neuralgrok", s, "train/loss"))
    assert u[0] == v[0]
    first.append(int(x[np.nonzero(u != v)[0][0]]))
  t = nf_table(D, a, b)
  big = int(np.argmax(np.abs(t["steps"]["diffs"])))
  return ("It gave {} (one at a time) and {} (one vmap): seed {} moved by {:.0f} "
          "steps with the vmap width alone. The curves agree to the last bit "
          "at step 100 and first differ at step {} or {} (train loss)").format(
              nf_seeds(D, a, b).split(" and ")[0],
              nf_seeds(D, a, b).split(" and ")[1], big,
              abs(t["steps"]["diffs"][big]), min(first), max(first))


def _nf_means(D):
  st = max(abs(nf_table(D, a, b)["steps"]["mean"]) for a, b in nf_pairs(D))
  au = max(abs(nf_table(D, a, b)["auc"]["mean"]) for a, b in nf_pairs(D))
  fs, fa = noise_floor(D)
  return (f"the mean over 5 seeds moved by up to {st:.0f} steps and {au:.3f}. "
          "An effect is called beyond the noise floor below when its mean "
          f"paired difference is larger than the per-seed floor ({fs:.0f} "
          f"steps, {fa:.3f} AUC)")


many("nf", ["noise_floor"] + [p for pr in NF_PAIRS for p in pr], {
    "ctrl": _nf_ctrl, "means": _nf_means,
    "reproduce": lambda D: "neither run reproduces either study's curves"
    if all(not np.array_equal(
        D.curve(a, "neuralgrok", s, "train/loss")[1],
        D.curve(b, "neuralgrok", s, "train/loss")[1])
        for a in ("noise_floor/g1", "noise_floor/gall")
        for b in ("learned_part/a+b", "tune/a+b/heldout")
        for s in range(5)) else "one reproduces"})


# -------------------------------------------- README's headline (table)
def _readme_table(D):
  rows = []
  for t in ("add", "mul", "sub", "sqsub"):
    rows.append([TASKS[t]] + [med95(D, t, m).replace(",", "") for m in (
        "neuralgrok", "rescale", "adam", "adamw")] + [speed(f"{P}/{t}",
                                                             "adam", D)])
  return md_table(["task", "NeuralGrok", "rescaling alone",
                   "Adam, wd 1e-3 (the reference's baseline)", "AdamW, wd 1",
                   "Adam wd 1e-3 / NeuralGrok"], rows)


def _readme_measured(D):
  fs = noise_floor(D)[0]
  ts = ("add", "mul", "sub", "sqsub")
  excl = [TASKS[t] for t in ts if D.pair(f"{P}/{t}", "adam")["steps"]["hi"]
          < 0 or D.pair(f"{P}/{t}", "adam")["steps"]["lo"] > 0]
  assert all(abs(D.pair(f"{P}/{t}", "rescale")["steps"]["mean"]) <= fs
             for t in ts)
  beyond = [t for t in ts if abs(D.pair(f"{P}/{t}", "adamw")["steps"][
      "mean"]) > fs]
  assert len(excl) == 1 and len(beyond) == 1
  d = D.pair(f"{P}/{beyond[0]}", "adamw")["steps"]
  assert d["lo"] < 0 < d["hi"]
  return (f"With 3 seed pairs, only {excl[0]}'s step difference from Adam has "
          "a 95% interval that excludes 0. NeuralGrok's differences from "
          "rescaling alone are within the noise floor that float rounding "
          f"alone produces ({fs:.0f} steps per seed) on every task, and from "
          f"AdamW on every task but {TASKS[beyond[0]]} ({d['mean']:+.0f}, an "
          "interval that contains 0)")


TABLES.append(Table("readme.headline", tuple(f"{P}/{t}" for t in TASKS),
                    _readme_table, required=False))
many("readme", [f"{P}/{t}" for t in TASKS] + ["noise_floor"],
     {"measured": _readme_measured}, docs=())
