"""(d) Absolute Gradient Entropy over training: NeuralGrok vs standard.

Trains neuralgrok and adam; plots (run folder plots/age.png) and prints the
median AGE of the raw and the transformed gradient and the weight entropy at
a few points of training.

    python experiments/age.py --quick
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from ngrok_jax import runner  # noqa: E402


def main():
  p = C.parser(__doc__)
  p.add_argument("--task", default="a*a-b")
  args = p.parse_args()
  setup = C.task_setup(args.task, args)
  out = C.out_dir(args, "age")
  C.run_one(setup, ["neuralgrok", "adam"], out, args)
  C.print_table([out], f"AGE experiment, {args.task}")
  rows = runner.read_metrics(out)
  steps = sorted({r["step"] for r in rows})
  pick = sorted({steps[int(f * (len(steps) - 1))] for f in
                 (0, 0.1, 0.25, 0.5, 1.0)})
  print("| method | step | AGE raw | AGE transformed | weight entropy | "
        "test acc |\n|---|---|---|---|---|---|")
  for m in ("neuralgrok", "adam"):
    for s in pick:
      sel = [r for r in rows if r["method"] == m and r["step"] == s]
      med = {k: np.nanmedian([np.nan if r[k] is None else r[k] for r in sel])
             for k in ("grad/age", "grad/age_transformed", "weights/entropy",
                       "test/acc")}
      print(f"| {m} | {s} | {med['grad/age']:.2f} | "
            f"{med['grad/age_transformed']:.2f} | "
            f"{med['weights/entropy']:.1f} | {med['test/acc']:.3f} |")
  print(f"\nplots: {os.path.join(out, 'plots', 'age.png')}")


if __name__ == "__main__":
  C.main_guard(main)
