"""Paired per-seed comparison of every method with a reference method.

For each run folder (no training): every other method against the reference
(default neuralgrok) on the same seeds: mean difference of the steps to 95%
test accuracy (reference minus method, over the seeds where both reached it)
with a 95% t-interval, the speed-up (method / reference steps, geometric
mean), the difference of the normalised area under the test-accuracy curve
(AUC over the run's budget, never censored) with a 95% t-interval, and how
many seeds only one of the two, or neither, brought to 95%
(``ngrok_jax.stats``).

    python -m experiments.paired experiments/results/cpu/compare/a+b
    python -m experiments.paired runs/results/compare/* --with-suffix=-wd0
    python -m experiments.paired runs/results/sweep_c --out paired.md
    python -m experiments.paired experiments/results/paper/add --window

``--window``: instead, per method, the AUC difference over the common window
before any early stop and over the budget, and the collapses after grokking
(``ngrok_jax.stats.window_markdown``).

``--with-suffix S`` also pairs the methods of the folder ``RUN_DIR + S``
(compare.py's ablation ``<task>-wd0``; the CPU-size study,
docs/archive/cpu-study-2026-11-22.md, has ``<task>-wd1e-3``; same seeds) with
the reference of RUN_DIR; such a folder, if also given, is not tabulated on
its own.
"""
import argparse
import os

from experiments import _common as C
from ngrok_jax.spec import load_spec
from ngrok_jax import stats


def tables(run_dirs, reference="neuralgrok", suffix=None, budget=None,
           threshold=0.95) -> str:
  """The markdown of every folder: a heading and its paired table."""
  for d in run_dirs:
    if not os.path.isfile(os.path.join(d, "config.json")):
      raise ValueError(f"{d!r} is not a run folder (no config.json)")
  norm = [os.path.normpath(d) for d in run_dirs]
  siblings = {d + suffix for d in norm} if suffix else set()
  out = []
  for d in norm:
    if d in siblings and reference not in load_spec(d).methods:
      continue  # tabulated with the folder it belongs to
    others = [d + suffix] if suffix and os.path.isfile(
        os.path.join(d + suffix, "config.json")) else []
    table = stats.paired_markdown(d, reference, budget, threshold, others)
    out.append(f"## {d}: {reference} vs each method (paired seeds)\n\n"
               f"{table}\n")
  return "\n".join(out)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  p.add_argument("--reference", default="neuralgrok",
                 help="the method every other one is paired with")
  p.add_argument("--with-suffix", default=None, metavar="S",
                 help="also pair the methods of RUN_DIR+S (e.g. -wd0)")
  p.add_argument("--budget", type=int, default=None,
                 help="AUC/steps budget (default: each run's steps)")
  p.add_argument("--threshold", type=float, default=0.95)
  p.add_argument("--window", action="store_true",
                 help="AUC over the common window and collapses instead")
  p.add_argument("--out", default=None, help="also write the tables here")
  a = p.parse_args()
  if a.window:
    for d in a.run_dirs:
      if not os.path.isfile(os.path.join(d, "config.json")):
        raise ValueError(f"{d!r} is not a run folder (no config.json)")
    text = "\n".join(f"## {d}: {a.reference} vs each method, common window"
                     f"\n\n{stats.window_markdown(d, a.reference)}\n"
                     for d in a.run_dirs)
  else:
    text = tables(a.run_dirs, a.reference, a.with_suffix, a.budget,
                  a.threshold)
  print(text, flush=True)
  if a.out:
    with open(a.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  C.main_guard(main)
