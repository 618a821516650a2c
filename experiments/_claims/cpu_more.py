"""Claims and tables of the CPU-size study's sections 2-7 (its archive
page, ``docs/archive/cpu-study-2026-11-22.md``, moved out of RESULTS.md)."""
import json
import math
import os

import numpy as np

from experiments._claims.base import *  # noqa: F401,F403 (the registry)
from experiments._claims.base import (  # noqa: F401
    final_value, nf_pairs, nf_seeds, nf_table, sps)
from ngrok_jax import stats
from ngrok_jax.tables import md_table
from experiments._claims.studies import theld
from experiments._claims import base


def many(prefix, sources, items, docs=(ARCHIVE,)):
  """:func:`base.many`: this study's claims appear on its archive page."""
  base.many(prefix, sources, items, docs)
from experiments._claims.cpu import (  # noqa: F401
    CMETHODS, CPU, CTASKS, cpair, cpu_steps, seed_diffs, poly_best, poly_train,
    signed_text, sweep_diffs)


# ------------------------------------------ CPU-size study: the c sweep
SW = "cpu/sweep_c"
SWG = ("c=0.1,wd=0.001", "c=1,wd=0.001", "c=10,wd=0.001")


def _sw_table(D):
  from ngrok_jax.report import rows_of
  rows = [c[:9] + [c[10]] for c in rows_of("sweep_c", D.run(SW)["summary"])]
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
  return signed_text(seed_diffs(r["neuralgrok"]["groups"][g]["steps_to_95"],
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
  from ngrok_jax.report import rows_of
  main = md_table(["run", "method", "95% median", "95% IQR", "95% success",
                   "99% median", "99% IQR", "99% success", "diverged",
                   "wall s"], [c[:9] + [c[10]] for c in
                               rows_of("weight_decay", D.run(WD)["summary"])])
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
        theld(D, "a+b", "muon")["t95"]["median"]),
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







def _sw_floor(D):
  fs = noise_floor(D)[0]
  d = sweep_diffs(D, SWG)
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


# ------------------------------------- CPU-size study: the paper's claims
def _g(x):
  return f"{x:.1f}".rstrip("0").rstrip(".")


def _claims_table(D):
  t95 = lambda t, m, wd=False: _cpu_t95(D, t, m, wd)  # noqa: E731
  ok = lambda t, m, wd=False: f"{t95(t, m, wd)['success']}/5"  # noqa: E731
  assert all(t95(t, "adam")["success"] == 0 for t in CTASKS)
  ng = {t: t95(t, "neuralgrok")["median"] for t in ("a+b", "a*b")}
  ad = {t: t95(t, "adam", True)["median"] for t in ("a+b", "a*b")}
  r = sorted(ng[t] / ad[t] for t in ng)
  (tmax, _, _), (fmax, _) = poly_train(D)
  b = poly_best(D)
  assert all(t95(t, "adamw")["success"] == 5 for t in CTASKS[:4])
  drop = _wd_stable(D).split(" was ")[1].split(" ")[0]
  row1 = (
      "vs **Adam without weight decay**: yes in the sense that Adam never "
      "generalized within 2000 steps on any task while NeuralGrok did on a+b "
      f"({ok('a+b', 'neuralgrok')}) and a*b ({ok('a*b', 'neuralgrok')}); a "
      "ratio cannot be computed. vs **Adam with NeuralGrok's own weight "
      f"decay**: NeuralGrok was **{_g(r[0])}-{_g(r[1])}x slower** (a+b "
      f"{ng['a+b']:.0f} vs {ad['a+b']:.0f}, a*b {ng['a*b']:.0f} vs "
      f"{ad['a*b']:.0f}) and not better on a-b ({ok('a-b', 'neuralgrok')} vs "
      f"{ok('a-b', 'adam', True)}); better only on a*a-b "
      f"({ok('a*a-b', 'neuralgrok')} vs {ok('a*a-b', 'adam', True)}).")
  row3 = (
      "a*c+b*d-e: untestable at this size: every method underfit (depth 1, "
      "p = 5: no seed fitted its training set in 2000 steps, highest train "
      f"accuracy {tmax:.3f}, median final at most {fmax:.2f}), so test "
      "accuracy stayed near chance (20% at p = 5; best single seeds "
      f"{b[0][0]:.2f}, NeuralGrok, still rising at step 2000, and "
      f"{b[1][0]:.2f}, NeuralGrok): not a test of grokking; a*a-b: the only "
      f"task where NeuralGrok had an edge ({ok('a*a-b', 'neuralgrok')} runs "
      f"grokked; AdamW {ok('a*a-b', 'adamw')} at "
      f"{t95('a*a-b', 'adamw')['median']:.0f} was much better)")
  row4 = (
      "not observed: AdamW wd 1 reached 95% in 5/5 seeds on each of the four "
      "binary tasks, and on a+b (section 5) no seed fell back after reaching "
      f"95% (largest later drop {drop}); wd 3 and 10 underfit from the start "
      "instead of becoming unstable (section 5)")
  return md_table(["claim", "here (CPU size)"], [
      ["NeuralGrok generalizes in up to 4.67x fewer steps than standard "
       "training", row1],
      ["the gain comes from the learned amplifier", "not here: rescaling "
       "alone with the same weight decay matched NeuralGrok seed by seed"],
      ["largest gains on a*c+b*d-e and a*a-b", row3],
      ["more stable than weight decay", row4],
      ["NeuralGrok keeps AGE lower", "only after it has generalized; higher "
       "than Adam's during training (section 3)"]])


TABLES.append(Table("cpu.paper_claims", (CPU, WD), _claims_table))


def _bench(D):
  with open(D.path("benchmark_cpu.json")) as f:
    rows = json.load(f)
  r = [x for x in rows if x["config"] == "a+b" and x["seeds"] == 1 and
       x["what"] == "amortised_step"]
  assert len(r) == 1
  s = r[0]["seconds"]
  return (f"about {s:.2f} s per amortised step on this CPU for a+b mod 97 at "
          f"S=1, i.e. ~{3e5 * s / 3600:.0f} h per 3e5-step run per seed")


def _c1(D):
  a = _cpu_t95(D, "a+b", "neuralgrok")["median"]
  g = D.run(SW)["summary"]["methods"]["neuralgrok"]["groups"][SWG[1]]
  return (f"c=1: median {a:.0f} on seeds 0-4 in the main table, "
          f"{g['t95']['median']:.0f} on seeds 5-9 in the c sweep")


many("cpu", ["benchmark_cpu.json", CPU, SW], {"bench": _bench, "c1": _c1})
