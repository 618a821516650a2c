"""The claims of RESULTS.md / README.md and the tables generated from data
(used by ``experiments/claims.py``; see its docstring).

A claim's function gets a :class:`Data` (cached readers of the exported run
folders) and returns the text exactly as the markdown states it.  Sources
are folders under ``experiments/results/``.
"""
import functools
import json
import math
import os
from typing import Callable, NamedTuple, Sequence, Tuple

import numpy as np

from experiments.tune import fair_table
from ngrok_jax import stats
from ngrok_jax.report import markdown_table
from ngrok_jax.results import load_run, read_metrics, seed_curve
from ngrok_jax.tables import md_table

RES = "experiments/results"
P = "paper"
NAMES = {"neuralgrok": "NeuralGrok", "rescale": "rescaling",
         "adam": "Adam wd 1e-3", "adamw": "AdamW",
         "grokfast-ema": "GrokFast-EMA", "grokfast-ma": "GrokFast-MA"}


class Claim(NamedTuple):
  id: str
  sources: Tuple[str, ...]
  compute: Callable
  docs: Tuple[str, ...] = ("RESULTS.md",)  # where it must appear; () only
  # backs numbers where present (README.md, which may be shortened)


class Table(NamedTuple):
  id: str
  sources: Tuple[str, ...]
  compute: Callable


class Data:
  """Cached readers of ``experiments/results`` below ``root``."""

  def __init__(self, root: str):
    self.root = root

  def path(self, rel: str) -> str:
    return os.path.join(self.root, RES, rel)

  @functools.lru_cache(maxsize=None)
  def run(self, rel: str):
    return load_run(self.path(rel))

  def per(self, rel, m):
    return self.run(rel)["summary"]["methods"][m]

  def curve(self, rel, m, s, key="test/acc"):
    return seed_curve(self.run(rel)["rows"], m, s, key)

  @functools.lru_cache(maxsize=None)
  def pair(self, rel, m, window=False, ref="neuralgrok"):
    r = self.run(rel)
    seeds, budget = list(r["spec"].seeds), r["spec"].steps
    if window:
      budget = stats.common_window(r["rows"], [ref, m], seeds, budget)
    return stats.paired_table(r["rows"], ref, m, seeds, budget)

  def window(self, rel, m, ref="neuralgrok"):
    r = self.run(rel)
    return stats.common_window(r["rows"], [ref, m], list(r["spec"].seeds),
                               r["spec"].steps)

  def collapses(self, rel, m, window=None):
    r = self.run(rel)
    return [stats.collapses(*self.curve(rel, m, s), window=window)
            for s in r["spec"].seeds]

  @functools.lru_cache(maxsize=None)
  def json(self, rel):
    with open(self.path(rel)) as f:
      return json.load(f)

  @functools.lru_cache(maxsize=None)
  def rows(self, rel):
    return read_metrics(self.path(rel))


# ------------------------------------------------------------- formatting
def n(x) -> str:
  """Steps with a thousands comma: 1,800 (as the prose writes them)."""
  return f"{int(x):,}"


def seeds_text(v, sep=" / ") -> str:
  return sep.join("never" if x is None else str(x) for x in v)


def ci(d, fmt=".0f") -> str:
  """``+67 [-77, 210]`` from a paired-differences dict."""
  return f"{d['mean']:+{fmt}} [{d['lo']:{fmt}}, {d['hi']:{fmt}}]"


def bracket(d, fmt=".0f") -> str:
  return f"[{d['lo']:{fmt}}, {d['hi']:{fmt}}]"


def speed(rel, m, D) -> str:
  return f"{D.pair(rel, m)['speedup']['geomean']:.2f}x"


def floor2(x) -> str:
  return f"{math.floor(x * 100) / 100:.2f}"


def ncoll(cs) -> Tuple[int, int]:
  """(collapses, seeds with one)."""
  return sum(c["count"] for c in cs), sum(c["count"] > 0 for c in cs)


def lowest(cs) -> float:
  return min(c["lowest"] for c in cs if c["count"])


def first_collapse(cs) -> int:
  return min(c["starts"][0] for c in cs if c["count"])


CLAIMS = []


def claim(id_, sources, docs=("RESULTS.md",)):
  def deco(fn):
    CLAIMS.append(Claim(id_, tuple(sources), fn, tuple(docs)))
    return fn
  return deco


def many(prefix, sources, items, docs=("RESULTS.md",)):
  """Claims ``prefix.<key>`` from ``{key: function}``."""
  for k, fn in items.items():
    CLAIMS.append(Claim(f"{prefix}.{k}", tuple(sources), fn, tuple(docs)))


TASKS = {"add": "a+b", "mul": "a*b", "sub": "a-b", "sqsub": "a*a-b"}
OTHERS = ("rescale", "adam", "adamw", "grokfast-ema", "grokfast-ma")

# ---------------------------------------------- paper size: per-seed steps
for _t in ("add", "mul"):
  many(f"paper.{_t}.seeds", [f"{P}/{_t}"], {
      m: (lambda D, t=_t, m=m: f"{NAMES[m]} " + seeds_text(
          D.per(f"{P}/{t}", m)["steps_to_95"]))
      for m in ("neuralgrok",) + OTHERS})

many("paper.setup", [f"{P}/add"], {
    "ma_s_step": lambda D: "GrokFast-MA's {:.2f} s/step".format(
        D.per(f"{P}/add", "grokfast-ma")["wall_time_s"] /
        max(D.per(f"{P}/add", "grokfast-ma")["last_step"]))})


# ------------------------------------------------------ paper: plain Adam
def _wd0(D, key, agg):
  out = []
  for t in ("add", "mul"):
    out.append(" / ".join(
        f"{agg(D.curve(f'{P}/{t}-adam-wd0', 'adam', s, key)[1]):.2f}"
        for s in D.run(f"{P}/{t}-adam-wd0")["spec"].seeds))
  return out


def _wd0_train(D):
  ok = all(np.nanmax(D.curve(f"{P}/{t}-adam-wd0", "adam", s, "train/acc")[1])
           >= 0.9995 for t in ("add", "mul") for s in range(3))
  return "train accuracy 1.0 in every seed" if ok else "NOT 1.0"


many("paper.wd0", [f"{P}/add-adam-wd0", f"{P}/mul-adam-wd0"], {
    "train": _wd0_train,
    "best": lambda D: "{} on a+b and {} on a*b".format(
        *_wd0(D, "test/acc", np.nanmax)),
    "final": lambda D: "and at step 5,000 {} and {}".format(
        *_wd0(D, "test/acc", lambda v: v[-1])),
    "ratio": lambda D: "> {}x on a+b and > {}x on a*b".format(
        floor2(5000 / D.per(f"{P}/add", "neuralgrok")["t95"]["median"]),
        floor2(5000 / D.per(f"{P}/mul", "neuralgrok")["t95"]["median"])),
})


# --------------------------------------------- paper: what this says (add)
def _adam_add(D):
  cs = D.collapses(f"{P}/add", "adam")
  return cs


many("paper.says", [f"{P}/add", f"{P}/mul"], {
    "add_speed": lambda D: f"a+b: {speed(f'{P}/add', 'adam', D)} fewer steps",
    "add_steps": lambda D: "interval " + bracket(
        D.pair(f"{P}/add", "adam")["steps"]) + " contains 0",
    "add_auc": lambda D: "over the budget, " + ci(
        D.pair(f"{P}/add", "adam")["auc"], ".2f"),
    "add_first": lambda D: "collapses after step " + n(
        first_collapse(_adam_add(D))),
    "add_stop": lambda D: "its stop at step " + n(
        max(D.per(f"{P}/add", "neuralgrok")["last_step"])) + " to 5,000",
    "add_window": lambda D: "(the first {} steps, before any early stop and "
    "before any collapse of Adam) it is {}".format(
        n(D.window(f"{P}/add", "adam")),
        ci(D.pair(f"{P}/add", "adam", True)["auc"], ".2f")),
    "mul_speed": lambda D: f"On a*b: {speed(f'{P}/mul', 'adam', D)}",
    "mul_all": lambda D: "(steps {}; AUC over the budget {}, over the common "
    "window of {} steps {})".format(
        bracket(D.pair(f"{P}/mul", "adam")["steps"]),
        ci(D.pair(f"{P}/mul", "adam")["auc"], ".2f"),
        n(D.window(f"{P}/mul", "adam")),
        ci(D.pair(f"{P}/mul", "adam", True)["auc"], ".2f")),
    "rescale_steps": lambda D: "differ by {} on a+b and {} on a*b".format(
        ci(D.pair(f"{P}/add", "rescale")["steps"]),
        ci(D.pair(f"{P}/mul", "rescale")["steps"])),
    "rescale_auc": lambda D: "AUC by {} and {} over the budget ({} and {} "
    "over the common window)".format(
        *[ci(D.pair(f"{P}/{t}", "rescale", w)["auc"], ".3f")
          for w in (False, True) for t in ("add", "mul")]),
    "adam_add": lambda D: "collapsed {} times over the budget, in {}/3 "
    "seeds, first at step {} (lowest test accuracy {:.3f})".format(
        *ncoll(_adam_add(D)), n(first_collapse(_adam_add(D))),
        lowest(_adam_add(D))),
    "adam_mul": lambda D: _adam_mul(D),
    "clip_none": lambda D: _clip_none(D),
    "adamw": lambda D: "Unclipped AdamW also collapsed, inside the common "
    "window: on a+b in {1}/3 seeds (lowest {2:.3f}), on a*b in {4}/3 "
    "seeds (lowest {5:.3f})".format(*_adamw_win(D, "add"),
                                    *_adamw_win(D, "mul")),
    "adamw_add": lambda D: "AdamW (wd 1) needed {} NeuralGrok's steps, "
    "difference {}: the interval excludes 0, but the effect is {} the noise "
    "floor (a seed moves by up to {:.0f} steps from rounding alone)".format(
        speed(f"{P}/add", "adamw", D), ci(D.pair(f"{P}/add", "adamw")["steps"]),
        nf_label(D.pair(f"{P}/add", "adamw")["steps"]["mean"],
                 noise_floor(D)[0]), noise_floor(D)[0]),
    "adamw_mul": lambda D: "On a*b AdamW's {} is within the noise of 3 "
    "pairs ({})".format(speed(f"{P}/mul", "adamw", D),
                        bracket(D.pair(f"{P}/mul", "adamw")["steps"])),
    "grokfast": lambda D: "EMA {} and {}, MA {} and {}".format(
        speed(f"{P}/add", "grokfast-ema", D),
        speed(f"{P}/mul", "grokfast-ema", D),
        speed(f"{P}/add", "grokfast-ma", D),
        speed(f"{P}/mul", "grokfast-ma", D)),
})


def _adam_mul(D):
  cs = D.collapses(f"{P}/mul", "adam")
  k = [i for i, c in enumerate(cs) if c["count"]]
  assert len(k) == 1, k
  c = cs[k[0]]
  rest = [i for i in range(3) if i != k[0]]
  return ("collapsed {} times, both in seed {} (at {} and {}, lowest {:.3f}), "
          "while seed {}'s lowest point after reaching 95% was {:.2f} and "
          "seed {}'s {:.2f}, and it stopped at {}").format(
              c["count"], k[0], n(c["starts"][0]), n(c["starts"][1]),
              c["lowest"], rest[1], cs[rest[1]]["lowest"], rest[0],
              cs[rest[0]]["lowest"],
              n(max(D.per(f"{P}/mul", "adam")["last_step"])))


def _clip_none(D):
  tot = sum(ncoll(D.collapses(f"{P}/{t}", m))[0] for t in ("add", "mul")
            for m in ("neuralgrok", "rescale"))
  assert tot == 0, tot
  stop = lambda t, m: n(max(D.per(f"{P}/{t}", m)["last_step"]))  # noqa
  return ("did not collapse in any seed, but they stopped early (NeuralGrok "
          f"at {stop('add', 'neuralgrok')} and {stop('mul', 'neuralgrok')} "
          f"steps, rescaling at {stop('add', 'rescale')} and "
          f"{stop('mul', 'rescale')})")


def _adamw_win(D, t):
  cs = D.collapses(f"{P}/{t}", "adamw", D.window(f"{P}/{t}", "adamw"))
  return (*ncoll(cs), lowest(cs))


# --------------------------------------------------------- paper: poly
def _poly_range(D, key):
  r = D.run(f"{P}/poly")
  v = np.concatenate([D.curve(f"{P}/poly", m, s, key)[1]
                      for m in r["spec"].methods for s in r["spec"].seeds])
  return f"{v.min():.2f}-{v.max():.2f}"


def _s_step(D, m):
  p = D.per(f"{P}/poly", m)
  return p["wall_time_s"] / max(p["last_step"])


many("paper.poly", [f"{P}/poly"], {
    "cost": lambda D: "NeuralGrok costs {:.2f} s per step".format(
        _s_step(D, "neuralgrok")),
    "others": lambda D: "rescaling {:.2f} s and Adam {:.2f} s".format(
        _s_step(D, "rescale"), _s_step(D, "adam")),
    "test": lambda D: f"test accuracy {_poly_range(D, 'test/acc')} at every "
    "evaluation",
    "train": lambda D: f"train accuracy {_poly_range(D, 'train/acc')}",
    "hours": lambda D: "at {:.2f} s per step that is about {:.0f} hours".format(
        _s_step(D, "neuralgrok"),
        round(3e5 * _s_step(D, "neuralgrok") / 3600, -1)),
    "hours10k": lambda D: "about {:.0f} hours".format(
        10000 * _s_step(D, "neuralgrok") / 3600),
})


# ------------------------------------------------- paper: a-b and a*a-b
def _pairs_text(t, m, D, with_speed=True):
  p = D.pair(f"{P}/{t}", m)
  sp = f", {speed(f'{P}/{t}', m, D)}" if with_speed else ""
  return f"{ci(p['steps'])}{sp}", ci(p["auc"], ".3f")


def _pair_claim(D, t, m):
  steps, auc = _pairs_text(t, m, D, m != "rescale")
  if m == "rescale":
    return (f"rescaling -100 [-348, 148] steps to 95% (AUC {auc})".replace(
        "-100 [-348, 148]", steps) if t == "sub" else
            f"rescaling: {steps} steps to 95%, AUC {auc}")
  return f"{steps} (AUC {auc})" if t == "sub" else f"{steps}, AUC {auc}"


for _t in ("sub", "sqsub"):
  many(f"paper.{_t}.pair", [f"{P}/{_t}"], {
      m: (lambda D, t=_t, m=m: _pair_claim(D, t, m)) for m in OTHERS})
  many(f"paper.{_t}", [f"{P}/{_t}"], {
      "window": lambda D, t=_t: "NeuralGrok's stop at {} steps".format(
          n(max(D.per(f"{P}/{t}", "neuralgrok")["last_step"])))})


def _coll_text(D, t, m):
  cs = D.collapses(f"{P}/{t}", m)
  return ncoll(cs)


many("paper.sub", [f"{P}/sub"], {
    "adam": lambda D: "Adam collapsed {} times after grokking, in {}/3 "
    "seeds, all after NeuralGrok's stop".format(*_coll_text(D, "sub", "adam"))
    if ncoll(D.collapses(f"{P}/sub", "adam", D.window(f"{P}/sub", "adam")))[0]
    == 0 else "some inside",
    "adamw": lambda D: "AdamW collapsed in every seed, {} of its {} "
    "collapses inside the common window".format(
        ncoll(D.collapses(f"{P}/sub", "adamw", D.window(f"{P}/sub", "adamw")))
        [0], ncoll(D.collapses(f"{P}/sub", "adamw"))[0])
    if ncoll(D.collapses(f"{P}/sub", "adamw"))[1] == 3 else "not every",
    "ma": lambda D: "third seed reached 95% at step {}, and it reached 99% "
    "in only {}/3 seeds".format(
        n(D.per(f"{P}/sub", "grokfast-ma")["steps_to_95"][2]),
        D.per(f"{P}/sub", "grokfast-ma")["t99"]["success"]),
})


def _sqsub_adam(D):
  cs = D.collapses(f"{P}/sqsub", "adam")
  st, acc = D.curve(f"{P}/sqsub", "adam", 1)
  assert cs[1]["count"] and acc[-1] < 0.5 and st[-1] == 5000
  return ("seed 1 was in a collapse when the budget ended (test accuracy "
          f"{acc[-1]:.3f} at step {n(st[-1])}), after reaching 95% at "
          f"{n(cs[1]['reached_at'])}; Adam collapsed {ncoll(cs)[0]} times in "
          f"{ncoll(cs)[1]}/3 seeds")


def _sqsub_adamw(D):
  cs = D.collapses(f"{P}/sqsub", "adamw", D.window(f"{P}/sqsub", "adamw"))
  k = [i for i, c in enumerate(cs) if c["count"]]
  assert len(k) == 1
  c = cs[k[0]]
  return (f"AdamW collapsed {c['count']} times in seed {k[0]} (lowest "
          f"{c['lowest']:.3f}, first at step {n(c['starts'][0])}), inside the "
          "common window")


many("paper.sqsub", [f"{P}/sqsub"], {
    "seeds": lambda D: "\n".join(
        f"| {NAMES[m] if m != 'rescale' else 'rescaling'} | " +
        seeds_text(D.per(f"{P}/sqsub", m)["steps_to_95"], " | ") + " |"
        for m in ("neuralgrok",) + OTHERS),
    "adam": _sqsub_adam,
    "adamw": _sqsub_adamw,
    "about": lambda D: "baseline: about {:.0f}x".format(
        D.pair(f"{P}/sqsub", "adam")["speedup"]["geomean"]),
    "window_auc": lambda D: "over the common window ({})".format(
        ci(D.pair(f"{P}/sqsub", "adam", True)["auc"], ".3f")),
})
CLAIMS[:] = [c for c in CLAIMS if c.id != "paper.sqsub.seeds"]  # a table


def _ratios(D):
  return "we measured {} on a+b, {} on a*b, {} on a-b and {} on a*a-b".format(
      *[speed(f"{P}/{t}", "adam", D) for t in ("add", "mul", "sub", "sqsub")])


def _range(D):
  v = sorted(D.pair(f"{P}/{t}", "adam")["speedup"]["geomean"]
             for t in ("add", "mul", "sub"))
  return (f"Adam ({speed(f'{P}/sqsub', 'adam', D)}) is within the range of "
          f"the easy tasks ({v[0]:.2f}-{v[-1]:.2f}x)")


def _window_clear(D):
  clear = [TASKS[t] for t in ("add", "mul", "sub", "sqsub")
           if D.pair(f"{P}/{t}", "adam", True)["auc"]["lo"] > 0]
  assert clear == ["a+b", "a-b", "a*a-b"], clear
  return "is clear of 0 on a+b, a-b and a*a-b, not on a*b"


many("paper.paper_claims", [f"{P}/{t}" for t in TASKS], {
    "ratios": _ratios, "range": _range, "clear": _window_clear})


# ------------------------------------------------- README's summary of them
def _med(D, t, m):
  return n(D.per(f"{P}/{t}", m)["t95"]["median"])


def _wd0_range(D):
  v = [np.nanmax(D.curve(f"{P}/{t}-adam-wd0", "adam", s)[1])
       for t in ("add", "mul") for s in range(3)]
  return f"best test accuracy {min(v):.2f}-{max(v):.2f}, train 1.0"


many("readme", [f"{P}/{t}" for t in TASKS] + [f"{P}/poly"], {
    "add_medians": lambda D: "a median of {} steps against {}".format(
        _med(D, "add", "neuralgrok"), _med(D, "add", "adam")),
    "add_speed": lambda D: f"{speed(f'{P}/add', 'adam', D)} fewer steps on",
    "add_window": lambda D: "over the first {} steps, before any early "
    "stop: {}".format(n(D.window(f"{P}/add", "adam")),
                      ci(D.pair(f"{P}/add", "adam", True)["auc"], ".2f")),
    "rescale": lambda D: "just as fast ({}; paired difference {} steps)".format(
        _med(D, "add", "rescale"), ci(D.pair(f"{P}/add", "rescale")["steps"])),
    "adamw": lambda D: "needed {} NeuralGrok's steps on a+b (interval {}, "
    "but {} the noise floor: float rounding alone moves a seed by up to {:.0f} "
    "steps)".format(speed(f"{P}/add", "adamw", D),
                    bracket(D.pair(f"{P}/add", "adamw")["steps"]),
                    nf_label(D.pair(f"{P}/add", "adamw")["steps"]["mean"],
                             noise_floor(D)[0]), noise_floor(D)[0]),
    "mul": lambda D: "NeuralGrok {} against Adam's {} ({},".format(
        _med(D, "mul", "neuralgrok"), _med(D, "mul", "adam"),
        speed(f"{P}/mul", "adam", D)),
    "mul_rescale": lambda D: f"rescaling alone {_med(D, 'mul', 'rescale')}",
    "wd0": _wd0_range,
    "hard": lambda D: "needed {} and {} fewer steps".format(
        speed(f"{P}/sub", "adam", D), speed(f"{P}/sqsub", "adam", D)),
    "poly": lambda D: "({:.2f} s per NeuralGrok step".format(
        _s_step(D, "neuralgrok")),
}, docs=())  # optional: README may drop or move them; they back its numbers


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


TABLES = [
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
EXEMPT = {
    "| run | amplifier | seeds | init: rel. L2 dist.":
        "experiments.amplifier_vs_rescale: needs each seed's transformer "
        "gradient (JAX), minutes; not part of the fast check",
}

#: Numbers in prose that are set, not measured (configuration, thresholds,
#: budgets, arithmetic of the setup, literature), as phrases that contain
#: them.  "*": every document.
NON_DATA = {
    "*": ["95%", "99%", "p = 97", "depth 2", "d 128", "4 heads", "batch 512",
          "lr 1e-3", "10 warm-up steps", "0.9/0.98", "1-128-128-1", "T = 4",
          "c = 0.2", "weight decay 1e-3", "global norm 1", "49%", "1%",
          "AdamW wd 1", "alpha 0.98, lamb 2, wd 0.005",
          "window 100, lamb 5, wd 0.01", "50%", "3 seeds",
          "every 100 steps", "5,000 steps", "5,000-step budget", "5 evaluations",
          "Adam wd 1e-3", "4.67x", "3 pairs", "[0, 1]", "(wd 0)", "wd 1",
          "0.5", "5,000", "mod 97", "mod 7", "depth 4", "1-1152-1", "T = 1",
          "chance 1/7 = 0.14", "200 steps", "3e5 steps", "10,000 steps",
          "9 x 512 + 48 examples, 10 steps an epoch", "39,890",
          "2 cores", "vocabulary p + 3", "wd 1e-3", "AdamW (wd 1)",
          "two other training processes", "one or two other training",
          "3 seeds per method", "seeds 0, 1, 2", "(0, 1, 2)", "3 pairs",
          "seed 0", "seed 1", "seed 2", "(seeds 0, 1, 2)", "1e-4",
          "with 3 seeds", "all 3 seeds", "800k gradient components",
          "2-core", "of 0", "excludes 0", "includes 0", "containing 0",
          "contains 0", "Table 1", "Table 2", "Table 3", '"steps run" < 5000',
          "1152-wide", "seeds 0-4", "mod 47", "p 47, depth 1, d 64",
          "2000 steps)", "from step 0", "section 6", "within 2,000 steps",
          "within 2000 steps", "up to 50x sooner",
          "of 23 frequencies hold 90%", "(1e-3 x ||phi||)",
          "with 1e-3 or 1e-2", "3-step", "meta lr 1e-2", "meta lr 1e-3",
          "a*a-b, 2000 steps", "end of the 2000 steps", "and 5 seeds)",
          "g = 0", "1,500-step budget", "3 seeds, 1500 steps",
          "(3 tasks x 3 seeds)", "(5000-step budget", "x86-64",
          "jax 0.10.2", "decay 1)", "p = 5, depth 1", "(step 2000)",
          "(depth 1, p = 5, so 5 classes and 20% test accuracy is chance)",
          "(then clip 1)", "near chance (20%)", "chance is 0.20",
          "5 seeds: the intervals are wide (t = 2.776 for 4 degrees of "
          "freedom)", "100-step evaluation grid",
          # the c sweep's arithmetic of the configuration
          "c=0.1", "c=10", "c=1", "d-64 model has 17 parameter tensors",
          "clip (1.0)", "c sqrt(17)", "1/sqrt(17) = 0.243",
          "norm 0.243 per tensor", "norm 0.1", "2.4x (0.243/0.1)", "not 10x",
          "Seeds 0-4 get wd 0.1, 5-9 wd 1, 10-14 wd 3, 15-19 wd 10",
          "at step 2000", "(wd 0.1 memorized", "wd 3 and 10 fail"],
    "RESULTS.md": [
        # operational facts of the sessions, not in the exported folders:
        "about an hour for rescaling and about 11 minutes for GrokFast-MA",
        "step-1000 checkpoint",
        "14.5-19.5 min per task",  # the commands' wall clock (2026-11-22)
        "within 1e-4 (relative L2)",  # the amplifier table (EXEMPT) above
    ],
    "README.md": ["within 1e-4 of plain rescaling", "p 47, depth 1, d 64, "
                  "2000 steps, 5 seeds"],  # RESULTS' EXEMPT table
}


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


# ------------------------------------------------------------ noise floor
#: Run folders pairs with the same configuration and seeds whose NeuralGrok
#: differs only by float rounding (a different compiled program).
NF_PAIRS = [("tune/a+b/heldout", "learned_part/a+b"),
            ("tune/a*b/heldout", "learned_part/axb")]
#: The controlled runs (experiments/results/noise_floor/README.md): the
#: same configuration at the current code, seeds one at a time and in one
#: vmap, paired with each other and with the two studies.
NF_RUNS = [("noise_floor/g1", "noise_floor/gall"),
           ("noise_floor/g1", "learned_part/a+b"),
           ("noise_floor/g1", "tune/a+b/heldout"),
           ("noise_floor/gall", "learned_part/a+b"),
           ("noise_floor/gall", "tune/a+b/heldout")]


def _nf_pairs(D):
  return NF_PAIRS + [p for p in NF_RUNS
                     if all(os.path.isdir(D.path(x)) for x in p)]


@functools.lru_cache(maxsize=None)
def _nf_table(D, a, b, m="neuralgrok"):
  A, B = D.run(a), D.run(b)
  seeds = list(A["spec"].seeds)
  assert seeds == list(B["spec"].seeds)
  return stats.paired_table(A["rows"], m, m, seeds, A["spec"].steps,
                            rows_b=B["rows"])


def noise_floor(D):
  """(largest per-seed change of the steps to 95%, of the AUC) that float
  rounding alone produced, over every pair."""
  st, au = 0.0, 0.0
  for a, b in _nf_pairs(D):
    t = _nf_table(D, a, b)
    st = max([st] + [abs(x) for x in t["steps"]["diffs"]])
    au = max([au] + [abs(x) for x in t["auc"]["diffs"]])
  return st, au


def nf_label(x, floor):
  return "beyond" if abs(x) > floor else "within"


def _nf_seeds(D, a, b):
  s = lambda rel: seeds_text(  # noqa: E731
      D.run(rel)["summary"]["methods"]["neuralgrok"]["steps_to_95"], "/")
  return f"{s(a)} and {s(b)}"


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
        _nf_seeds(D, *NF_PAIRS[0])),
    "axb_seeds": lambda D: "on a*b {}".format(_nf_seeds(D, *NF_PAIRS[1])),
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


# ------------------------------------------- tuned baselines (CPU size)
def _tp(D, t, m):
  r = D.run(f"{TUNE[t]}/heldout")
  return stats.paired_table(r["rows"], "adamw", m, list(r["spec"].seeds),
                            r["spec"].steps)


def _th(D, t, m):
  return D.run(f"{TUNE[t]}/heldout")["summary"]["methods"][m]


def _tpairs(D, m, key="steps", fmt=".0f"):
  return [ci(_tp(D, t, m)[key], fmt) for t in TUNE]


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
  return [_th(D, t, m)["t95"]["success"] for t in TUNE]


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
  ok = all(abs(_tp(D, t, m)["steps"]["mean"]) > fs for t in TUNE for m in ms)
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
        *[_th(D, t, "muon")["t95"]["median"] for t in TUNE],
        *[f"{1 / _tp(D, t, 'muon')['speedup']['geomean']:.2f}x" for t in TUNE]),
    "muon_fourier": _muon_fourier,
    "adamw": lambda D: "{}/5 on every task ({:.0f}, {:.0f}, {:.0f} steps)".format(
        min(_reached(D, "adamw")),
        *[_th(D, t, "adamw")["t95"]["median"] for t in TUNE]),
    "ng_adam": lambda D: "(Adam reached 95% in {}/5, {}/5 and {}/5 seeds), but "
    "{}, {} and {}".format(*_reached(D, "adam"), *[
        f"{1 / _tp(D, t, 'neuralgrok')['speedup']['geomean']:.2f}x"
        for t in TUNE]),
    "ng_medians": lambda D: "(medians {} vs {} on a+b, {} vs {} on a*b, {} vs "
    "{} on a-b".format(*[f"{_th(D, t, m)['t95']['median']:.0f}" for t in TUNE
                         for m in ("neuralgrok", "rescale")]),
    "grokfast": lambda D: "reached 95% in only {}-{} of 5 held-out seeds of "
    "a+b and a*b, none of a-b, within 2000 steps, slower than AdamW".format(
        min(_reached(D, m)[i] for m in ("grokfast-ema", "grokfast-ma")
            for i in (0, 1)),
        max(_reached(D, m)[i] for m in ("grokfast-ema", "grokfast-ma")
            for i in (0, 1)))
    if max(_reached(D, m)[2] for m in ("grokfast-ema", "grokfast-ma")) == 0
    and all(_tp(D, t, m)["speedup"]["geomean"] > 1 for t in ("a+b", "a*b")
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


def _final(D, rel, key, m="neuralgrok"):
  """Median over seeds of ``key`` at the last evaluation (float)."""
  r = D.run(rel)
  return float(np.median([D.curve(rel, m, s, key)[1][-1]
                          for s in r["spec"].seeds]))


def _sps(D, rel, m="neuralgrok"):
  p = D.run(rel)["summary"]["methods"][m]
  return p["wall_time_s"] / max(p["last_step"])


def _lp_pair(D, t, opt=None):
  base = D.run(f"{LP}/{t}")
  other = D.run(f"{LP}/{t}-{opt}") if opt else base
  return stats.paired_table(base["rows"], "rescale", "neuralgrok",
                            list(base["spec"].seeds), base["spec"].steps,
                            rows_b=other["rows"])


def _lp_all_pairs(D):
  return [(t, o, _lp_pair(D, t, o)) for t, opts in LP_OPTS.items()
          for o in [None] + opts]


def _lp_dead(D):
  v = [(_final(D, f"{LP}/{t}-{o}", "amp/dist_const"),
        _final(D, f"{LP}/{t}-{o}", "amp/param_change"))
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
  for t, o, p in _lp_all_pairs(D):
    for k in ("steps", "auc"):
      d = p[k]
      if d["lo"] is not None and (d["lo"] > 0 or d["hi"] < 0):
        bad.append((t, o, k))
  assert bad == [("a+b", "meta-lr-1e-2-cosine", "steps")], bad
  d = _lp_pair(D, "a+b", "meta-lr-1e-2-cosine")["steps"]
  within = all(abs(p["steps"]["mean"]) <= fs for _, _, p in _lp_all_pairs(D))
  assert within
  return (f"than rescaling by {-d['mean']:.0f} [{-d['hi']:.0f}, "
          f"{-d['lo']:.0f}] steps")


def _lp_lost(D):
  p = _lp_pair(D, "a+b", "meta-lr-1e-2-wd0")
  assert p["a_only"] == 1 and p["b_only"] == 0 and p["neither"] == 0
  return "lost one seed of five on a+b (never reached 95%)"


def _lp_floor(D):
  fs = noise_floor(D)[0]
  m = max(abs(p["steps"]["mean"]) for _, _, p in _lp_all_pairs(D))
  return (f"every mean difference of steps to 95% here (at most {m:.0f} "
          f"steps) is within the noise floor ({fs:.0f} steps)")


def _lp_cost(D):
  r = lambda a, b: _sps(D, a) / b  # noqa: E731
  ng = {t: _sps(D, f"{LP}/{t}") for t in LP_OPTS}
  rs = {t: _sps(D, f"{LP}/{t}", "rescale") for t in LP_OPTS}
  return ("NeuralGrok's step is {:.1f}x (a+b) to {:.1f}x (a*b) rescaling's, "
          "the rich inputs {:.2f}x (a+b) and {:.2f}x (a*b) the recipe's, the "
          "3-step look-ahead {:.1f}x and {:.1f}x").format(
              ng["a+b"] / rs["a+b"], ng["axb"] / rs["axb"],
              r(f"{LP}/a+b-rich", ng["a+b"]), r(f"{LP}/axb-rich", ng["axb"]),
              r(f"{LP}/a+b-lookahead-3", ng["a+b"]),
              r(f"{LP}/axb-lookahead-3", ng["axb"]))


many("lp", [LP], {
    "recipe": lambda D: "ends {:.1f}% (a+b) and {:.2f}% (a*b) away".format(
        100 * _final(D, f"{LP}/a+b", "amp/dist_const"),
        100 * _final(D, f"{LP}/axb", "amp/dist_const")),
    "dead": _lp_dead,
    "wd0_moved": lambda D: "(param_change {:.2f} and {:.2f})".format(
        *[_final(D, f"{LP}/a+b-{o}", "amp/param_change")
          for o in ("meta-lr-1e-3-wd0", "meta-lr-1e-2-wd0")]),
    "wd0_close": lambda D: "within {:.1f}-{:.1f}% of rescaling's".format(
        *[100 * _final(D, f"{LP}/a+b-{o}", "amp/dist_const")
          for o in ("meta-lr-1e-3-wd0", "meta-lr-1e-2-wd0")]),
    "verdict": _lp_verdict, "lost": _lp_lost, "floor": _lp_floor,
    "cost": _lp_cost,
})
TABLES += _lp_tables()


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
  moved = _final(D, f"{CT}/cross-meta-lr-1e-2-wd0/a+b", "amp/param_change")
  single = _final(D, f"{LP}/a+b-meta-lr-1e-2-wd0", "amp/param_change")
  dc = [_final(D, f"{CT}/cross-{v}/{t}", "amp/dist_const") for v in CT_V
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
  s = [_sps(D, f"{CT}/cross-{v}/a+b") for v in CT_V]
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


def _ct_within(D):
  dc = [_final(D, f"{CT}/cross-{v}/{t}", "amp/dist_const") for v in CT_V
        for t in ("a+b", "a-b", "axb")]
  return f"to within {math.ceil(1000 * max(dc)) / 10:.1f}% it is rescaling"


many("ct", [CT, LP], {"within": _ct_within, "training": _ct_training, "censor": _ct_censor,
                      "verdict": _ct_verdict, "frozen": _ct_frozen,
                      "init": _ct_init, "cost": _ct_cost,
                      "floor": _ct_floor})


# --------------------------------------------- cross-task at paper size
def _pc_amp(D):
  pc = [_final(D, f"{P}/cross/{t}", "amp/param_change")
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


many("readme", [f"{CT}", "tune"], {
    "muon": lambda D: "Muon was fastest ({:.2f}-{:.2f}x fewer steps than a "
    "tuned AdamW)".format(
        *(lambda v: (min(v), max(v)))(
            [1 / _tp(D, t, "muon")["speedup"]["geomean"] for t in TUNE])),
    "within": lambda D: _ct_within(D).replace("to within", "stays within")
    .replace("% it is rescaling", "% of plain rescaling's"),
}, docs=())


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


def _nf_ctrl(D):
  a, b = "noise_floor/g1", "noise_floor/gall"
  first = []
  for s in D.run(a)["spec"].seeds:
    (x, u), (y, v) = (D.curve(a, "neuralgrok", s, "train/loss"),
                      D.curve(b, "neuralgrok", s, "train/loss"))
    assert u[0] == v[0]
    first.append(int(x[np.nonzero(u != v)[0][0]]))
  t = _nf_table(D, a, b)
  big = int(np.argmax(np.abs(t["steps"]["diffs"])))
  return ("It gave {} (one at a time) and {} (one vmap): seed {} moved by {:.0f} "
          "steps with the vmap width alone. The curves agree to the last bit "
          "at step 100 and first differ at step {} or {} (train loss)").format(
              _nf_seeds(D, a, b).split(" and ")[0],
              _nf_seeds(D, a, b).split(" and ")[1], big,
              abs(t["steps"]["diffs"][big]), min(first), max(first))


def _nf_means(D):
  st = max(abs(_nf_table(D, a, b)["steps"]["mean"]) for a, b in _nf_pairs(D))
  au = max(abs(_nf_table(D, a, b)["auc"]["mean"]) for a, b in _nf_pairs(D))
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
