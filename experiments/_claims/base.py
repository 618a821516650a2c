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
#: The archive page of the CPU-size study (2026-11-22), moved out of
#: RESULTS.md; its claims are checked there.
ARCHIVE = "docs/archive/cpu-study-2026-11-22.md"
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
  required: bool = True  # False: README's, checked where present


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
TABLES = []


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

#: Tables inside checked regions that cannot be regenerated here: the
#: start of their header line -> why.
EXEMPT = {}

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
          "2000 steps)", "from step 0", "section 6", "sections 6 and 7",
          "2000-step budget", "(100-200 steps)", "3 paired seeds", "within 2,000 steps",
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
    ],
    ARCHIVE: [
        "14.5-19.5 min per task",  # the commands' wall clock (2026-11-22)
    ],
    "README.md": ["p 47, depth 1, d 64, 2000 steps, 5 seeds"],  # the CPU
    # study's configuration
}



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


def nf_pairs(D):
  return NF_PAIRS + [p for p in NF_RUNS
                     if all(os.path.isdir(D.path(x)) for x in p)]


@functools.lru_cache(maxsize=None)
def nf_table(D, a, b, m="neuralgrok"):
  A, B = D.run(a), D.run(b)
  seeds = list(A["spec"].seeds)
  assert seeds == list(B["spec"].seeds)
  return stats.paired_table(A["rows"], m, m, seeds, A["spec"].steps,
                            rows_b=B["rows"])


def noise_floor(D):
  """(largest per-seed change of the steps to 95%, of the AUC) that float
  rounding alone produced, over every pair."""
  st, au = 0.0, 0.0
  for a, b in nf_pairs(D):
    t = nf_table(D, a, b)
    st = max([st] + [abs(x) for x in t["steps"]["diffs"]])
    au = max([au] + [abs(x) for x in t["auc"]["diffs"]])
  return st, au


def nf_label(x, floor):
  return "beyond" if abs(x) > floor else "within"


def nf_seeds(D, a, b):
  s = lambda rel: seeds_text(  # noqa: E731
      D.run(rel)["summary"]["methods"]["neuralgrok"]["steps_to_95"], "/")
  return f"{s(a)} and {s(b)}"



def final_value(D, rel, key, m="neuralgrok"):
  """Median over seeds of ``key`` at the last evaluation (float)."""
  r = D.run(rel)
  return float(np.median([D.curve(rel, m, s, key)[1][-1]
                          for s in r["spec"].seeds]))


def sps(D, rel, m="neuralgrok"):
  p = D.run(rel)["summary"]["methods"][m]
  return p["wall_time_s"] / max(p["last_step"])


