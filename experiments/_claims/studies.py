"""Claims and tables of the tuned-baselines, learned-part and cross-task
sections (RESULTS.md), and the README's summary of them."""
import math
import os

import numpy as np

from experiments._claims.base import *  # noqa: F401,F403 (the registry)
from experiments._claims.base import (  # noqa: F401
    final_value, nf_pairs, nf_seeds, nf_table, sps)
from ngrok_jax import stats
from ngrok_jax.tables import md_table
from experiments.tune import fair_table


# ------------------------------------- claims outside the checked regions
# (corrected statements of the other studies; checked for presence)
TUNE = {"a+b": "tune/a+b", "a*b": "tune/a*b", "a-b": "tune/a-b"}
TNAMES = {"adam": "Adam", "grokfast-ema": "GrokFast-EMA",
          "grokfast-ma": "GrokFast-MA", "orthograd": "⊥AdamW"}


def _tune_never(D):
  by = {}
  total = 0
  for t, rel in TUNE.items():
    for m, v in D.json(f"{rel}/tune.json")["methods"].items():
      total += 1
      if v["ranked"][0]["median"] is None:
        by.setdefault(m, []).append(t)
  k = sum(len(v) for v in by.values())
  parts = [f"{TNAMES[m]} on " + ("every task" if len(ts) == 3 else
                                  " and ".join(ts)) for m, ts in by.items()]
  return (f"{k} of the {total} chosen cells (3 tasks x 8 methods) had a "
          f"median of \"never\" on their two tuning seeds ({', '.join(parts)})")


def _tune_ties(D):
  out = []
  for t, rel in TUNE.items():
    s = D.run(f"{rel}/heldout")["summary"]["methods"]
    w = s["adamw"]["steps_to_95"]
    for m in ("neuralgrok", "rescale"):
      for i, (a, b) in enumerate(zip(s[m]["steps_to_95"], w)):
        if a is not None and a <= b:
          out.append((m, t, i, a, b))
  assert [(m, t, i) for m, t, i, a, b in out] == [("rescale", "a-b", 1)]
  m, t, i, a, b = out[0]
  assert a == b
  return (f"except that rescaling tied AdamW on {t} seed {i} ({a} steps "
          "both)")


def _tune_never_ng(D):
  v = D.run("tune/a-b/heldout")["summary"]["methods"]["neuralgrok"][
      "steps_to_95"]
  k = [i for i, x in enumerate(v) if x is None]
  assert len(k) == 1 and all(
      None not in D.run(f"{r}/heldout")["summary"]["methods"]["neuralgrok"][
          "steps_to_95"] for r in ("tune/a+b", "tune/a*b"))
  return (f"(on a-b over {len(v) - 1} seeds: NeuralGrok's seed {k[0]} never "
          "reached 95%)")


def _tune_time(D):
  r = []
  for rel in TUNE.values():
    s = D.run(f"{rel}/heldout")["summary"]["methods"]
    f = lambda m: s[m]["wall_time_s"] / max(s[m]["last_step"])  # noqa
    r.append(f"{100 * f('rescale') / f('neuralgrok'):.0f}%")
  return f"at {', '.join(r[:2])} and {r[2]} of its time per step"


def _grad_norm(D):
  g = np.array([r["meta/grad_norm"] for rel in ("learned_part/a+b",
                                                "learned_part/axb")
                for r in D.rows(rel) if r["method"] == "neuralgrok" and
                r.get("meta/grad_norm") is not None])
  lo, hi = np.percentile(g, [5, 95])
  return (f"{g.min():.0e} to {g.max():.1e} over every evaluation of the "
          f"recipe on a+b and a*b, 5th-95th percentile {lo:.1e} to {hi:.1e}")


def _cpu_cross(D):
  acc = []
  for v in ("cross-recipe", "cross-meta-lr-1e-2-wd0"):
    p = D.run(f"cross_task/{v}/a-b")["summary"]["methods"]["neuralgrok"]
    assert p["steps_to_95"][1] is None
    acc.append(p["final_test_acc"][1])
  return ("seed 1 never reached 95% within the 2,000 steps in either variant "
          f"(final test accuracy {acc[0]:.2f} with the recipe, {acc[1]:.2f} "
          "with meta lr 1e-2")


def _paper_cross(D):
  def steps(rel, sep="/"):
    return seeds_text(D.run(rel)["summary"]["methods"]["neuralgrok"][
        "steps_to_95"], sep)
  return "a+b {} (single-task {}), a*b {} ({}), and a-b {} ({})".format(
      steps(f"{P}/cross/a+b"), steps(f"{P}/add"), steps(f"{P}/cross/axb"),
      steps(f"{P}/mul"), steps(f"{P}/cross/a-b"), steps(f"{P}/sub"))


def _paper_cross_a_b(D):
  st, acc = D.curve(f"{P}/cross/a-b", "neuralgrok", 0)
  single = D.per(f"{P}/sub", "neuralgrok")["steps_to_95"][0]
  return (f"it was at {acc[-1]:.2f} when the budget ended, and its "
          f"single-task run reached 95% only at {n(single)}")


many("other", ["tune", "learned_part", "cross_task", f"{P}/cross"], {
    "tune_never": _tune_never, "tune_ties": _tune_ties,
    "tune_fifth": _tune_never_ng, "tune_time": _tune_time,
    "grad_norm": _grad_norm, "cpu_cross": _cpu_cross,
    "paper_cross": _paper_cross, "paper_cross_a_b": _paper_cross_a_b})



# ------------------------------------------- tuned baselines (CPU size)
def tpair(D, t, m):
  r = D.run(f"{TUNE[t]}/heldout")
  return stats.paired_table(r["rows"], "adamw", m, list(r["spec"].seeds),
                            r["spec"].steps)


def theld(D, t, m):
  return D.run(f"{TUNE[t]}/heldout")["summary"]["methods"][m]


def _tpairs(D, m, key="steps", fmt=".0f"):
  return [ci(tpair(D, t, m)[key], fmt) for t in TUNE]


def _cells(D):
  lr = {t: {m: v["ranked"][0]["cell"] for m, v in D.json(
      f"{TUNE[t]}/tune.json")["methods"].items()} for t in TUNE}
  not_max = {t: sorted(m for m, c in v.items() if c["lr"] != 3e-3)
             for t, v in lr.items()}
  assert not_max == {"a+b": ["orthograd"], "a*b": ["orthograd"],
                     "a-b": ["grokfast-ema", "orthograd"]}, not_max
  gf = {lr[t][m]["wd"] for t in TUNE for m in ("grokfast-ema", "grokfast-ma")}
  assert gf == {0.01} and lr["a-b"]["adam"]["wd"] == 0.01
  assert {lr[t][m]["wd"] for t in TUNE for m in ("adamw", "muon")} == {1.0}
  assert {lr[t][m]["wd"] for t in TUNE for m in ("neuralgrok", "rescale")} \
      == {0.001}
  return ("every method but ⊥AdamW (lr 1e-3) chose the grid's largest "
          "learning rate 3e-3 on a+b and a*b (and on a-b all but ⊥AdamW and "
          "GrokFast-EMA), and GrokFast its largest weight decay 1e-2 (Adam "
          "too on a-b)")


def _fourier(D, t, m, agg):
  return [int(agg(D.curve(f"{TUNE[t]}/heldout", m, s, "fourier/key_freqs")[1]))
          for s in D.run(f"{TUNE[t]}/heldout")["spec"].seeds]


def _muon_fourier(D):
  mu = set(_fourier(D, "a+b", "muon", lambda v: v[-1]))
  aw = _fourier(D, "a+b", "adamw", lambda v: v[-1])
  assert len(mu) == 1
  return (f"({mu.pop()} key frequencies at the end against AdamW's "
          f"{min(aw)}-{max(aw)})")


def _concentrate(D):
  v = [x for m in ("adamw", "neuralgrok", "rescale")
       for x in _fourier(D, "a+b", m, lambda v: v[-1])]
  w = [x for m in ("adam", "adamw", "grokfast-ema", "grokfast-ma", "rescale",
                   "orthograd", "muon", "neuralgrok")
       for x in _fourier(D, "a*b", m, np.nanmin)]
  hi = [x for m in ("adam", "adamw", "grokfast-ema", "grokfast-ma", "rescale",
                    "orthograd", "muon", "neuralgrok")
        for x in _fourier(D, "a*b", m, np.nanmax)]
  return (f"energy on {min(v)}-{max(v)} key frequencies as test accuracy "
          f"rises; on a*b (multiplication, whose structure is not a Fourier "
          f"mode of the token index) no method concentrates it ({min(w)}-"
          f"{max(hi)} of")


def _reached(D, m):
  return [theld(D, t, m)["t95"]["success"] for t in TUNE]


def _softmax(D):
  mx = {t: max(np.nanmax(D.curve(f"{TUNE[t]}/heldout", m, s,
                                 "train/softmax_collapse")[1])
               for m in D.run(f"{TUNE[t]}/heldout")["spec"].methods
               for s in D.run(f"{TUNE[t]}/heldout")["spec"].seeds)
        for t in TUNE}
  assert mx["a+b"] == 0 and mx["a-b"] == 0
  return f"stayed 0, at most {100 * mx['a*b']:.1f}% on a*b"


def _beyond_all(D, ms):
  fs = noise_floor(D)[0]
  ok = all(abs(tpair(D, t, m)["steps"]["mean"]) > fs for t in TUNE for m in ms)
  return ("every one of these differences is beyond the noise floor "
          f"({fs:.0f} steps)" if ok else "NOT all beyond")


many("tune", list(TUNE.values()), {
    "cells": _cells,
    "muon": lambda D: "Muon {} (a+b), {} (a*b) and {} (a-b)".format(
        *_tpairs(D, "muon")),
    "muon_auc": lambda D: "AUC {}, {} and {}".format(
        *_tpairs(D, "muon", "auc", ".3f")),
    "ng": lambda D: "NeuralGrok {}, {} and {}".format(*_tpairs(D, "neuralgrok")),
    "rescale": lambda D: "rescaling {}, {} and {}".format(
        *_tpairs(D, "rescale")),
    "beyond": lambda D: _beyond_all(D, ("muon", "neuralgrok", "rescale")),
    "muon_steps": lambda D: "tasks ({:.0f}, {:.0f}, {:.0f} steps), {}, {} and "
    "{} fewer".format(
        *[theld(D, t, "muon")["t95"]["median"] for t in TUNE],
        *[f"{1 / tpair(D, t, 'muon')['speedup']['geomean']:.2f}x"
          for t in TUNE]),
    "muon_fourier": _muon_fourier,
    "adamw": lambda D: "{}/5 on every task ({:.0f}, {:.0f}, {:.0f} steps)".format(
        min(_reached(D, "adamw")),
        *[theld(D, t, "adamw")["t95"]["median"] for t in TUNE]),
    "ng_adam": lambda D: "(Adam reached 95% in {}/5, {}/5 and {}/5 seeds), but "
    "{}, {} and {}".format(*_reached(D, "adam"), *[
        f"{1 / tpair(D, t, 'neuralgrok')['speedup']['geomean']:.2f}x"
        for t in TUNE]),
    "ng_medians": lambda D: "(medians {} vs {} on a+b, {} vs {} on a*b, {} vs "
    "{} on a-b".format(*[f"{theld(D, t, m)['t95']['median']:.0f}" for t in TUNE
                         for m in ("neuralgrok", "rescale")]),
    "grokfast": lambda D: "reached 95% in only {}-{} of 5 held-out seeds of "
    "a+b and a*b, none of a-b, within 2000 steps, slower than AdamW".format(
        min(_reached(D, m)[i] for m in ("grokfast-ema", "grokfast-ma")
            for i in (0, 1)),
        max(_reached(D, m)[i] for m in ("grokfast-ema", "grokfast-ma")
            for i in (0, 1)))
    if max(_reached(D, m)[2] for m in ("grokfast-ema", "grokfast-ma")) == 0
    and all(tpair(D, t, m)["speedup"]["geomean"] > 1 for t in ("a+b", "a*b")
            for m in ("grokfast-ema", "grokfast-ma")) else "not",
    "ortho": lambda D: "{}/5, {}/5 and {}/5 held-out seeds reached".format(
        *_reached(D, "orthograd")),
    "softmax": _softmax,
    "adam": lambda D: "reached 95% in {}, {} and {} of 5 seeds".format(
        *_reached(D, "adam")),
    "concentrate": _concentrate,
})

TABLES.append(Table("tune.fair", tuple(TUNE.values()), lambda D: fair_table(
    [D.path(r) for r in TUNE.values()])))


# ------------------------------------------- does the learned part matter
LP = "learned_part"
LP_OPTS = {"a+b": ["meta-lr-1e-3", "meta-lr-1e-2", "meta-lr-1e-2-cosine",
                   "meta-lr-1e-3-wd0", "meta-lr-1e-2-wd0", "rich",
                   "lookahead-3"],
           "axb": ["meta-lr-1e-3", "meta-lr-1e-2", "meta-lr-1e-2-cosine",
                   "rich", "lookahead-3"]}


def _lp_tables():
  from experiments import learned_part as lp
  out = []
  for t, opts in LP_OPTS.items():
    out.append(Table(f"lp.{t}.paired", (f"{LP}/{t}",), lambda D, t=t, o=opts:
                     stats.paired_markdown(D.path(f"{LP}/{t}"), "rescale",
                                           others=[D.path(f"{LP}/{t}-{x}")
                                                   for x in o])))
    out.append(Table(f"lp.{t}.moved", (f"{LP}/{t}",), lambda D, t=t, o=opts:
                     lp.movement_table(D.path(f"{LP}/{t}"), o,
                                       D.path(LP), t.replace("x", "*"))))
  return out



def _lp_pair(D, t, opt=None):
  base = D.run(f"{LP}/{t}")
  other = D.run(f"{LP}/{t}-{opt}") if opt else base
  return stats.paired_table(base["rows"], "rescale", "neuralgrok",
                            list(base["spec"].seeds), base["spec"].steps,
                            rows_b=other["rows"])


def lp_all_pairs(D):
  return [(t, o, _lp_pair(D, t, o)) for t, opts in LP_OPTS.items()
          for o in [None] + opts]


def _lp_dead(D):
  v = [(final_value(D, f"{LP}/{t}-{o}", "amp/dist_const"),
        final_value(D, f"{LP}/{t}-{o}", "amp/param_change"))
       for t in LP_OPTS for o in ("meta-lr-1e-3", "meta-lr-1e-2",
                                  "meta-lr-1e-2-cosine", "rich",
                                  "lookahead-3")]
  dc, pc = [x for x, _ in v], [y for _, y in v]
  assert max(dc) < 1e-7, dc
  return (f"(dist_const {min(dc):.1e} to {max(dc):.1e}, float32 rounding; "
          f"param_change {min(pc):.1f}-{max(pc):.1f})")


def _lp_verdict(D):
  fs = noise_floor(D)[0]
  bad = []
  for t, o, p in lp_all_pairs(D):
    for k in ("steps", "auc"):
      d = p[k]
      if d["lo"] is not None and (d["lo"] > 0 or d["hi"] < 0):
        bad.append((t, o, k))
  assert bad == [("a+b", "meta-lr-1e-2-cosine", "steps")], bad
  d = _lp_pair(D, "a+b", "meta-lr-1e-2-cosine")["steps"]
  within = all(abs(p["steps"]["mean"]) <= fs for _, _, p in lp_all_pairs(D))
  assert within
  return (f"than rescaling by {-d['mean']:.0f} [{-d['hi']:.0f}, "
          f"{-d['lo']:.0f}] steps")


def _lp_lost(D):
  p = _lp_pair(D, "a+b", "meta-lr-1e-2-wd0")
  assert p["a_only"] == 1 and p["b_only"] == 0 and p["neither"] == 0
  return "lost one seed of five on a+b (never reached 95%)"


def _lp_floor(D):
  fs = noise_floor(D)[0]
  m = max(abs(p["steps"]["mean"]) for _, _, p in lp_all_pairs(D))
  return (f"every mean difference of steps to 95% here (at most {m:.0f} "
          f"steps) is within the noise floor ({fs:.0f} steps)")


def _lp_cost(D):
  r = lambda a, b: sps(D, a) / b  # noqa: E731
  ng = {t: sps(D, f"{LP}/{t}") for t in LP_OPTS}
  rs = {t: sps(D, f"{LP}/{t}", "rescale") for t in LP_OPTS}
  return ("NeuralGrok's step is {:.1f}x (a+b) to {:.1f}x (a*b) rescaling's, "
          "the rich inputs {:.2f}x (a+b) and {:.2f}x (a*b) the recipe's, the "
          "3-step look-ahead {:.1f}x and {:.1f}x").format(
              ng["a+b"] / rs["a+b"], ng["axb"] / rs["axb"],
              r(f"{LP}/a+b-rich", ng["a+b"]), r(f"{LP}/axb-rich", ng["axb"]),
              r(f"{LP}/a+b-lookahead-3", ng["a+b"]),
              r(f"{LP}/axb-lookahead-3", ng["axb"]))


many("lp", [LP], {
    "recipe": lambda D: "ends {:.1f}% (a+b) and {:.2f}% (a*b) away".format(
        100 * final_value(D, f"{LP}/a+b", "amp/dist_const"),
        100 * final_value(D, f"{LP}/axb", "amp/dist_const")),
    "dead": _lp_dead,
    "wd0_moved": lambda D: "(param_change {:.2f} and {:.2f})".format(
        *[final_value(D, f"{LP}/a+b-{o}", "amp/param_change")
          for o in ("meta-lr-1e-3-wd0", "meta-lr-1e-2-wd0")]),
    "wd0_close": lambda D: "within {:.1f}-{:.1f}% of rescaling's".format(
        *[100 * final_value(D, f"{LP}/a+b-{o}", "amp/dist_const")
          for o in ("meta-lr-1e-3-wd0", "meta-lr-1e-2-wd0")]),
    "verdict": _lp_verdict, "lost": _lp_lost, "floor": _lp_floor,
    "cost": _lp_cost,
})
TABLES += _lp_tables()
