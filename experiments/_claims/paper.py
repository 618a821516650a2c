"""Claims of the paper-size section and the README's summary of it
(RESULTS.md, README.md); its tables, the noise floor and the README's
headline are in :mod:`experiments._claims.paper_tables`."""
import math
import os

import numpy as np

from experiments._claims.base import *  # noqa: F401,F403 (the registry)
from experiments._claims.base import (  # noqa: F401
    final_value, nf_pairs, nf_seeds, nf_table, sps)


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
def med95(D, t, m):
  return n(D.per(f"{P}/{t}", m)["t95"]["median"])


def _wd0_range(D):
  v = [np.nanmax(D.curve(f"{P}/{t}-adam-wd0", "adam", s)[1])
       for t in ("add", "mul") for s in range(3)]
  return f"best test accuracy {min(v):.2f}-{max(v):.2f}, train 1.0"


many("readme", [f"{P}/{t}" for t in TASKS] + [f"{P}/poly"], {
    "add_medians": lambda D: "a median of {} steps against {}".format(
        med95(D, "add", "neuralgrok"), med95(D, "add", "adam")),
    "add_speed": lambda D: f"{speed(f'{P}/add', 'adam', D)} fewer steps on",
    "add_window": lambda D: "over the first {} steps, before any early "
    "stop: {}".format(n(D.window(f"{P}/add", "adam")),
                      ci(D.pair(f"{P}/add", "adam", True)["auc"], ".2f")),
    "rescale": lambda D: "just as fast ({}; paired difference {} steps)".format(
        med95(D, "add", "rescale"), ci(D.pair(f"{P}/add", "rescale")["steps"])),
    "adamw": lambda D: "needed {} NeuralGrok's steps on a+b (interval {}, "
    "but {} the noise floor: float rounding alone moves a seed by up to {:.0f} "
    "steps)".format(speed(f"{P}/add", "adamw", D),
                    bracket(D.pair(f"{P}/add", "adamw")["steps"]),
                    nf_label(D.pair(f"{P}/add", "adamw")["steps"]["mean"],
                             noise_floor(D)[0]), noise_floor(D)[0]),
    "mul": lambda D: "NeuralGrok {} against Adam's {} ({},".format(
        med95(D, "mul", "neuralgrok"), med95(D, "mul", "adam"),
        speed(f"{P}/mul", "adam", D)),
    "mul_rescale": lambda D: f"rescaling alone {med95(D, 'mul', 'rescale')}",
    "wd0": _wd0_range,
    "hard": lambda D: "needed {} and {} fewer steps".format(
        speed(f"{P}/sub", "adam", D), speed(f"{P}/sqsub", "adam", D)),
    "poly": lambda D: "({:.2f} s per NeuralGrok step".format(
        _s_step(D, "neuralgrok")),
}, docs=())  # optional: README may drop or move them; they back its numbers
