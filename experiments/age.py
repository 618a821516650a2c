"""(d) Absolute Gradient Entropy over training: NeuralGrok vs standard.

Trains neuralgrok and adam; plots (run folder plots/age.png) and prints the
median AGE of the raw and the transformed gradient and the weight entropy at
a few points of training.

    python -m experiments.age --quick
    python -m experiments.age --runs runs/experiments/compare-quick/a+b
"""
import os

import numpy as np

from experiments import _common as C
from ngrok_jax.results import read_metrics
from ngrok_jax.tables import md_table


def age_table(out, methods=("neuralgrok", "adam")):
  """Median over seeds of AGE (raw/transformed), weight entropy and test
  accuracy at 0, 10, 25, 50 and 100% of training, for ``methods``."""
  rows = read_metrics(out)
  methods = [m for m in methods if any(r["method"] == m for r in rows)]
  steps = sorted({r["step"] for r in rows})
  pick = sorted({steps[int(f * (len(steps) - 1))] for f in
                 (0, 0.1, 0.25, 0.5, 1.0)})
  lines = []
  for m in methods:
    for s in pick:
      sel = [r for r in rows if r["method"] == m and r["step"] == s]
      med = {k: np.nanmedian([np.nan if r.get(k) is None else r[k]
                              for r in sel])
             for k in ("grad/age", "grad/age_transformed", "weights/entropy",
                       "test/acc")}
      lines.append([m, s, f"{med['grad/age']:.1f}",
                    f"{med['grad/age_transformed']:.1f}",
                    f"{med['weights/entropy']:.0f}", f"{med['test/acc']:.3f}"])
  return md_table(["method", "step", "AGE raw", "AGE transformed",
                   "weight entropy", "test acc"], lines)


def main():
  p = C.parser(__doc__)
  p.add_argument("--task", default="a*a-b")
  p.add_argument("--runs", default=None,
                 help="comma-separated finished run folders to analyse "
                      "instead of training (e.g. compare.py's, which hold "
                      "every method)")
  p.add_argument("--methods", default="neuralgrok,adam",
                 help="methods to tabulate")
  args = p.parse_args()
  methods = args.methods.split(",")
  if args.runs:
    outs = args.runs.split(",")
    for o in outs:
      if not os.path.isfile(os.path.join(o, "config.json")):
        raise ValueError(f"{o!r} is not a run folder (no config.json)")
  else:
    setup = C.task_setup(args.task, args)
    outs = [C.out_dir(args, "age")]
    C.run_one(setup, ["neuralgrok", "adam"], outs[0], args)
    C.print_table(outs, f"AGE experiment, {args.task}")
  for out in outs:
    print(f"\n## AGE over training: {out}\n\n{age_table(out, methods)}")
    png = os.path.join(out, "plots", "age.png")
    print("\nplots: " + (png if os.path.isfile(png) else
                         "none (the run folder has no plots/age.png)"),
          flush=True)


if __name__ == "__main__":
  C.main_guard(main)
