"""Copies the small, publishable part of finished run folders into the repo.

For every run folder under SRC (a folder holding ``config.json``), writes to
the same relative path under DST: ``config.json``, ``summary.json``,
``metrics.jsonl.gz`` (gzip of the per-seed metrics, which pandas reads with
``pd.read_json(path, lines=True)``), the learned amplifier of a NeuralGrok
run (``amplifier.msgpack``, every seed's parameters, which
``runner.load_amplifier``, ``--amplifier`` and ``plots.plot_amplifier`` read,
and its metadata ``amplifier.json``; tens to hundreds of kB) and the plots
named by ``--plots``.  Checkpoints stay behind (they are large).

    python -m experiments.export_results runs/results experiments/results/cpu
"""
import argparse
import gzip
import os
import shutil
import sys


def export(src: str, dst: str, plots=("accuracy.png",)) -> list:
  if not os.path.isdir(src):
    raise ValueError(f"{src!r} is not a folder")
  done = []
  for root, dirs, files in os.walk(src):
    dirs[:] = sorted(d for d in dirs if d != "checkpoints")
    if "config.json" not in files:
      continue
    rel = os.path.relpath(root, src)
    out = os.path.join(dst, rel)
    os.makedirs(out, exist_ok=True)
    for f in ("config.json", "summary.json", "amplifier.json",
              "amplifier.msgpack"):
      if f in files:
        shutil.copyfile(os.path.join(root, f), os.path.join(out, f))
    if "metrics.jsonl" in files:
      with open(os.path.join(root, "metrics.jsonl"), "rb") as fi, \
          gzip.GzipFile(os.path.join(out, "metrics.jsonl.gz"), "wb",
                        mtime=0) as fo:
        shutil.copyfileobj(fi, fo)
    for p in plots:
      f = os.path.join(root, "plots", p)
      if os.path.isfile(f):
        os.makedirs(os.path.join(out, "plots"), exist_ok=True)
        shutil.copyfile(f, os.path.join(out, "plots", p))
    done.append(rel)
  if not done:
    raise ValueError(f"no run folder (config.json) under {src!r}")
  return done


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("src")
  ap.add_argument("dst")
  ap.add_argument("--plots", default="accuracy.png",
                  help="comma-separated plot files to copy (from plots/)")
  a = ap.parse_args()
  try:
    for rel in export(a.src, a.dst, tuple(a.plots.split(","))):
      print(os.path.join(a.dst, rel))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
