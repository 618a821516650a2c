"""(a) NeuralGrok vs standard / weight decay / GrokFast / rescaling, five tasks.

For every task: adam (wd 0), adamw (wd 1), grokfast-ema, grokfast-ma,
rescale and neuralgrok (model weight decay 1e-3, the authors'), all seeds
vmapped per method; then, as a second run folder ``<task>-wd1e-3``, adam and
rescale with the same coupled weight decay 1e-3 as NeuralGrok, so that the
ablation "rescaling without the learned MLP" differs from NeuralGrok in the
MLP only.  Prints one markdown table (steps to 95% / 99%).

    python experiments/compare.py --quick            # CPU, minutes
    python experiments/compare.py --tasks a*a-b      # paper size, one task
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

METHODS = ["neuralgrok", "adam", "adamw", "grokfast-ema", "grokfast-ma",
           "rescale"]


def main():
  p = C.parser(__doc__)
  p.add_argument("--tasks", default=",".join(C.TASKS),
                 help="comma-separated tasks (default: all five)")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--no-same-wd", action="store_true",
                 help="skip the adam/rescale runs with NeuralGrok's wd 1e-3")
  args = p.parse_args()
  dirs = []
  for task in args.tasks.split(","):
    setup = C.task_setup(task, args)
    out = os.path.join(C.out_dir(args, "compare"), task)
    C.run_one(setup, args.methods.split(","), out, args)
    dirs.append(out)
    same_wd = [m for m in ("adam", "rescale") if m in args.methods.split(",")]
    if same_wd and not args.no_same_wd:
      out_wd = out + "-wd1e-3"
      C.run_one(setup, same_wd, out_wd, args, hparams={"wd": 1e-3})
      dirs.append(out_wd)
  C.print_table(dirs, "NeuralGrok vs baselines")


if __name__ == "__main__":
  C.main_guard(main)
