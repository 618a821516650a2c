"""Turn a meta-training run folder into a shipped learned rule.

Reads the folder ``experiments/meta_train.py`` wrote (``rule.msgpack``,
``rule_config.json``, ``meta_config.json``, ``metrics.jsonl``) and writes
the package data ``<dest>/<name>.msgpack`` and ``<dest>/<name>.json`` (the
rule's config, the meta-training command and settings, and its cost:
seconds per outer step and in total, wall and CPU), which
:func:`ngrok_jax.pretrained_rule` loads.

    python -m experiments.export_rule runs/meta_rule --name arith-pes-cpu
    python -m experiments.export_rule runs/meta_rule --name x --dest /tmp/r \\
        --command "python -m experiments.meta_train --out runs/meta_rule ..."

Without ``--command`` the command is rebuilt from ``meta_config.json``
with ``--outer-steps`` the number of outer steps the folder holds (the same
run: meta-training is deterministic given its arguments).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from ngrok_jax import load_rule
from ngrok_jax.pretrained import RULES_DIR, write_rule_files


def _rows(folder: str) -> List[Dict[str, Any]]:
  path = os.path.join(folder, "metrics.jsonl")
  if not os.path.isfile(path):
    raise ValueError(f"{folder!r} has no metrics.jsonl (not a meta-training "
                     "folder)")
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def command_of(folder: str, meta: Dict[str, Any], outer_steps: int) -> str:
  """The ``experiments.meta_train`` command of a run folder's settings.

  Args:
    folder: the run folder (its ``--out``).
    meta: its ``meta_config.json``.
    outer_steps: the ``--outer-steps`` to name.

  Returns:
    The command line.
  """
  parts = ["python -m experiments.meta_train", f"--out {folder}"]
  for k, v in meta.items():
    parts.append(f"--{k.replace('_', '-')} {v}")
  parts.append(f"--outer-steps {outer_steps}")
  return " ".join(parts)


def cost(rows: List[Dict[str, Any]], compiled: int = 1) -> Dict[str, Any]:
  """Meta-training cost from the step rows of ``metrics.jsonl``.

  Args:
    rows: every metrics row (probe rows are ignored).
    compiled: the first outer steps that compiled a program (one per
      training prime), left out of the per-step medians.

  Returns:
    ``outer_steps``, ``first_step_s`` (compilation included),
    ``compile_steps_s`` (the first ``compiled`` steps), the median wall
    and CPU seconds per later outer step, and the wall and CPU totals.
  """
  st = [r for r in rows if "meta_loss" in r]
  if not st:
    raise ValueError("the run folder holds no outer step")
  later = st[compiled:] or st
  return dict(outer_steps=len(st), first_step_s=st[0]["seconds"],
              compile_steps_s=[r["seconds"] for r in st[:compiled]],
              s_per_outer_step=float(np.median([r["seconds"] for r in later])),
              cpu_s_per_outer_step=float(np.median(
                  [r["cpu_seconds"] for r in later])),
              total_wall_s=float(sum(r["seconds"] for r in st)),
              total_cpu_s=float(sum(r["cpu_seconds"] for r in st)))


def export(folder: str, name: str, dest: str = RULES_DIR,
           command: Optional[str] = None) -> Dict[str, Any]:
  """Writes the package files of the run in ``folder``.

  Args:
    folder: a meta-training run folder.
    name: the rule's name.
    dest: the output folder (default: the package's rules).
    command: the exact command (default: rebuilt from the folder).

  Returns:
    The metadata written to ``<name>.json`` (without ``config``).
  """
  theta, config = load_rule(folder)
  with open(os.path.join(folder, "meta_config.json")) as f:
    meta = json.load(f)
  rows = _rows(folder)
  c = cost(rows, len(str(meta.get("primes", "")).split(",")))
  probes = [r for r in rows if "dist_adam" in r]
  info = dict(command=command or command_of(folder, meta, c["outer_steps"]),
              meta_config=meta, cost=c,
              last_probe=probes[-1] if probes else None)
  write_rule_files(dest, name, theta, config, info)
  return info


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
  p.add_argument("folder", help="a meta-training run folder")
  p.add_argument("--name", required=True, help="the rule's name")
  p.add_argument("--dest", default=RULES_DIR,
                 help="output folder (default: the package's rules)")
  p.add_argument("--command", default=None,
                 help="the exact meta-training command (default: rebuilt "
                 "from meta_config.json)")
  args = p.parse_args(argv)
  try:
    info = export(args.folder, args.name, args.dest, args.command)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  c = info["cost"]
  print(f"wrote {args.name} to {args.dest}: {c['outer_steps']} outer steps, "
        f"{c['s_per_outer_step']:.2f} s per outer step (median), "
        f"{c['total_wall_s'] / 60:.1f} min in total")


if __name__ == "__main__":
  main()
