"""Claims and tables of the CPU-size study (its archive page,
``docs/archive/cpu-study-2026-11-22.md``, moved out of RESULTS.md)."""
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


# ------------------------------------- CPU-size study: main comparison
CPU = "cpu/compare"
CTASKS = ("a+b", "a-b", "a*b", "a*a-b", "a*c+b*d-e")
CMETHODS = ("neuralgrok", "adam", "adamw", "grokfast-ema", "grokfast-ma",
            "rescale")


def _cpu_main(D):
  from ngrok_jax.report import rows_of
  from ngrok_jax.tables import md_table as mdt
  header = ["run", "method", "95% median", "95% IQR", "95% success",
            "99% median", "99% IQR", "99% success", "diverged", "wall s"]
  rows = []
  for t in CTASKS:
    for d in (t, f"{t}-wd1e-3"):
      for c in rows_of(d, D.run(f"{CPU}/{d}")["summary"]):
        rows.append(c[:9] + [c[10]])
  return mdt(header, rows)


def _cpu_final(D):
  head = ["task"] + list(CMETHODS) + ["adam wd1e-3", "rescale wd1e-3"]
  rows = []
  for t in CTASKS:
    cells = [t]
    for d, m in [(t, m) for m in CMETHODS] + [(f"{t}-wd1e-3", "adam"),
                                             (f"{t}-wd1e-3", "rescale")]:
      te = final_value(D, f"{CPU}/{d}", "test/acc", m)
      tr = final_value(D, f"{CPU}/{d}", "train/acc", m)
      cells.append(f"{te:.2f} ({tr:.2f})")
    rows.append(cells)
  return md_table(head, rows)


def cpu_steps(D, t, m, wd=False):
  d = f"{CPU}/{t}-wd1e-3" if wd else f"{CPU}/{t}"
  return D.run(d)["summary"]["methods"][m]["steps_to_95"]


def seed_diffs(a, b):
  return [None if x is None or y is None else x - y for x, y in zip(a, b)]


def signed_text(v):
  return "/".join("never" if x is None else (f"{x:+d}" if x else "0")
                  for x in v)


VERDICT = {"a+b": "no: per seed {} (NeuralGrok minus rescale)",
           "a-b": "not measurably (1 seed vs 0 within 2000 steps)",
           "a*b": "no: {}", "a*a-b": "at best slightly (1 seed vs 0)",
           "a*c+b*d-e": "cannot tell (every method underfit)"}


def _cpu_seed_table(D):
  rows = []
  for t in CTASKS:
    ng, rs = cpu_steps(D, t, "neuralgrok"), cpu_steps(D, t, "rescale", 1)
    ad = cpu_steps(D, t, "adam", 1)
    v = VERDICT[t]
    if "{}" in v:
      v = v.format(signed_text(seed_diffs(ng, rs)))
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


def cpair(D, t, m, wd=False):
  base = D.run(f"{CPU}/{t}")
  other = D.run(f"{CPU}/{t}-wd1e-3") if wd else base
  return stats.paired_table(base["rows"], "neuralgrok", m,
                            list(base["spec"].seeds), base["spec"].steps,
                            rows_b=other["rows"])


def sweep_diffs(D, groups):
  r = D.run("cpu/sweep_c")
  out = []
  for g in groups:
    seeds = r["summary"]["methods"]["neuralgrok"]["groups"][g]["seeds"]
    out += seed_diffs(*[r["summary"]["methods"][m]["groups"][g]["steps_to_95"]
                   for m in ("neuralgrok", "rescale")])
  return [x for x in out if x is not None]


def _mlp_range(D):
  d = [x for t in ("a+b", "a*b") for x in seed_diffs(
      cpu_steps(D, t, "neuralgrok"), cpu_steps(D, t, "rescale", True))
       if x is not None]
  d += sweep_diffs(D, ("c=1,wd=0.001", "c=10,wd=0.001"))
  return f"95% by {min(d):+d} to {max(d):+d} steps with no consistent sign"


def poly_best(D):
  best = []
  for d in ("a*c+b*d-e", "a*c+b*d-e-wd1e-3"):
    for m in D.run(f"{CPU}/{d}")["spec"].methods:
      for s in range(5):
        st, v = D.curve(f"{CPU}/{d}", m, s)
        i = int(np.nanargmax(v))
        best.append((float(v[i]), m, s, int(st[i]), d))
  best.sort(reverse=True)
  return best


def poly_train(D):
  mx, fin = [], []
  for d in ("a*c+b*d-e", "a*c+b*d-e-wd1e-3"):
    for m in D.run(f"{CPU}/{d}")["spec"].methods:
      for s in range(5):
        st, v = D.curve(f"{CPU}/{d}", m, s, "train/acc")
        mx.append((float(np.nanmax(v)), m, s))
      fin.append((final_value(D, f"{CPU}/{d}", "train/acc", m), m))
  return max(mx), max(fin)


def _poly_claim(D):
  (tmax, tm, ts), (fmax, fm) = poly_train(D)
  b = poly_best(D)
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
  v = [cpair(D, t, m, wd)["auc"] for t in CTASKS]
  return v


many("cpu", [CPU, "cpu/sweep_c"], {
    "mlp": _mlp_range,
    "poly_short": lambda D: "(best single seeds {:.2f} and {:.2f} test "
    "accuracy".format(*[b[0] for b in poly_best(D)[:2]]),
    "per_task": lambda D: "(difference {}..{:+d} per seed; 10 more paired "
    "seeds in the c sweep below: {:+d}..{:+d})".format(
        *(lambda d: (min(d), max(d)))([x for x in seed_diffs(
            cpu_steps(D, "a+b", "neuralgrok"),
            cpu_steps(D, "a+b", "rescale", True)) if x is not None]),
        *(lambda d: (min(d), max(d)))(sweep_diffs(
            D, ("c=1,wd=0.001", "c=10,wd=0.001")))),
    "axb": lambda D: "a*b no ({:+d}..{:+d})".format(
        *(lambda d: (min(d), max(d)))([x for x in seed_diffs(
            cpu_steps(D, "a*b", "neuralgrok"),
            cpu_steps(D, "a*b", "rescale", True)) if x is not None])),
    "sq_final": lambda D: "median final test accuracy {:.2f} vs {:.2f}".format(
        final_value(D, f"{CPU}/a*a-b", "test/acc"),
        final_value(D, f"{CPU}/a*a-b-wd1e-3", "test/acc", "rescale")),
    "poly": _poly_claim,
    "adam_wd": lambda D: "(a+b {:.0f}, a*b {:.0f} vs {:.0f} and {:.0f})".format(
        *[D.run(f"{CPU}/{t}-wd1e-3")["summary"]["methods"]["adam"]["t95"][
            "median"] for t in ("a+b", "a*b")],
        *[D.run(f"{CPU}/{t}")["summary"]["methods"]["neuralgrok"]["t95"][
            "median"] for t in ("a+b", "a*b")]),
    "rescale": lambda D: "steps {} (a+b) and {} (a*b); AUC differences {} to "
    "{} on the five tasks, every interval containing 0 (all within {}..{})"
    .format(ci(cpair(D, "a+b", "rescale", True)["steps"]),
            ci(cpair(D, "a*b", "rescale", True)["steps"]),
            *(lambda v: (f"{min(x['mean'] for x in v):+.3f}",
                         f"{max(x['mean'] for x in v):+.3f}",
                         f"{min(x['lo'] for x in v):.3f}",
                         f"{max(x['hi'] for x in v):+.3f}"))(
                _auc_range(D, "rescale", True))),
    "adam_wd_pair": lambda D: "{} steps on a+b and {} on a*b (Adam needs "
    "{:.2f}x and {:.2f}x of NeuralGrok's steps), AUC {:.3f} on both".format(
        ci(cpair(D, "a+b", "adam", True)["steps"]),
        ci(cpair(D, "a*b", "adam", True)["steps"]),
        cpair(D, "a+b", "adam", True)["speedup"]["geomean"],
        cpair(D, "a*b", "adam", True)["speedup"]["geomean"],
        cpair(D, "a+b", "adam", True)["auc"]["mean"])
    if round(cpair(D, "a+b", "adam", True)["auc"]["mean"], 3) == round(
        cpair(D, "a*b", "adam", True)["auc"]["mean"], 3) else "differ",
    "plain": lambda D: "higher on a+b ({}) and a*b ({}); on a-b and a*a-b the "
    "intervals just reach 0 ({}, {})".format(
        ci(cpair(D, "a+b", "adam")["auc"], ".2f"),
        ci(cpair(D, "a*b", "adam")["auc"], ".2f"),
        ci(cpair(D, "a-b", "adam")["auc"], ".3f"),
        ci(cpair(D, "a*a-b", "adam")["auc"], ".3f")),
    "adamw": lambda D: (lambda v: "(AUC {:.2f} to {:.2f}, all intervals below "
                        "0)".format(max(x["mean"] for x in v),
                                    min(x["mean"] for x in v))
                        if all(x["hi"] < 0 for x in v) else "not")(
        [cpair(D, t, "adamw")["auc"] for t in ("a+b", "a-b", "a*b", "a*a-b")]),
    "poly_auc": lambda D: "higher than rescaling's ({}) and Adam wd 1e-3's "
    "({})".format(ci(cpair(D, "a*c+b*d-e", "rescale")["auc"]),
                  ci(cpair(D, "a*c+b*d-e", "adam", True)["auc"], ".3f"))
    .replace(ci(cpair(D, "a*c+b*d-e", "rescale")["auc"]),
             ci(cpair(D, "a*c+b*d-e", "rescale")["auc"], ".3f")),
})


def _reach(D, t):
  ng = sum(x is not None for x in cpu_steps(D, t, "neuralgrok"))
  rs = sum(x is not None for x in cpu_steps(D, t, "rescale", True))
  return f"{ng}/5 vs {rs}/5"


many("cpu", [CPU], {
    "ab_reach": lambda D: f"a-b not measurably ({_reach(D, 'a-b')} within "
    "budget)",
    "sq_reach": lambda D: f"a*a-b slightly, at best ({_reach(D, 'a*a-b')};",
    "points": lambda D: "i.e. {:.0f}-{:.0f} points of test accuracy".format(
        100 * cpair(D, "a*c+b*d-e", "adam", True)["auc"]["mean"],
        100 * cpair(D, "a*c+b*d-e", "rescale")["auc"]["mean"]),
})


def _cpu_nf(D):
  fs = noise_floor(D)[0]
  beyond, within = [], []
  for t in CTASKS:
    for m, wd in [(m, False) for m in CMETHODS[1:]] + [("adam", True),
                                                       ("rescale", True)]:
      d = cpair(D, t, m, wd)["steps"]
      if d["mean"] is None:
        continue
      name = (f"{t} {m}{' wd 1e-3' if wd else ''} ({d['mean']:+.0f}, "
              f"n {d['n_both']})")
      (beyond if abs(d["mean"]) > fs else within).append(name)
  return (f"differences of steps to 95% beyond the noise floor ({fs:.0f} "
          f"steps): {', '.join(beyond)}; within it: {', '.join(within)}")


many("cpu", [CPU, "noise_floor"], {"nf": _cpu_nf})
