"""(c) Weight decay values, and the instability the paper reports.

AdamW (decoupled) and Adam (coupled L2) with several weight decays, each as
one vmapped program (wd is a per-seed array).  Besides steps to 95%/99% it
prints, per wd, how unstable training was after reaching 95%: the largest
later drop of test accuracy, and the number of seeds whose test accuracy
fell back below 0.5 after reaching 0.95, and diverged seeds.

    python -m experiments.weight_decay --quick
"""
import numpy as np

from experiments import _common as C
from ngrok_jax.results import load_run, seed_curve
from ngrok_jax.spec import sweep_seeds
from ngrok_jax.tables import md_table


def instability(rows, method, seeds):
  drops, relapses = [], 0
  for s in seeds:
    _, acc = seed_curve(rows, method, s, mask_diverged=False)
    hit = np.nonzero(acc >= 0.95)[0]
    if not hit.size:
      continue
    after = acc[hit[0]:]
    drops.append(float(np.nanmax(np.maximum.accumulate(after) - after)))
    relapses += bool(np.nanmin(after) < 0.5)
  return (max(drops) if drops else None), relapses


def main():
  p = C.parser(__doc__)
  p.add_argument("--task", default="a+b")
  p.add_argument("--values", default="0.01,0.1,1,3,10")
  p.add_argument("--methods", default="adamw,adam")
  args = p.parse_args()
  setup = C.task_setup(args.task, args)
  values = [float(v) for v in args.values.split(",")]
  seeds, hp = sweep_seeds(setup["seeds"], {"wd": values})
  out = C.out_dir(args, "weight_decay")
  C.run_one(setup, args.methods.split(","), out, args, seeds=seeds,
            hparams=hp)
  C.print_table([out], f"weight decay on {args.task}")
  run = load_run(out)
  lines = []
  for m in args.methods.split(","):
    for v in values:
      idx = [i for i, s in enumerate(seeds) if hp["wd"][i] == v]
      drop, rel = instability(run["rows"], m, [seeds[i] for i in idx])
      div = sum(run["summary"]["methods"][m]["diverged_at"][i] is not None
                for i in idx)
      lines.append([m, f"{v:g}", "-" if drop is None else f"{drop:.3f}",
                    f"{rel}/{len(idx)}", f"{div}/{len(idx)}"])
  print(md_table(["method", "wd", "max drop after 95%", "relapses < 0.5",
                  "diverged"], lines))


if __name__ == "__main__":
  C.main_guard(main)
