"""(e) Transfer: an amplifier trained on one task, frozen, on another.

1. neuralgrok on the source task (saves amplifier.msgpack);
2. on the target task: neuralgrok-frozen (that amplifier, no meta step),
   neuralgrok (learned from scratch) and adam, all seeds vmapped.

The target model must use the same amplifier size; the source's size wins.

    python experiments/transfer.py --quick
    python experiments/transfer.py --source a+b --target a-b
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def main():
  p = C.parser(__doc__)
  p.add_argument("--source", default="a+b")
  p.add_argument("--target", default="a-b")
  p.add_argument("--amplifier-seed", type=int, default=0)
  args = p.parse_args()
  base = C.out_dir(args, "transfer")
  src = C.task_setup(args.source, args)
  src_out = os.path.join(base, f"source-{args.source}")
  C.run_one(src, ["neuralgrok"], src_out, args)
  tgt = C.task_setup(args.target, args)
  tgt["config"]["amp_hidden"] = src["config"]["amp_hidden"]
  tgt_out = os.path.join(base, f"target-{args.target}")
  C.run_one(tgt, ["neuralgrok-frozen", "neuralgrok", "adam"], tgt_out, args,
            amplifier=src_out, amplifier_seed=args.amplifier_seed)
  C.print_table([src_out, tgt_out],
                f"transfer {args.source} -> {args.target}")


if __name__ == "__main__":
  C.main_guard(main)
