"""Claims and tables of "The learned rule's verdict" (RESULTS.md): the
meta-training of the shipped rule and the rule against the tuned baselines
on held-out tasks."""
import functools
import json

import jax
import numpy as np

from experiments._claims.base import (CLAIMS, NON_DATA, RES, TABLES, Claim,
                                      Table, many, n)
from experiments.random_rules import distance, initial_rule, random_rules
from ngrok_jax import load_rule, stats
from ngrok_jax.tables import md_table

MT = "meta_train_rule"
#: the verdict's tuning folders per held-out task: (the baselines' folders,
#: the rule's folder)
VERDICT = {"a/b": (("rule_verdict/a_div_b/base", "rule_verdict/a_div_b/ng"),
                   "rule_verdict/a_div_b/rule"),
           "a*a-b": (("rule_verdict/a_sq_sub_b/base",
                      "rule_verdict/a_sq_sub_b/ng"),
                     "rule_verdict/a_sq_sub_b/rule")}
#: the tuned methods the rule is paired with in the verdict's prose
PAIRED = ("adamw", "muon", "rescale", "neuralgrok")
RULE = "learned-rule"
NAMES = {RULE: "learned rule", "adamw": "AdamW", "muon": "Muon",
         "rescale": "rescaling", "neuralgrok": "NeuralGrok"}


@functools.lru_cache(maxsize=None)
def _rows(path):
  with open(path) as f:
    return tuple(json.loads(line) for line in f if line.strip())


def _steps(D, mt=MT):
  return [r for r in _rows(D.path(f"{mt}/metrics.jsonl")) if "meta_loss" in r]


def _probe(D, mt=MT):
  return [r for r in _rows(D.path(f"{mt}/metrics.jsonl"))
          if "dist_adam" in r][-1]


def _moved(D, mt=MT):
  """(norm of the rule's change over meta-training, norm at its start)."""
  start, final, _ = initial_rule(D.path(mt))
  zero = jax.tree.map(np.zeros_like, start)
  return distance(final, start), distance(start, zero)


def _meta(D, mt=MT):
  st = _steps(D, mt)
  primes = D.json(f"{mt}/meta_config.json")["primes"].split(",")
  later = st[len(primes):]
  return dict(n=len(st), k=len(primes),
              wall=np.median([r["seconds"] for r in later]),
              cpu=np.median([r["cpu_seconds"] for r in later]),
              comp=[r["seconds"] for r in st[:len(primes)]],
              total=sum(r["seconds"] for r in st),
              trunc=D.json(f"{mt}/meta_config.json")["truncation"],
              snr=np.median([r["grad_norm"] ** 2 / r["grad_var"]
                             for r in st if r["grad_var"]]))


def _meta_items(mt):
  """The claims of one meta-training folder ``mt``."""
  return {
      "cost": lambda D: "{n} outer steps in {t:.0f} min: {w:.1f} s wall "
      "({c:.1f} CPU-s) per outer step (median), after the first {k}, which "
      "compiled one program per prime ({a})".format(
          n=_meta(D, mt)["n"], t=_meta(D, mt)["total"] / 60,
          w=_meta(D, mt)["wall"], c=_meta(D, mt)["cpu"], k=_meta(D, mt)["k"],
          a=" and ".join(f"{x:.0f} s" for x in _meta(D, mt)["comp"])),
      "steps": lambda D: "{} inner steps per particle".format(
          n(_meta(D, mt)["n"] // _meta(D, mt)["k"] * _meta(D, mt)["trunc"])),
      "snr": lambda D: f"median {_meta(D, mt)['snr']:.2f}",
      "moved": lambda D: "moved by {:.2f} in norm ({:.0f}% of its initial "
      "norm)".format(_moved(D, mt)[0], 100 * _moved(D, mt)[0] /
                     _moved(D, mt)[1]),
      "probe": lambda D: "test accuracy {:.3f} after {} steps, distance "
      "from Adam {:.3f}".format(
          _probe(D, mt)["probe_test_acc"],
          D.json(f"{mt}/meta_config.json")["probe_steps"],
          _probe(D, mt)["dist_adam"]),
  }


def _probes(D, mt):
  """The range of every probe of the unperturbed rule over meta-training."""
  ps = [r for r in _rows(D.path(f"{mt}/metrics.jsonl")) if "dist_adam" in r]
  acc = [r["probe_test_acc"] for r in ps]
  dist = [r["dist_adam"] for r in ps]
  return ("{} probes, one every {} outer steps: test accuracy between {:.3f} "
          "and {:.3f}, distance from Adam between {:.3f} and {:.3f}".format(
              len(ps), D.json(f"{mt}/meta_config.json")["probe_every"],
              min(acc), max(acc), min(dist), max(dist)))


#: the shipped rule's meta-training, and the same command run longer
MT_LONG = "meta_train_rule_long"
many("rule.meta", [MT], _meta_items(MT))
many("rule.meta_long", [MT_LONG],
     dict(_meta_items(MT_LONG), probes=lambda D: _probes(D, MT_LONG)))


def _repro(D):
  """The longer run repeats the shipped run's outer steps: every logged
  value but the clock, compared exactly over the shipped run's rows."""
  a, b = _rows(D.path(f"{MT}/metrics.jsonl")), _rows(
      D.path(f"{MT_LONG}/metrics.jsonl"))
  clock = ("seconds", "cpu_seconds")
  same = len(b) >= len(a) and all(
      {k: v for k, v in x.items() if k not in clock} ==
      {k: v for k, v in y.items() if k not in clock} for x, y in zip(a, b))
  return ("its first {} outer steps {}: {}".format(
      len(_steps(D, MT)), "repeated the shipped run's exactly" if same
      else "differed from the shipped run's",
      "every meta loss, gradient norm, variance and probe, bit for bit"
      if same else "see the metrics"))


CLAIMS.append(Claim("rule.meta_long.repro", (MT, MT_LONG), _repro))


# ------------------------------------------------- the verdict tables
def _chosen(D, rel, m):
  r = D.json(f"{rel}/tune.json")["methods"][m]
  cell = r["ranked"][0]["cell"]
  grid = "; ".join(f"{k} {'/'.join(f'{v:g}' for v in vals)}"
                   for k, vals in r["grid"].items())
  return grid, ", ".join(f"{k} {v:g}" for k, v in cell.items()) + (
      " (edge)" if r.get("on_edge") else "")


def ci_text(d, fmt=".0f"):
  if d["mean"] is None:
    return "- (n 0)"
  if d["lo"] is None:
    return f"{d['mean']:+{fmt}} (n {d['n_both']})"
  return (f"{d['mean']:+{fmt}} [{d['lo']:{fmt}}, {d['hi']:{fmt}}] "
          f"(n {d['n_both']})")


def base_of(D, task, m):
  for rel in VERDICT[task][0]:
    if m in D.json(f"{rel}/tune.json")["methods"]:
      return rel
  raise ValueError(f"no tuning folder of {m} for {task}")


def pair(D, task, m, rule=None, base=None):
  """The paired table of the rule (its tuning folder ``rule``, default the
  shipped rule's) against method ``m`` (in the folder ``base``, default the
  baselines'; held-out seeds); differences rule minus method."""
  rule = rule or VERDICT[task][1]
  r = D.run(f"{rule}/heldout")
  b = D.run(f"{base or base_of(D, task, m)}/heldout")
  seeds = list(r["spec"].seeds)
  if list(b["spec"].seeds) != seeds:
    raise ValueError("the rule and the baselines ran other seeds")
  return stats.paired_table(r["rows"], RULE, m, seeds, r["spec"].steps,
                            rows_b=b["rows"])


def _reached(D, rel, m, heldout=True):
  steps = D.per(f"{rel}/heldout" if heldout else rel, m)["steps_to_95"]
  ok = [s for s in steps if s is not None]
  return (f"{np.median(ok):g}" if ok else "never") + f" ({len(ok)}/" \
      f"{len(steps)})"


def verdict_table(D, task):
  bases, rule = VERDICT[task]
  rows = [[NAMES[RULE], *_chosen(D, rule, RULE), _reached(D, rule, RULE),
           "-", "-", "-"]]
  for m in [m for b in bases for m in D.json(f"{b}/tune.json")["methods"]]:
    base = base_of(D, task, m)
    t = pair(D, task, m)
    rows.append([NAMES.get(m, m), *_chosen(D, base, m),
                 _reached(D, base, m), ci_text(t["steps"]),
                 ci_text(t["auc"], ".3f"),
                 f"{t['a_only']} / {t['b_only']} / {t['neither']}"])
  return md_table(["method", "grid (widened)", "chosen cell",
                   "95% median (reached)", "steps to 95%: rule - method",
                   "AUC: rule - method", "reached 95%: rule only / "
                   "method only / neither"], rows)


for _task, (_b, _r) in VERDICT.items():
  TABLES.append(Table(f"rule.verdict.{_task}", (*_b, _r),
                      lambda D, t=_task: verdict_table(D, t)))


def _auc_text(D, task, m):
  return f"{NAMES[m]} {ci_text(pair(D, task, m)['auc'], '.3f')}"


for _task, (_b, _r) in VERDICT.items():
  for _m in PAIRED:
    CLAIMS.append(Claim(f"rule.auc.{_task}.{_m}", (*_b, _r),
                        lambda D, t=_task, m=_m: _auc_text(D, t, m)))


NON_DATA["RESULTS.md"] += [
    "under two runs of 1000 steps", "2 fresh runs of a+b mod 43",
    "shared with three other jobs", "chance 1/43 = 0.023",
    # the longer meta-training's configuration (meta_config.json)
    "with 2 probe runs each"]


def _steps_text(D, task, m):
  return f"{NAMES[m]} {ci_text(pair(D, task, m)['steps'])}"


def _wd0_text(D, task):
  ranked = D.json(f"{VERDICT[task][1]}/tune.json")["methods"][RULE]["ranked"]
  cells = [r for r in ranked if r["cell"]["wd"] == 0]
  return (f"without weight decay (wd 0) it reached 95% on "
          f"{sum(r['success'] for r in cells)} of its {len(cells)} tuning "
          f"seeds")


for _task, (_b, _r) in VERDICT.items():
  CLAIMS.append(Claim(f"rule.wd0.{_task}", (_r,),
                      lambda D, t=_task: _wd0_text(D, t)))
  for _m in PAIRED:
    CLAIMS.append(Claim(f"rule.steps.{_task}.{_m}", (*_b, _r),
                        lambda D, t=_task, m=_m: _steps_text(D, t, m)))


# ------------------ the longer-meta-trained rule on both held-out tasks
#: its tuning folders (experiments.tune --rule experiments/results/MT_LONG)
LONG = {"a/b": "rule_verdict/a_div_b/rule_long",
        "a*a-b": "rule_verdict/a_sq_sub_b/rule_long"}


def long_table(D, task):
  """The longer-meta-trained rule against the shipped rule and the tuned
  baselines (held-out seeds; differences long rule minus method)."""
  bases, shipped = VERDICT[task]
  if D.json(f"{LONG[task]}/tune.json").get("rule") != f"{RES}/{MT_LONG}":
    raise ValueError(f"{LONG[task]} did not tune the rule of {MT_LONG}")
  rows = [["learned rule, longer meta-training",
           *_chosen(D, LONG[task], RULE), _reached(D, LONG[task], RULE),
           "-", "-", "-"]]
  ms = [(RULE, shipped)] + [(m, base_of(D, task, m)) for b in bases
                            for m in D.json(f"{b}/tune.json")["methods"]]
  for m, rel in ms:
    t = pair(D, task, m, LONG[task], rel)
    rows.append([("shipped " if m == RULE else "") + NAMES.get(m, m),
                 *_chosen(D, rel, m), _reached(D, rel, m), ci_text(t["steps"]),
                 ci_text(t["auc"], ".3f"),
                 f"{t['a_only']} / {t['b_only']} / {t['neither']}"])
  return md_table(["method", "grid (widened)", "chosen cell",
                   "95% median (reached)", "steps to 95%: long rule - "
                   "method", "AUC: long rule - method", "reached 95%: long "
                   "rule only / method only / neither"], rows)


def _long_ci(D, task, m, key):
  rel = VERDICT[task][1] if m == RULE else None
  name = "the shipped rule" if m == RULE else NAMES[m]
  fmt = ".3f" if key == "auc" else ".0f"
  return f"{name} {ci_text(pair(D, task, m, LONG[task], rel)[key], fmt)}"


for _task, _rel in LONG.items():
  _src = (*VERDICT[_task][0], VERDICT[_task][1], _rel)
  TABLES.append(Table(f"rule.long.{_task}", (*_src, MT_LONG),
                      lambda D, t=_task: long_table(D, t)))
  for _m in (RULE,) + PAIRED:
    for _k in ("steps", "auc"):
      CLAIMS.append(Claim(f"rule.long.{_task}.{_k}.{_m}", _src,
                          lambda D, t=_task, m=_m, k=_k: _long_ci(D, t, m,
                                                                  k)))


# ------------- control: the longer rule's start moved as far, at random
CONTROL = "rule_control"


def _controls(D):
  """The control rules' names; each exported rule is checked to be the one
  experiments/random_rules.py draws from the meta-training folder (to
  float32 rounding)."""
  info = D.json(f"{CONTROL}/rules/random_rules.json")
  if info["run"] != f"{RES}/{MT_LONG}":
    raise ValueError(f"the control rules were not drawn from {MT_LONG}")
  rules, d = random_rules(D.path(MT_LONG), info["count"], info["seed"])
  names = []
  for i, (theta, _) in enumerate(rules):
    got, _ = load_rule(D.path(f"{CONTROL}/rules/rand{i}"))
    # float32 rounding: XLA's flags (the tests') may round the draw apart
    if distance(got, theta) > 1e-6 * d:
      raise ValueError(f"{CONTROL}/rules/rand{i} is not random_rules' draw")
    names.append(f"rand{i}")
  return names, d


def control_table(D):
  """The longer rule (held-out a/b, its chosen cell) against each control
  rule at that cell (same seeds); differences long rule minus control."""
  names, _ = _controls(D)
  long_run = D.run(f"{LONG['a/b']}/heldout")
  seeds = list(long_run["spec"].seeds)
  cell = {k: D.json(f"{LONG['a/b']}/tune.json")["methods"][RULE]["chosen"][k]
          for k in ("lr", "wd")}
  rows = []
  for nm in names:
    r = D.run(f"{CONTROL}/heldout/{nm}")
    c = r["spec"].configs[RULE]
    if list(r["spec"].seeds) != seeds or {"lr": c.lr, "wd": c.wd} != cell:
      raise ValueError(f"control {nm} ran other seeds or another cell")
    t = stats.paired_table(long_run["rows"], RULE, RULE, seeds,
                           long_run["spec"].steps, rows_b=r["rows"])
    rows.append([f"random rule {nm}", _reached(D, f"{CONTROL}/heldout/{nm}",
                                               RULE, heldout=False),
                 ci_text(t["steps"]), ci_text(t["auc"], ".3f"),
                 f"{t['a_only']} / {t['b_only']} / {t['neither']}"])
  return md_table(["control (lr 0.003, wd 1)", "95% median (reached)",
                   "steps to 95%: long rule - control",
                   "AUC: long rule - control",
                   "reached 95%: long rule only / control only / neither"],
                  rows)


TABLES.append(Table("rule.control", (MT_LONG, LONG["a/b"], CONTROL),
                    control_table))
CLAIMS.append(Claim("rule.control.distance", (MT_LONG, CONTROL),
                    lambda D: f"distance {_controls(D)[1]:.2f}"))
