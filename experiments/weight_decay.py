"""(c) Weight decay values, and the instability the paper reports.

AdamW (decoupled) and Adam (coupled L2) with several weight decays, each as
one vmapped program (wd is a per-seed array).  Besides steps to 95%/99% it
prints, per wd, how unstable training was after reaching 95%: the largest
later drop of test accuracy, and the number of seeds whose test accuracy
fell back below 0.5 after reaching 0.95, and diverged seeds.

    python experiments/weight_decay.py --quick
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from ngrok_jax import runner  # noqa: E402


def instability(rows, method, seeds):
  drops, relapses = [], 0
  for s in seeds:
    sel = sorted((r for r in rows if r["method"] == method and
                  r["seed"] == s), key=lambda r: r["step"])
    acc = np.array([np.nan if r["test/acc"] is None else r["test/acc"]
                    for r in sel])
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
  n = setup["seeds"]
  seeds = list(range(n * len(values)))
  wd = [values[i // n] for i in seeds]
  out = C.out_dir(args, "weight_decay")
  C.run_one(setup, args.methods.split(","), out, args, seeds=seeds,
            hparams={"wd": wd})
  C.print_table([out], f"weight decay on {args.task}")
  rows = runner.read_metrics(out)
  print("| method | wd | max drop after 95% | relapses < 0.5 | diverged |")
  print("|---|---|---|---|---|")
  summary = runner.load_run(out)["summary"]
  for m in args.methods.split(","):
    for v in values:
      idx = [i for i in seeds if wd[i] == v]
      drop, rel = instability(rows, m, idx)
      div = sum(summary["methods"][m]["diverged_at"][i] is not None
                for i in idx)
      print(f"| {m} | {v:g} | {'-' if drop is None else f'{drop:.3f}'} | "
            f"{rel}/{len(idx)} | {div}/{len(idx)} |")


if __name__ == "__main__":
  C.main_guard(main)
