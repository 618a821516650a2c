"""Claims and tables of the CPU-size study (RESULTS.md)."""
import math
import os

import numpy as np

from experiments._claims.base import *  # noqa: F401,F403 (the registry)
from experiments._claims.base import (  # noqa: F401
    _final, _nf_pairs, _nf_seeds, _nf_table, _sps)
from ngrok_jax import stats
from ngrok_jax.tables import md_table
from experiments._claims.studies import _th


# ------------------------------------- CPU-size study: main comparison
CPU = "cpu/compare"
CTASKS = ("a+b", "a-b", "a*b", "a*a-b", "a*c+b*d-e")
CMETHODS = ("neuralgrok", "adam", "adamw", "grokfast-ema", "grokfast-ma",
            "rescale")


def _cpu_main(D):
  from ngrok_jax.report import _rows_of
  from ngrok_jax.tables import md_table as mdt
  header = ["run", "method", "95% median", "95% IQR", "95% success",
            "99% median", "99% IQR", "99% success", "diverged", "wall s"]
  rows = []
  for t in CTASKS:
    for d in (t, f"{t}-wd1e-3"):
      for c in _rows_of(d, D.run(f"{CPU}/{d}")["summary"]):
        rows.append(c[:9] + [c[10]])
  return mdt(header, rows)


def _cpu_final(D):
  head = ["task"] + list(CMETHODS) + ["adam wd1e-3", "rescale wd1e-3"]
  rows = []
  for t in CTASKS:
    cells = [t]
    for d, m in [(t, m) for m in CMETHODS] + [(f"{t}-wd1e-3", "adam"),
                                             (f"{t}-wd1e-3", "rescale")]:
      te = _final(D, f"{CPU}/{d}", "test/acc", m)
      tr = _final(D, f"{CPU}/{d}", "train/acc", m)
      cells.append(f"{te:.2f} ({tr:.2f})")
    rows.append(cells)
  return md_table(head, rows)


def _cpu_steps(D, t, m, wd=False):
  d = f"{CPU}/{t}-wd1e-3" if wd else f"{CPU}/{t}"
  return D.run(d)["summary"]["methods"][m]["steps_to_95"]


def _diff(a, b):
  return [None if x is None or y is None else x - y for x, y in zip(a, b)]


def _signed(v):
  return "/".join("never" if x is None else (f"{x:+d}" if x else "0")
                  for x in v)


VERDICT = {"a+b": "no: per seed {} (NeuralGrok minus rescale)",
           "a-b": "not measurably (1 seed vs 0 within 2000 steps)",
           "a*b": "no: {}", "a*a-b": "at best slightly (1 seed vs 0)",
           "a*c+b*d-e": "cannot tell (every method underfit)"}


def _cpu_seed_table(D):
  rows = []
  for t in CTASKS:
    ng, rs = _cpu_steps(D, t, "neuralgrok"), _cpu_steps(D, t, "rescale", 1)
    ad = _cpu_steps(D, t, "adam", 1)
    v = VERDICT[t]
    if "{}" in v:
      v = v.format(_signed(_diff(ng, rs)))
    else:
      ok = (sum(x is not None for x in ng), sum(x is not None for x in rs))
      want = {"a-b": (1, 0), "a*a-b": (1, 0), "a*c+b*d-e": (0, 0)}[t]
      assert ok == want, (t, ok)
    rows.append([t, seeds_text(ng, "/"), seeds_text(rs, "/"),
                 seeds_text(ad, "/"), v])
  return md_table(["task", "NeuralGrok steps to 95%, seeds 0-4",
                   "rescale (wd 1e-3)", "Adam (wd 1e-3)",
                   "learned MLP better?"], rows)


def _cpu_paired(D):
  head = None
  rows = []
  for t in CTASKS:
    text = stats.paired_markdown(D.path(f"{CPU}/{t}"), others=[
        D.path(f"{CPU}/{t}-wd1e-3")])
    lines = text.split("\n")
    head = head or "| task " + lines[0]
    for line in lines[2:]:
      rows.append(f"| {t} " + line.replace(f" ({t}-wd1e-3)", ""))
  return "\n".join([head, "|" + "---|" * (head.count("|") - 1)] + rows)


TABLES += [Table("cpu.main", (CPU,), _cpu_main),
           Table("cpu.final", (CPU,), _cpu_final),
           Table("cpu.seeds", (CPU,), _cpu_seed_table),
           Table("cpu.paired", (CPU,), _cpu_paired)]
EXEMPT["|  | paper (preset `paper-*`) | CPU size (`--quick`) |"] = (
    "configuration, not data")


def _cpair(D, t, m, wd=False):
  base = D.run(f"{CPU}/{t}")
  other = D.run(f"{CPU}/{t}-wd1e-3") if wd else base
  return stats.paired_table(base["rows"], "neuralgrok", m,
                            list(base["spec"].seeds), base["spec"].steps,
                            rows_b=other["rows"])


def _sweep_diffs(D, groups):
  r = D.run("cpu/sweep_c")
  out = []
  for g in groups:
    seeds = r["summary"]["methods"]["neuralgrok"]["groups"][g]["seeds"]
    out += _diff(*[r["summary"]["methods"][m]["groups"][g]["steps_to_95"]
                   for m in ("neuralgrok", "rescale")])
  return [x for x in out if x is not None]


def _mlp_range(D):
  d = [x for t in ("a+b", "a*b") for x in _diff(
      _cpu_steps(D, t, "neuralgrok"), _cpu_steps(D, t, "rescale", True))
       if x is not None]
  d += _sweep_diffs(D, ("c=1,wd=0.001", "c=10,wd=0.001"))
  return f"95% by {min(d):+d} to {max(d):+d} steps with no consistent sign"


def _poly_best(D):
  best = []
  for d in ("a*c+b*d-e", "a*c+b*d-e-wd1e-3"):
    for m in D.run(f"{CPU}/{d}")["spec"].methods:
      for s in range(5):
        st, v = D.curve(f"{CPU}/{d}", m, s)
        i = int(np.nanargmax(v))
        best.append((float(v[i]), m, s, int(st[i]), d))
  best.sort(reverse=True)
  return best


def _poly_train(D):
  mx, fin = [], []
  for d in ("a*c+b*d-e", "a*c+b*d-e-wd1e-3"):
    for m in D.run(f"{CPU}/{d}")["spec"].methods:
      for s in range(5):
        st, v = D.curve(f"{CPU}/{d}", m, s, "train/acc")
        mx.append((float(np.nanmax(v)), m, s))
      fin.append((_final(D, f"{CPU}/{d}", "train/acc", m), m))
  return max(mx), max(fin)


def _poly_claim(D):
  (tmax, tm, ts), (fmax, fm) = _poly_train(D)
  b = _poly_best(D)
  st, v = D.curve(f"{CPU}/a*c+b*d-e", "neuralgrok", b[0][2])
  assert b[0][1] == b[1][1] == "neuralgrok" and b[0][3] == 2000
  assert v[-1] >= v[-2]
  nm = {"adam": "Adam", "rescale": "rescale"}
  return ("highest train accuracy of any seed at any evaluation was {:.3f}, "
          "{} seed {}; median final train accuracy at most {:.2f}, {}), and "
          "test accuracy stayed near chance: the best single seeds reached "
          "{:.2f} (NeuralGrok seed {}, at step {} and still rising) and {:.2f} "
          "(NeuralGrok seed {}, step {}), every other seed of every method at "
          "most {:.2f}").format(tmax, nm.get(tm, tm), ts, fmax, nm.get(fm, fm),
                                b[0][0], b[0][2], b[0][3], b[1][0], b[1][2],
                                n(b[1][3]).replace(",", ""), b[2][0])


def _auc_range(D, m, wd=False):
  v = [_cpair(D, t, m, wd)["auc"] for t in CTASKS]
  return v


many("cpu", [CPU, "cpu/sweep_c"], {
    "mlp": _mlp_range,
    "poly_short": lambda D: "(best single seeds {:.2f} and {:.2f} test "
    "accuracy".format(*[b[0] for b in _poly_best(D)[:2]]),
    "per_task": lambda D: "(difference {}..{:+d} per seed; 10 more paired "
    "seeds in the c sweep below: {:+d}..{:+d})".format(
        *(lambda d: (min(d), max(d)))([x for x in _diff(
            _cpu_steps(D, "a+b", "neuralgrok"),
            _cpu_steps(D, "a+b", "rescale", True)) if x is not None]),
        *(lambda d: (min(d), max(d)))(_sweep_diffs(
            D, ("c=1,wd=0.001", "c=10,wd=0.001")))),
    "axb": lambda D: "a*b no ({:+d}..{:+d})".format(
        *(lambda d: (min(d), max(d)))([x for x in _diff(
            _cpu_steps(D, "a*b", "neuralgrok"),
            _cpu_steps(D, "a*b", "rescale", True)) if x is not None])),
    "sq_final": lambda D: "median final test accuracy {:.2f} vs {:.2f}".format(
        _final(D, f"{CPU}/a*a-b", "test/acc"),
        _final(D, f"{CPU}/a*a-b-wd1e-3", "test/acc", "rescale")),
    "poly": _poly_claim,
    "adam_wd": lambda D: "(a+b {:.0f}, a*b {:.0f} vs {:.0f} and {:.0f})".format(
        *[D.run(f"{CPU}/{t}-wd1e-3")["summary"]["methods"]["adam"]["t95"][
            "median"] for t in ("a+b", "a*b")],
        *[D.run(f"{CPU}/{t}")["summary"]["methods"]["neuralgrok"]["t95"][
            "median"] for t in ("a+b", "a*b")]),
    "rescale": lambda D: "steps {} (a+b) and {} (a*b); AUC differences {} to "
    "{} on the five tasks, every interval containing 0 (all within {}..{})"
    .format(ci(_cpair(D, "a+b", "rescale", True)["steps"]),
            ci(_cpair(D, "a*b", "rescale", True)["steps"]),
            *(lambda v: (f"{min(x['mean'] for x in v):+.3f}",
                         f"{max(x['mean'] for x in v):+.3f}",
                         f"{min(x['lo'] for x in v):.3f}",
                         f"{max(x['hi'] for x in v):+.3f}"))(
                _auc_range(D, "rescale", True))),
    "adam_wd_pair": lambda D: "{} steps on a+b and {} on a*b (Adam needs "
    "{:.2f}x and {:.2f}x of NeuralGrok's steps), AUC {:.3f} on both".format(
        ci(_cpair(D, "a+b", "adam", True)["steps"]),
        ci(_cpair(D, "a*b", "adam", True)["steps"]),
        _cpair(D, "a+b", "adam", True)["speedup"]["geomean"],
        _cpair(D, "a*b", "adam", True)["speedup"]["geomean"],
        _cpair(D, "a+b", "adam", True)["auc"]["mean"])
    if round(_cpair(D, "a+b", "adam", True)["auc"]["mean"], 3) == round(
        _cpair(D, "a*b", "adam", True)["auc"]["mean"], 3) else "differ",
    "plain": lambda D: "higher on a+b ({}) and a*b ({}); on a-b and a*a-b the "
    "intervals just reach 0 ({}, {})".format(
        ci(_cpair(D, "a+b", "adam")["auc"], ".2f"),
        ci(_cpair(D, "a*b", "adam")["auc"], ".2f"),
        ci(_cpair(D, "a-b", "adam")["auc"], ".3f"),
        ci(_cpair(D, "a*a-b", "adam")["auc"], ".3f")),
    "adamw": lambda D: (lambda v: "(AUC {:.2f} to {:.2f}, all intervals below "
                        "0)".format(max(x["mean"] for x in v),
                                    min(x["mean"] for x in v))
                        if all(x["hi"] < 0 for x in v) else "not")(
        [_cpair(D, t, "adamw")["auc"] for t in ("a+b", "a-b", "a*b", "a*a-b")]),
    "poly_auc": lambda D: "higher than rescaling's ({}) and Adam wd 1e-3's "
    "({})".format(ci(_cpair(D, "a*c+b*d-e", "rescale")["auc"]),
                  ci(_cpair(D, "a*c+b*d-e", "adam", True)["auc"], ".3f"))
    .replace(ci(_cpair(D, "a*c+b*d-e", "rescale")["auc"]),
             ci(_cpair(D, "a*c+b*d-e", "rescale")["auc"], ".3f")),
})


def _reach(D, t):
  ng = sum(x is not None for x in _cpu_steps(D, t, "neuralgrok"))
  rs = sum(x is not None for x in _cpu_steps(D, t, "rescale", True))
  return f"{ng}/5 vs {rs}/5"


many("cpu", [CPU], {
    "ab_reach": lambda D: f"a-b not measurably ({_reach(D, 'a-b')} within "
    "budget)",
    "sq_reach": lambda D: f"a*a-b slightly, at best ({_reach(D, 'a*a-b')};",
    "points": lambda D: "i.e. {:.0f}-{:.0f} points of test accuracy".format(
        100 * _cpair(D, "a*c+b*d-e", "adam", True)["auc"]["mean"],
        100 * _cpair(D, "a*c+b*d-e", "rescale")["auc"]["mean"]),
})


# ------------------------------------------ CPU-size study: the c sweep
SW = "cpu/sweep_c"
SWG = ("c=0.1,wd=0.001", "c=1,wd=0.001", "c=10,wd=0.001")


def _sw_table(D):
  from ngrok_jax.report import _rows_of
  rows = [c[:9] + [c[10]] for c in _rows_of("sweep_c", D.run(SW)["summary"])]
  return md_table(["run", "method", "95% median", "95% IQR", "95% success",
                   "99% median", "99% IQR", "99% success", "diverged",
                   "wall s"], rows)


TABLES.append(Table("cpu.sweep_c", (SW,), _sw_table))


def _sw_norm(D, g):
  r = D.run(SW)
  seeds = r["summary"]["methods"]["rescale"]["groups"][g]["seeds"]
  v = np.concatenate([D.curve(SW, "rescale", s, "grad/norm_transformed")[1]
                      for s in seeds])
  assert np.nanmax(v) - np.nanmin(v) < 1e-3 * np.nanmax(v)
  return f"{np.nanmedian(v):.3g}"


def _sw_med(D, m, g):
  return D.run(SW)["summary"]["methods"][m]["groups"][g]["t95"]["median"]


def _sw_diffs(D, g):
  r = D.run(SW)["summary"]["methods"]
  return _signed(_diff(r["neuralgrok"]["groups"][g]["steps_to_95"],
                       r["rescale"]["groups"][g]["steps_to_95"]))


many("sweep", [SW, CPU], {
    "norm1": lambda D: f"sqrt(17) c ({_sw_norm(D, SWG[1])} at c=1, logged as",
    "norms": lambda D: "(logged: {} at c=0.1, {} at c=1, {} at c=10)".format(
        *[_sw_norm(D, g) for g in SWG]),
    "faster": lambda D: "c=0.1 is faster ({:.0f} vs {:.0f}-{:.0f}, both "
    "methods)".format(
        *(lambda a, b: (a[0], min(b), max(b)))(
            {_sw_med(D, m, SWG[0]) for m in ("rescale", "neuralgrok")} and
            [_sw_med(D, "rescale", SWG[0])],
            [_sw_med(D, m, g) for m in ("rescale", "neuralgrok")
             for g in SWG[1:]]))
    if _sw_med(D, "rescale", SWG[0]) == _sw_med(D, "neuralgrok", SWG[0])
    else "differ",
    "match": lambda D: "match Adam with wd 1e-3 ({:.0f})".format(
        D.run(f"{CPU}/a+b-wd1e-3")["summary"]["methods"]["adam"]["t95"][
            "median"]),
    "pairs": lambda D: "c=0.1: {}; c=1: {}; c=10: {}".format(
        *[_sw_diffs(D, g) for g in SWG]),
})


# ------------------------------------- CPU-size study: weight decay
WD = "cpu/weight_decay"
WDV = (0.1, 1.0, 3.0, 10.0)


def _wd_seeds(D, v):
  r = D.run(WD)
  return [s for s, w in zip(r["spec"].seeds, r["spec"].hparams["wd"])
          if w == v]


def _wd_tables(D):
  from experiments.weight_decay import instability
  from ngrok_jax.report import _rows_of
  main = md_table(["run", "method", "95% median", "95% IQR", "95% success",
                   "99% median", "99% IQR", "99% success", "diverged",
                   "wall s"], [c[:9] + [c[10]] for c in
                               _rows_of("weight_decay", D.run(WD)["summary"])])
  per = D.run(WD)["summary"]["methods"]["adamw"]
  lines = []
  for v in WDV:
    seeds = _wd_seeds(D, v)
    drop, rel = instability(D.run(WD)["rows"], "adamw", seeds)
    div = sum(per["diverged_at"][s] is not None for s in seeds)
    lines.append(["adamw", f"{v:g}", "-" if drop is None else f"{drop:.3f}",
                  f"{rel}/{len(seeds)}", f"{div}/{len(seeds)}"])
  return main, md_table(["method", "wd", "max drop after 95%",
                         "relapses < 0.5", "diverged"], lines)


TABLES += [Table("cpu.wd", (WD,), lambda D: _wd_tables(D)[0]),
           Table("cpu.wd.stability", (WD,), lambda D: _wd_tables(D)[1])]


def _wd_med(D, v, key):
  return float(np.median([D.curve(WD, "adamw", s, key)[1][-1]
                          for s in _wd_seeds(D, v)]))


def _wd_acc(D):
  return "; ".join(f"wd {v:g} {_wd_med(D, v, 'test/acc'):.2f} / "
                   f"{_wd_med(D, v, 'train/acc'):.2f}" for v in WDV)


def _wd_norm(D):
  return ("weight norm held at {:.0f} and {:.0f} against {:.0f} for "
          "wd 1").format(*[_wd_med(D, v, "weights/norm")
                           for v in (3.0, 10.0, 1.0)])


def _wd_stable(D):
  from experiments.weight_decay import instability
  per = D.run(WD)["summary"]["methods"]["adamw"]
  assert all(d is None for d in per["diverged_at"])
  res = {v: instability(D.run(WD)["rows"], "adamw", _wd_seeds(D, v))
         for v in WDV}
  assert all(r[1] == 0 for r in res.values())
  v, (drop, _) = max(((v, r) for v, r in res.items() if r[0] is not None),
                     key=lambda x: x[1][0])
  return f"the largest later drop of test accuracy was {drop:.3f} (wd {v:g})"


def _wd_fast(D):
  g = D.run(WD)["summary"]["methods"]["adamw"]["groups"]["wd=1"]
  return ("(median {:.0f} steps to 95%, {:.0f} to 99%, on a+b)").format(
      g["t95"]["median"], g["t99"]["median"])


many("wd", [WD, "tune/a+b"], {
    "wall": lambda D: "(one program, 20 seeds, {:.0f} s of training)".format(
        D.run(WD)["summary"]["methods"]["adamw"]["wall_time_s"]),
    "acc": _wd_acc, "norm": _wd_norm, "stable": _wd_stable, "fast": _wd_fast,
    "muon": lambda D: "has Muon at a median of {:.0f} as well".format(
        _th(D, "a+b", "muon")["t95"]["median"]),
})




# ------------------------------------------- CPU-size study: transfer
TR = "cpu/transfer"
TRT = ("a+b", "a-b", "a*b")


def _tr_sum(D, s, t):
  return D.run(f"{TR}/{s}__to__{t}")["summary"]["methods"][
      "neuralgrok-frozen"]["t95"]


def _tr_table(D):
  from ngrok_jax.tables import steps_text
  lines = [[s] + [steps_text(_tr_sum(D, s, t)) for t in TRT] for s in TRT]
  for m in ("neuralgrok", "adam"):
    lines.append([f"({m} on the target, runs/results/compare)"] + [
        steps_text(D.run(f"{CPU}/{t}")["summary"]["methods"][m]["t95"])
        for t in TRT])
  return md_table(["frozen amplifier from \\ target"] + list(TRT), lines)


TABLES.append(Table("cpu.transfer", (TR, CPU), _tr_table))


def _tr_med(D, s, t):
  return f"{_tr_sum(D, s, t)['median']:.0f}"


def _cpu_t95(D, t, m, wd=False):
  d = f"{CPU}/{t}-wd1e-3" if wd else f"{CPU}/{t}"
  return D.run(d)["summary"]["methods"][m]["t95"]


def _tr_claims(D):
  from ngrok_jax.tables import steps_text
  ok = all(_tr_sum(D, s, t)["success"] == 5 for s in TRT
           for t in ("a+b", "a*b"))
  assert ok
  rng = lambda t: "{:.0f}-{:.0f}".format(  # noqa: E731
      min(_tr_sum(D, s, t)["median"] for s in TRT),
      max(_tr_sum(D, s, t)["median"] for s in TRT))
  own = lambda t: f"{_cpu_t95(D, t, 'neuralgrok')['median']:.0f}"  # noqa
  return ("the a+b and a*b targets in 5/5 seeds, within a few hundred steps "
          "of the amplifier learned on the target itself "
          "(a+b: {} vs {}; a*b: {} vs {}), and the a*b amplifier did better "
          "on a-b ({}/5) than the one learned on a-b ({}/5)").format(
              rng("a+b"), own("a+b"), rng("a*b"), own("a*b"),
              _tr_sum(D, "a*b", "a-b")["success"],
              _cpu_t95(D, "a-b", "neuralgrok")["success"])


many("transfer", [TR, CPU], {
    "rescale": lambda D: "a+b {}, a-b {}, a*b {}".format(
        *[__import__("ngrok_jax.tables", fromlist=["x"]).steps_text(
            _cpu_t95(D, t, "rescale", True)) for t in TRT]).replace(
        "a-b never (0/5)", "a-b never\n(0/5)").replace("\n", " "),
    "learned": _tr_claims,
    "diag": lambda D: "(a+b {} vs {}, a-b {}/5 vs {}/5, a*b {} vs {})".format(
        _tr_med(D, "a+b", "a+b"), f"{_cpu_t95(D, 'a+b', 'neuralgrok')['median']:.0f}",
        _tr_sum(D, "a-b", "a-b")["success"],
        _cpu_t95(D, "a-b", "neuralgrok")["success"],
        _tr_med(D, "a*b", "a*b"), f"{_cpu_t95(D, 'a*b', 'neuralgrok')['median']:.0f}"),
    "hardest": lambda D: "reached 95% on it in more than {}/5 seeds".format(
        max(_cpu_t95(D, "a-b", m, wd)["success"] for m, wd in (
            ("neuralgrok", 0), ("adam", 0), ("grokfast-ema", 0),
            ("grokfast-ma", 0), ("rescale", 0), ("adam", 1), ("rescale", 1)))),
})




def _cpu_nf(D):
  fs = noise_floor(D)[0]
  beyond, within = [], []
  for t in CTASKS:
    for m, wd in [(m, False) for m in CMETHODS[1:]] + [("adam", True),
                                                       ("rescale", True)]:
      d = _cpair(D, t, m, wd)["steps"]
      if d["mean"] is None:
        continue
      name = (f"{t} {m}{' wd 1e-3' if wd else ''} ({d['mean']:+.0f}, "
              f"n {d['n_both']})")
      (beyond if abs(d["mean"]) > fs else within).append(name)
  return (f"differences of steps to 95% beyond the noise floor ({fs:.0f} "
          f"steps): {', '.join(beyond)}; within it: {', '.join(within)}")


many("cpu", [CPU, "noise_floor"], {"nf": _cpu_nf})


def _sw_floor(D):
  fs = noise_floor(D)[0]
  d = _sweep_diffs(D, SWG)
  assert max(abs(x) for x in d) <= fs
  return ("No consistent gain from the MLP, and every per-seed difference is "
          f"within the noise floor ({fs:.0f} steps)")


many("sweep", [SW, "noise_floor"], {"floor": _sw_floor})


# ---------------------------------------------- CPU-size study: AGE
def _at(D, t, m, key, step):
  r = D.run(f"{CPU}/{t}")
  v = []
  for s in r["spec"].seeds:
    st, x = D.curve(f"{CPU}/{t}", m, s, key)
    v.append(float(x[st == step][0]))
  return float(np.median(v))


def _age_table(D):
  rows = []
  for t in ("a+b", "a-b", "a*b", "a*a-b"):
    for m in ("neuralgrok", "adam", "adamw"):
      tr = (f"{_at(D, t, m, 'grad/age_transformed', 2000):.0f}"
            if m == "neuralgrok" else "(= raw)")
      rows.append([t, m] + [f"{_at(D, t, m, 'grad/age', s):.0f}"
                            for s in (500, 1000, 2000)] + [
          tr, "{:.0f} -> {:.0f}".format(
              _at(D, t, m, "weights/entropy", 100),
              _at(D, t, m, "weights/entropy", 2000))] + [
          f"{_at(D, t, m, 'test/acc', s):.2f}" for s in (1000, 2000)])
  return md_table(["task", "method", "AGE raw @500", "@1000", "@2000",
                   "AGE amplified @2000", "weight entropy @100 -> @2000",
                   "test acc @1000", "@2000"], rows)


TABLES.append(Table("cpu.age", (CPU,), _age_table))


def _age_higher(D):
  ts = ("a+b", "a-b", "a*b", "a*a-b")
  assert all(_at(D, t, "neuralgrok", "grad/age", s) >
             _at(D, t, "adam", "grad/age", s) for t in ts for s in (500, 1000))
  f = lambda t, m, s: f"{_at(D, t, m, 'grad/age', s):.0f}"  # noqa: E731
  return ("higher than plain Adam's on every task (e.g. a*a-b at step 1000: "
          f"{f('a*a-b', 'neuralgrok', 1000)} vs {f('a*a-b', 'adam', 1000)}; "
          f"a-b: {f('a-b', 'neuralgrok', 1000)} vs {f('a-b', 'adam', 1000)})"
          f", and it drops below Adam's only after NeuralGrok has generalized "
          f"(a+b {f('a+b', 'neuralgrok', 2000)} vs {f('a+b', 'adam', 2000)}, "
          f"a*b {f('a*b', 'neuralgrok', 2000)} vs {f('a*b', 'adam', 2000)} at "
          "step 2000)")


def _age_amp(D):
  v = []
  for t in ("a+b", "a-b", "a*b", "a*a-b"):
    st = D.curve(f"{CPU}/{t}", "neuralgrok", 0, "grad/age_transformed")[0]
    v += [_at(D, t, "neuralgrok", "grad/age_transformed", int(s)) for s in st]
  return "higher than the raw one ({:.0f}-{:.0f})".format(
      math.floor(min(v) / 100) * 100, round(max(v), -2))


def _age_went(D):
  def k(t, m, s):
    return _at(D, t, m, "weights/entropy", s) / 1000
  ts = ("a+b", "a-b", "a*b", "a*a-b")
  ng0 = [k(t, "neuralgrok", 100) for t in ts]
  ng1 = [k(t, "neuralgrok", 2000) for t in ts]
  ad0 = [k(t, "adam", 100) for t in ts]
  ad1 = [k(t, "adam", 2000) for t in ts]
  aw1 = [k(t, "adamw", 2000) for t in ts]
  assert max(ng0) - min(ng0) < 0.2 and max(ad0) - min(ad0) < 0.2
  return ("falls under NeuralGrok ({:.1f}k -> {:.1f}-{:.1f}k) and rises under "
          "plain Adam ({:.1f}k -> {:.0f}k): this is the weight decay; AdamW "
          "falls the same way (to {:.1f}-{:.1f}k)").format(
              np.median(ng0), min(ng1), max(ng1), np.median(ad0),
              np.median(ad1), min(aw1), max(aw1))


many("age", [CPU], {"higher": _age_higher, "amp": _age_amp,
                    "entropy": _age_went})
