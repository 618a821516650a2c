"""(b) Sweep of the rescaling coefficient c (rescale and neuralgrok).

All values of c run as ONE vmapped program per method: c is a per-seed
hyperparameter array (each value gets --seeds seeds).

    python experiments/sweep_c.py --quick
    python experiments/sweep_c.py --task a*a-b --values 0.25,0.5,1,2,4
    python experiments/sweep_c.py --quick --task a+b --values 0.1,1,10 --wd 1e-3
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def main():
  p = C.parser(__doc__)
  p.add_argument("--task", default="a*a-b")
  p.add_argument("--values", default="0.25,0.5,1,2,4")
  p.add_argument("--methods", default="rescale,neuralgrok")
  p.add_argument("--wd", type=float, default=None,
                 help="model weight decay for every method (default: each "
                      "method's own: rescale 0, neuralgrok 1e-3)")
  args = p.parse_args()
  setup = C.task_setup(args.task, args)
  values = [float(v) for v in args.values.split(",")]
  n = setup["seeds"]
  seeds = list(range(n * len(values)))
  c = [values[i // n] for i in seeds]
  out = C.out_dir(args, "sweep_c")
  hp = {"c": c}
  if args.wd is not None:
    hp["wd"] = args.wd
  C.run_one(setup, args.methods.split(","), out, args, seeds=seeds,
            hparams=hp)
  C.print_table([out], f"rescaling coefficient c on {args.task}")


if __name__ == "__main__":
  C.main_guard(main)
