"""Claims and the table of how far learned amplifiers are from plain
rescaling (RESULTS.md): the paper-size table (written by
``experiments.amplifier_vs_rescale --json``, which needs JAX gradients; the
slow test in ``tests/test_claims.py`` regenerates it) and the learned score
function of the learned-part study (read from its ``amplifier.msgpack``)."""
import math

import numpy as np

from experiments._claims.base import *  # noqa: F401,F403 (the registry)

AVR = f"{P}/amplifier_vs_rescale.json"
LP_AB = "learned_part/a+b"
LP_AXB = "learned_part/axb"


def _avr_table(D):
  from experiments.amplifier_vs_rescale import table
  return table(D.json(AVR)["runs"])


TABLES.append(Table("paper.amplifier_vs_rescale", (AVR,), _avr_table))


def _learned(D):
  """Each run's per-seed relative L2 distances of the learned amplifier."""
  return [[r["learned"][0] for r in s["per_seed"]]
          for s in D.json(AVR)["runs"]]


def within_bound(D):
  """The bound of every seed's distance, rounded up to one digit."""
  top = max(max(v) for v in _learned(D))
  e = math.floor(math.log10(top))
  m = math.ceil(top / 10.0 ** e - 1e-9)
  m, e = (1, e + 1) if m == 10 else (m, e)
  return f"within {m}e{e:d} (relative L2) of c g/||g|| on every seed"


def _medians(D):
  runs = D.json(AVR)["runs"]
  assert [s["run"] for s in runs] == ["add", "mul"], runs
  a, b = [float(np.median(v)) for v in _learned(D)]
  return f"median over seeds {a:.1e} on a+b and {b:.1e} on a*b"


many("paper.amp", (AVR,), {
    "command": lambda D: D.json(AVR)["command"].split(" --json")[0],
    "within": within_bound,
    "medians": _medians,
})


# ------------------------------------------- learned part: score function
def _span(D, rel):
  """(max - min of seed 0's learned score function over the gradient range
  seen at the start, that range's half-width), as ``plot_scores`` draws
  it."""
  import jax.numpy as jnp
  from ngrok_jax import Amplifier
  from ngrok_jax.ampfile import load_amplifier
  params, meta = load_amplifier(D.path(rel), seed_index=0)
  lo, hi = meta["grad_range"]
  half = max(abs(lo), abs(hi))
  x = np.linspace(-half, half, 401)
  amp = Amplifier(tuple(meta["hidden"]), meta.get("amp_method", "pwl"))
  y = np.asarray(amp.apply(params, jnp.asarray(x, jnp.float32)))
  return float(y.max() - y.min()), half


def _scores(D):
  s, half = _span(D, LP_AB)
  s2, _ = _span(D, LP_AXB)
  return ("Its score function (seed 0) spans {:.3f} over the gradient range "
          "seen at the start (|g| up to {:.2f}; {:.3f} on a*b), so within a "
          "tensor each component's softmax weight lies within {:.1f}% of "
          "uniform").format(s, half, s2, 100 * (math.exp(s) - 1))


CLAIMS.append(Claim("learned_part.scores", (LP_AB, LP_AXB), _scores))
