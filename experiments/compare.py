"""(a) NeuralGrok vs standard / weight decay / GrokFast / rescaling, five tasks.

For every task: adam (wd 0), adam with wd 1e-3 (as a second run folder),
adamw (wd 1), grokfast-ema, grokfast-ma, rescale and neuralgrok, all seeds
vmapped per method; prints one markdown table (steps to 95% / 99%).

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
  args = p.parse_args()
  dirs = []
  for task in args.tasks.split(","):
    setup = C.task_setup(task, args)
    out = os.path.join(C.out_dir(args, "compare"), task)
    C.run_one(setup, args.methods.split(","), out, args)
    dirs.append(out)
    if "adam" in args.methods.split(","):
      out_wd = out + "-adam-wd1e-3"
      C.run_one(setup, ["adam"], out_wd, args, hparams={"wd": 1e-3})
      dirs.append(out_wd)
  C.print_table(dirs, "NeuralGrok vs baselines")


if __name__ == "__main__":
  C.main_guard(main)
