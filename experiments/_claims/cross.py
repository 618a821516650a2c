"""Claims and tables of the cross-task sections (RESULTS.md) and the
README's summary of them."""
import math
import os

import numpy as np

from experiments._claims.base import *  # noqa: F401,F403 (the registry)
from experiments._claims.base import (  # noqa: F401
    final_value, nf_pairs, nf_seeds, nf_table, sps)
from ngrok_jax import stats
from ngrok_jax.tables import md_table
from experiments._claims.studies import LP, TUNE, tpair


# ----------------------------------- an amplifier meta-trained across tasks
CT = "cross_task"
CT_V = ("recipe", "meta-lr-1e-2-wd0")


def _ct_table(D, base):
  name = os.path.basename(base)
  return stats.paired_markdown(
      D.path(base), "rescale",
      others=[D.path(f"{base}-cross-{v}") for v in CT_V] +
      [D.path(f"{base}-init")])


def _ct_moved(D):
  from experiments import cross_task as ct
  return ct.movement_table(D.path(CT), list(CT_V), ["a+b", "a-b", "a*b"])


TABLES += [Table("ct.adivb", (f"{CT}/adivb",),
                 lambda D: _ct_table(D, f"{CT}/adivb")),
           Table("ct.axa-b", (f"{CT}/axa-b",),
                 lambda D: _ct_table(D, f"{CT}/axa-b")),
           Table("ct.axa-b.4000", (f"{CT}/4000-steps/axa-b",),
                 lambda D: _ct_table(D, f"{CT}/4000-steps/axa-b")),
           Table("ct.moved", (CT,), _ct_moved)]


def _ctp(D, base, other, m="neuralgrok-frozen"):
  """rescale of ``base`` minus ``m`` of ``other`` (paired seeds)."""
  b, o = D.run(base), D.run(other)
  return stats.paired_table(b["rows"], "rescale", m, list(b["spec"].seeds),
                            b["spec"].steps, rows_b=o["rows"])


def _ct_training(D):
  out = []
  for t, lp in (("a+b", "a+b"), ("axb", "axb")):
    for v in CT_V:
      out.append(ci(_ctp(D, f"{LP}/{lp}", f"{CT}/cross-{v}/{t}",
                         "neuralgrok")["steps"]))
  return ("minus cross-task were {} (recipe) and {} (meta lr 1e-2) on a+b, "
          "and {} and {} on a*b").format(*out)


def _ct_censor(D):
  c = [_ctp(D, f"{CT}/axa-b", f"{CT}/axa-b{x}", m)
       for x, m in (("", "neuralgrok"), ("-cross-recipe", "neuralgrok-frozen"),
                    ("-cross-meta-lr-1e-2-wd0", "neuralgrok-frozen"),
                    ("-init", "neuralgrok-frozen"))]
  miss = [t["b_only"] + t["neither"] for t in c] + [
      c[0]["a_only"] + c[0]["neither"]]
  return f"the budget censors: {min(miss)} to {max(miss)} of 5 seeds of"


def _ct_verdict(D):
  moved = final_value(D, f"{CT}/cross-meta-lr-1e-2-wd0/a+b", "amp/param_change")
  single = final_value(D, f"{LP}/a+b-meta-lr-1e-2-wd0", "amp/param_change")
  dc = [final_value(D, f"{CT}/cross-{v}/{t}", "amp/dist_const") for v in CT_V
        for t in ("a+b", "a-b", "axb")]
  return ("param_change was {:.2f} with meta lr 1e-2 and no meta weight "
          "decay, against {:.2f} on a+b alone, and its score function now "
          "rises with g (scores.png). Its amplified gradient still stayed "
          "within {:.2f}-{:.2f}% of rescaling's").format(
              moved, single, 100 * min(dc), 100 * max(dc))


def _ct_frozen(D):
  ab = [_ctp(D, f"{CT}/adivb", f"{CT}/adivb-cross-{v}") for v in CT_V]
  assert ab[0]["steps"]["mean"] == ab[1]["steps"]["mean"]
  half = [(d["steps"]["hi"] - d["steps"]["lo"]) / 2 for d in ab]
  lg = [_ctp(D, f"{CT}/4000-steps/axa-b", f"{CT}/4000-steps/axa-b-cross-{v}")
        for v in CT_V]
  for t in ab + lg:
    assert t["steps"]["lo"] < 0 < t["steps"]["hi"]
  return ("on a/b ({:+.0f} steps for both, intervals about +-{:.0f} to "
          "+-{:.0f}) and on a*a-b with 4000 steps ({} and {})").format(
              ab[0]["steps"]["mean"], round(min(half), -1),
              round(max(half), -1), ci(lg[0]["steps"]), ci(lg[1]["steps"]))


def _ct_init(D):
  lg = _ctp(D, f"{CT}/4000-steps/axa-b", f"{CT}/4000-steps/axa-b-init")
  ab = _ctp(D, f"{CT}/adivb", f"{CT}/adivb-init")
  return ("{} on a*a-b, and on a/b {} on the {} seeds where both reached 95% "
          "({} seed of 5 did not reach it within 2000 steps)").format(
              ci(lg["steps"]), ci(ab["steps"]), ab["steps"]["n_both"],
              ab["a_only"] + ab["b_only"] + ab["neither"])


def _ct_cost(D):
  s = [sps(D, f"{CT}/cross-{v}/a+b") for v in CT_V]
  return f"costs {max(s):.2f} s per step for 3 tasks x 5 seeds"


def _ct_floor(D):
  fs = noise_floor(D)[0]
  ds = []
  for b in (f"{CT}/adivb", f"{CT}/axa-b", f"{CT}/4000-steps/axa-b"):
    for x in [f"-cross-{v}" for v in CT_V] + ["-init"]:
      ds.append(abs(_ctp(D, b, b + x)["steps"]["mean"]))
  assert max(ds) <= fs
  return (f"every frozen amplifier's mean difference from rescaling (at most "
          f"{max(ds):.0f} steps) is within the noise floor ({fs:.0f} steps)")


def ct_within(D):
  dc = [final_value(D, f"{CT}/cross-{v}/{t}", "amp/dist_const") for v in CT_V
        for t in ("a+b", "a-b", "axb")]
  return f"to within {math.ceil(1000 * max(dc)) / 10:.1f}% it is rescaling"


many("ct", [CT, LP], {"within": ct_within, "training": _ct_training, "censor": _ct_censor,
                      "verdict": _ct_verdict, "frozen": _ct_frozen,
                      "init": _ct_init, "cost": _ct_cost,
                      "floor": _ct_floor})


# --------------------------------------------- cross-task at paper size
def _pc_amp(D):
  pc = [final_value(D, f"{P}/cross/{t}", "amp/param_change")
        for t in ("a+b", "a-b", "axb")]
  dc = [D.curve(f"{P}/cross/{t}", "neuralgrok", s, "amp/dist_const")[1][-1]
        for t in ("a+b", "a-b", "axb") for s in (0, 1, 2)]
  assert max(pc) - min(pc) < 1e-6
  return ("It moved (param_change {:.2f}), but its amplified gradient ended "
          "within {:.3f}-{:.2f}% of rescaling's").format(
              pc[0], 100 * min(dc), 100 * max(dc))


def _pc_held(D):
  fr = D.run(f"{P}/sqsub-cross")["summary"]["methods"]["neuralgrok-frozen"]
  rs = D.per(f"{P}/sqsub", "rescale")
  p = _ctp(D, f"{P}/sqsub", f"{P}/sqsub-cross")
  q = stats.paired_table(D.run(f"{P}/sqsub")["rows"], "neuralgrok",
                         "neuralgrok-frozen", [0, 1, 2], 5000,
                         rows_b=D.run(f"{P}/sqsub-cross")["rows"])
  return ("reached 95% at {}, against rescaling's {}: {} steps (rescale "
          "minus frozen), AUC {}. Against NeuralGrok meta-trained on a*a-b "
          "itself it was {}").format(
              seeds_text(fr["steps_to_95"], "/"),
              seeds_text(rs["steps_to_95"], "/"), ci(p["steps"]),
              ci(p["auc"], ".3f"), ci(q["steps"]))


def _pc_cost(D):
  p = D.run(f"{P}/cross/a+b")["summary"]["methods"]["neuralgrok"]
  return "{:.2f} s per step for the one".format(
      p["wall_time_s"] / max(p["last_step"]))


many("pc", [f"{P}/cross", f"{P}/sqsub-cross", f"{P}/sqsub"], {
    "amp": _pc_amp, "held": _pc_held, "cost": _pc_cost})



many("readme", [f"{CT}", "tune"], {
    "muon": lambda D: "Muon was fastest ({:.2f}-{:.2f}x fewer steps than a "
    "tuned AdamW)".format(
        *(lambda v: (min(v), max(v)))(
            [1 / tpair(D, t, "muon")["speedup"]["geomean"] for t in TUNE])),
    "within": lambda D: ct_within(D).replace("to within", "stays within")
    .replace("% it is rescaling", "% of plain rescaling's"),
}, docs=())



def _pc_floor(D):
  fs = noise_floor(D)[0]
  p = _ctp(D, f"{P}/sqsub", f"{P}/sqsub-cross")
  q = stats.paired_table(D.run(f"{P}/sqsub")["rows"], "neuralgrok",
                         "neuralgrok-frozen", [0, 1, 2], 5000,
                         rows_b=D.run(f"{P}/sqsub-cross")["rows"])
  assert max(abs(p["steps"]["mean"]), abs(q["steps"]["mean"])) <= fs
  return f"Both are within the noise floor ({fs:.0f} steps)"


many("pc", [f"{P}/sqsub-cross", "noise_floor"], {"floor": _pc_floor})
