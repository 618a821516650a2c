"""(b) Sweep of the rescaling coefficient c (rescale and neuralgrok).

All values of c run as ONE vmapped program per method: c is a per-seed
hyperparameter array (each value gets --seeds seeds).

    python -m experiments.sweep_c --quick
    python -m experiments.sweep_c --task a*a-b --values 0.25,0.5,1,2,4
    python -m experiments.sweep_c --quick --task a+b --values 0.1,1,10 --wd 1e-3
"""
from experiments import _common as C
from ngrok_jax.spec import sweep_seeds


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
  seeds, hp = sweep_seeds(setup["seeds"], {"c": values})
  out = C.out_dir(args, "sweep_c")
  if args.wd is not None:
    hp["wd"] = args.wd
  C.run_one(setup, args.methods.split(","), out, args, seeds=seeds,
            hparams=hp)
  C.print_table([out], f"rescaling coefficient c on {args.task}")


if __name__ == "__main__":
  C.main_guard(main)
