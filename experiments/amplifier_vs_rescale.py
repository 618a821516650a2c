"""How far is a learned amplifier from plain rescaling, on real gradients?

For each NeuralGrok run folder: rebuilds every seed's transformer at
initialisation, takes its gradient on that seed's whole inner-train split
(the largest gradients of training), and applies (1) the seed's amplifier at
initialisation, (2) the amplifier the run learned, (3) plain rescaling
g' = c g/||g|| per tensor (the amplifier with constant scores).  Reports the
relative L2 distance ||A(g) - R(g)|| / ||R(g)|| and the largest per-component
deviation of the amplified/rescaled ratio from 1.  The same for the run's
saved example gradient tensor at the end of training (``amplifier.msgpack``).
A value near 0 means the amplifier acts as rescaling.

    python -m experiments.amplifier_vs_rescale runs/results/compare/a+b ...
"""
import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ngrok_jax.amplifier import amplify
from ngrok_jax.ampfile import load_amplifier
from ngrok_jax.results import load_run
from ngrok_jax.tables import md_row, md_table
from ngrok_jax.trainer import Trainer


def distance(g, score_fn, c=1.0):
  """(relative L2 distance, max |ratio - 1|) of amplify vs rescaling."""
  a = amplify(g, score_fn, c)
  r = amplify(g, lambda v: jnp.zeros_like(v), c)
  fa = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)])
  fr = np.concatenate([np.ravel(x) for x in jax.tree.leaves(r)])
  rel = float(np.linalg.norm(fa - fr) / np.linalg.norm(fr))
  big = np.abs(fr) > 1e-3 * np.max(np.abs(fr))
  dev = float(np.max(np.abs(fa[big] / fr[big] - 1.0)))
  return rel, dev


def analyse(run_dir):
  run = load_run(run_dir)
  spec = run["spec"]
  if "neuralgrok" not in spec.configs:
    raise ValueError(f"{run_dir!r} has no neuralgrok run")
  cfg = spec.configs["neuralgrok"]
  tr = Trainer(cfg)
  state, data = tr.init(list(spec.seeds))
  learned, meta = load_amplifier(run_dir, None)
  learned = jax.tree.map(jnp.asarray, learned)
  c = float(cfg.c)
  out = []
  for i, seed in enumerate(spec.seeds):
    take = lambda t, i=i: jax.tree.map(lambda x: x[i], t)  # noqa: E731
    params = take(state.seeds.params)
    idx = data.train[i]
    g = jax.grad(tr.loss_fn)(params, data.inputs[idx], data.labels[idx])
    row = dict(seed=seed)
    for name, phi in (("init", take(state.seeds.amp_params)),
                      ("learned", take(learned))):
      row[name] = distance(g, lambda v, phi=phi: tr.amplifier.apply(phi, v), c)
    out.append(row)
  ex = jnp.asarray(np.asarray(meta["example"]["grad"], np.float32))
  ex_seed = meta["example"]["seed"]
  k = list(spec.seeds).index(ex_seed)
  phi = jax.tree.map(lambda x: x[k], learned)
  late = distance({"t": ex}, lambda v: tr.amplifier.apply(phi, v), c)
  return cfg, out, (meta["example"]["name"], ex_seed, late)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("runs", nargs="+", help="NeuralGrok run folders")
  args = ap.parse_args()
  header = ["run", "amplifier", "seeds", "init: rel. L2 dist. (median)",
            "init: max ratio dev.", "learned: rel. L2 dist. (median)",
            "learned: max ratio dev.",
            "end-of-training tensor, learned: rel. dist."]
  print(md_table(header, []), flush=True)  # the rows follow, one per run
  for d in args.runs:
    try:
      cfg, rows, late = analyse(d)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    med = lambda k, j: np.median([r[k][j] for r in rows])  # noqa: E731
    mx = lambda k, j: np.max([r[k][j] for r in rows])  # noqa: E731
    row = [os.path.basename(os.path.normpath(d)),
           f"1-{'-'.join(map(str, cfg.amp_hidden))}-1", len(rows),
           f"{med('init', 0):.2e}", f"{mx('init', 1):.2e}",
           f"{med('learned', 0):.2e}", f"{mx('learned', 1):.2e}",
           f"{late[2][0]:.2e} ({late[0]}, seed {late[1]})"]
    print(md_row(row), flush=True)


if __name__ == "__main__":
  main()
