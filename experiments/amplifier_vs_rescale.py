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

``--json PATH`` also writes every number of the table (per seed, before the
median / max) with the command that made it, so that the claims check
(``experiments/claims.py``) can tie a document's table to it without JAX.

    python -m experiments.amplifier_vs_rescale runs/results/compare/a+b ...
    python -m experiments.amplifier_vs_rescale experiments/results/paper/add \
        experiments/results/paper/mul \
        --json experiments/results/paper/amplifier_vs_rescale.json
"""
import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ngrok_jax import amplify
from ngrok_jax.ampfile import load_amplifier
from ngrok_jax.results import load_run
from ngrok_jax.tables import md_row, md_table
from ngrok_jax import Trainer


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


HEADER = ["run", "amplifier", "seeds", "init: rel. L2 dist. (median)",
          "init: max ratio dev.", "learned: rel. L2 dist. (median)",
          "learned: max ratio dev.",
          "end-of-training tensor, learned: rel. dist."]


def summarize(run_dir):
  """Every number of one run's table row, JSON-serialisable.

  Args:
    run_dir: a NeuralGrok run folder with ``amplifier.msgpack``.

  Returns:
    ``{"run", "folder", "amplifier", "per_seed": [{"seed", "init": [rel,
    dev], "learned": [rel, dev]}], "end_of_training": {"tensor", "seed",
    "rel", "dev"}}`` (rel: relative L2 distance, dev: max ratio deviation).
  """
  cfg, rows, (name, seed, late) = analyse(run_dir)
  return dict(
      run=os.path.basename(os.path.normpath(run_dir)), folder=run_dir,
      amplifier=f"1-{'-'.join(map(str, cfg.amp_hidden))}-1",
      per_seed=[dict(seed=int(r["seed"]), init=list(r["init"]),
                     learned=list(r["learned"])) for r in rows],
      end_of_training=dict(tensor=name, seed=int(seed), rel=late[0],
                           dev=late[1]))


def table_row(s):
  """The markdown cells of one :func:`summarize` entry: medians of the
  relative L2 distance and maxima of the ratio deviation over seeds.

  Args:
    s: one entry of :func:`summarize`.

  Returns:
    The row's cells (strings), in :data:`HEADER`'s order.
  """
  med = lambda k, j: np.median([r[k][j] for r in s["per_seed"]])  # noqa
  mx = lambda k, j: np.max([r[k][j] for r in s["per_seed"]])  # noqa: E731
  e = s["end_of_training"]
  return [s["run"], s["amplifier"], str(len(s["per_seed"])),
          f"{med('init', 0):.2e}", f"{mx('init', 1):.2e}",
          f"{med('learned', 0):.2e}", f"{mx('learned', 1):.2e}",
          f"{e['rel']:.2e} ({e['tensor']}, seed {e['seed']})"]


def table(summaries):
  """The markdown table of a list of :func:`summarize` entries."""
  return md_table(HEADER, [table_row(s) for s in summaries])


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("runs", nargs="+", help="NeuralGrok run folders")
  ap.add_argument("--json", metavar="PATH",
                  help="also write every number (per seed) to this file")
  args = ap.parse_args(argv)
  argv = sys.argv[1:] if argv is None else list(argv)
  print(md_table(HEADER, []), flush=True)  # the rows follow, one per run
  out = []
  for d in args.runs:
    try:
      s = summarize(d)
    except (ValueError, FileNotFoundError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    out.append(s)
    print(md_row(table_row(s)), flush=True)
  if args.json:
    cmd = " ".join(["python -m experiments.amplifier_vs_rescale"] + argv)
    with open(args.json, "w") as f:
      json.dump(dict(command=cmd, runs=out), f, indent=1)
      f.write("\n")


if __name__ == "__main__":
  main()
