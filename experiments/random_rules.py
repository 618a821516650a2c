"""Control rules for a meta-training run: its starting rule moved as far as
meta-training moved it, in random directions.

A meta-trained rule that beats its starting point may have learned, or may
just sit where a random walk of that length happened to end.  This script
writes ``--count`` rule folders (``rand<i>/rule.msgpack`` and
``rule_config.json``, which ``--rule`` and ``ngrok_jax.pretrained_rule``
read), each the run's initial rule (rebuilt from its ``meta_config.json``
seed, as ``experiments/meta_train.py`` draws it) plus ``d u / ||u||``:
``d`` the distance from the initial rule to the run's final rule, ``u`` an
isotropic Gaussian direction drawn from ``--seed + i``.

    python -m experiments.random_rules experiments/results/meta_train_rule_long \\
        --count 4 --out runs/random_rules
"""
import argparse
import json
import math
import os
import sys

import jax
import numpy as np

from experiments.meta_train import seed_keys
from ngrok_jax import init_rule, load_rule, save_rule


def initial_rule(folder: str):
  """The rule a meta-training folder started from, and its config."""
  theta, cfg = load_rule(folder)
  with open(os.path.join(folder, "meta_config.json")) as f:
    mc = json.load(f)
  primes = [p for p in str(mc["primes"]).split(",") if p.strip()]
  return init_rule(cfg, seed_keys(mc["seed"], len(primes))[0]), theta, cfg


def distance(a, b) -> float:
  return math.sqrt(sum(float(np.sum((np.asarray(x, np.float64) -
                                     np.asarray(y, np.float64)) ** 2))
                       for x, y in zip(jax.tree.leaves(a),
                                       jax.tree.leaves(b))))


def random_rules(folder: str, count: int, seed: int = 0):
  """``count`` rules at the run's distance from its initial rule, in
  random directions; returns ``[(theta, cfg)]`` and that distance."""
  start, final, cfg = initial_rule(folder)
  d = distance(final, start)
  leaves, tree = jax.tree.flatten(start)
  out = []
  for i in range(count):
    keys = jax.random.split(jax.random.PRNGKey(seed + i), len(leaves))
    u = [np.asarray(jax.random.normal(k, np.shape(x)), np.float64)
         for k, x in zip(keys, leaves)]
    norm = math.sqrt(sum(float(np.sum(v ** 2)) for v in u))
    moved = [np.asarray(x, np.float64) + d * v / norm
             for x, v in zip(leaves, u)]
    out.append((jax.tree.unflatten(tree, [
        m.astype(np.asarray(x).dtype) for m, x in zip(moved, leaves)]), cfg))
  return out, d


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
  p.add_argument("run", help="a meta-training folder (meta_config.json, "
                 "rule.msgpack, rule_config.json)")
  p.add_argument("--count", type=int, default=4, help="rules (default 4)")
  p.add_argument("--seed", type=int, default=0,
                 help="direction i is drawn from seed + i (default 0)")
  p.add_argument("--out", required=True, help="a new folder")
  a = p.parse_args(argv)
  if a.count < 1:
    raise ValueError("--count must be >= 1")
  if os.path.exists(a.out):
    raise ValueError(f"{a.out!r} exists: give a new folder")
  rules, d = random_rules(a.run, a.count, a.seed)  # all checks before writing
  for i, (theta, cfg) in enumerate(rules):
    save_rule(os.path.join(a.out, f"rand{i}"), cfg, theta)
  with open(os.path.join(a.out, "random_rules.json"), "w") as f:
    json.dump(dict(run=a.run, count=a.count, seed=a.seed, distance=d), f,
              indent=1)
  print(f"wrote {a.count} rules at distance {d:.4f} from the initial rule "
        f"of {a.run} into {a.out}")


if __name__ == "__main__":
  try:
    main()
  except ValueError as e:
    sys.exit(f"random_rules: {e}")
