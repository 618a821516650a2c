"""(e) Transfer: an amplifier trained on one task, frozen, on another.

For every (source, target) pair: the amplifier NeuralGrok learned on the
source task (seed ``--amplifier-seed`` of the source run) is frozen
(``neuralgrok-frozen``: no meta step) and trains a fresh transformer on the
target task, all seeds vmapped.  Sources come from finished runs of
``compare.py`` (``<source-runs>/<task>``, which hold ``amplifier.msgpack``);
a source not found there is trained first (NeuralGrok only) into
``<out>/source-<task>``.  The amplifier keeps its own width (the target
model's amplifier size is the source's).

Prints the matrix of steps to 95% test accuracy (median, successes/seeds),
source x target, with the target's own NeuralGrok and Adam runs from the
compare folder as reference rows when they exist.

    python -m experiments.transfer --quick          # after compare.py --quick
    python -m experiments.transfer --sources a+b --targets a-b,a*b
"""
import os

from experiments import _common as C
from ngrok_jax.results import load_run
from ngrok_jax.tables import md_table, steps_text


def _cell(summary, method, t=95):
  per = summary["methods"].get(method)
  return "-" if per is None else steps_text(per[f"t{t}"])


def _has_amplifier(d):
  return os.path.isfile(os.path.join(d, "amplifier.msgpack"))


def main():
  p = C.parser(__doc__)
  p.add_argument("--sources", default="a+b,a-b,a*b",
                 help="comma-separated source tasks")
  p.add_argument("--targets", default="a+b,a-b,a*b",
                 help="comma-separated target tasks")
  p.add_argument("--source-runs", default=None,
                 help="folder of compare.py runs (<folder>/<task>); default:"
                      " runs/experiments/compare[-quick]")
  p.add_argument("--amplifier-seed", type=int, default=0,
                 help="which seed's amplifier of the source run (index)")
  args = p.parse_args()
  sources = args.sources.split(",")
  targets = args.targets.split(",")
  for t in sources + targets:
    if t not in C.TASKS + tuple(C.BORROWED):
      raise ValueError(f"unknown task {t!r}; valid tasks: "
                       f"{', '.join(C.TASKS + tuple(C.BORROWED))}")
  base = C.out_dir(args, "transfer")
  runs = args.source_runs or C.out_dir(args, "compare")
  src_dir = {}
  for s in sources:
    d = os.path.join(runs, s)
    if not _has_amplifier(d):
      d = os.path.join(base, f"source-{s}")
      C.run_one(C.task_setup(s, args), ["neuralgrok"], d, args)
    src_dir[s] = d
  matrix = {}
  for t in targets:
    setup = C.task_setup(t, args)
    for s in sources:
      out = os.path.join(base, f"{s}__to__{t}")
      matrix[s, t] = C.run_one(setup, ["neuralgrok-frozen"], out, args,
                               amplifier=src_dir[s],
                               amplifier_seed=args.amplifier_seed)
  lines = [[s] + [_cell(matrix[s, t], "neuralgrok-frozen") for t in targets]
           for s in sources]
  for m in ("neuralgrok", "adam"):
    cells = []
    for t in targets:
      d = os.path.join(runs, t)
      cells.append(_cell(load_run(d)["summary"], m)
                   if os.path.isfile(os.path.join(d, "summary.json")) else
                   "-")
    lines.append([f"({m} on the target, {runs})"] + cells)
  table = md_table(["frozen amplifier from \\ target"] + targets, lines)
  print("\n## Transfer: steps to 95% test accuracy, median (successes/seeds)"
        "\n\n" + table + "\n", flush=True)


if __name__ == "__main__":
  C.main_guard(main)
