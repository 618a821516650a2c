"""(a) NeuralGrok vs standard / weight decay / GrokFast / rescaling, five tasks.

For every task, the ``paper-*`` recipe's methods with their own settings:
neuralgrok and rescale (coupled weight decay 1e-3, clipped), adam with the
same weight decay 1e-3 (the authors' baseline), adamw (wd 1), grokfast-ema
(wd 0.005) and grokfast-ma (wd 0.01), all seeds vmapped per method; then,
as a second run folder ``<task>-wd0``, adam (and rescale) without weight
decay: plain Adam, the "standard training" of the grokking literature.
Prints one markdown table (steps to 95% / 99%).

    python -m experiments.compare --quick            # CPU, minutes
    python -m experiments.compare --tasks a*a-b      # paper size, one task
"""
import os

from experiments import _common as C

METHODS = ["neuralgrok", "adam", "adamw", "grokfast-ema", "grokfast-ma",
           "rescale"]


def main():
  p = C.parser(__doc__)
  p.add_argument("--tasks", default=",".join(C.TASKS),
                 help="comma-separated tasks (default: all five)")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--no-wd0", action="store_true",
                 help="skip the adam/rescale runs without weight decay")
  args = p.parse_args()
  dirs = []
  for task in args.tasks.split(","):
    setup = C.task_setup(task, args)
    out = os.path.join(C.out_dir(args, "compare"), task)
    C.run_one(setup, args.methods.split(","), out, args)
    dirs.append(out)
    wd0 = [m for m in ("adam", "rescale") if m in args.methods.split(",")]
    if wd0 and not args.no_wd0:
      out_wd = out + "-wd0"
      C.run_one(setup, wd0, out_wd, args, hparams={"wd": 0.0})
      dirs.append(out_wd)
  C.print_table(dirs, "NeuralGrok vs baselines")


if __name__ == "__main__":
  C.main_guard(main)
