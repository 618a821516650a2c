"""The folder of ``experiments/meta_train.py``: what it may write into,
the metrics rows a checkpoint covers, and the one-line failures.

A meta-training folder holds ``meta_config.json`` (its settings); a new
run needs a missing or empty folder, a rerun the same settings, and a
training run folder of ``ngrok-jax train`` is refused.  A checkpoint
records how many rows of ``metrics.jsonl`` it covers (``num_rows``; the
file is appended, never rewritten); rows past it (appended before a kill)
are cut on resume.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List

from ngrok_jax import runfolder
from ngrok_jax.checkpoint import CheckpointError
from ngrok_jax.hooks import RunInterrupted
from ngrok_jax.results import METRICS_FILE, write_metrics

__all__ = ["CONFIG", "check_folder", "rows_of", "error_exit"]

CONFIG = "meta_config.json"


def check_folder(out: str, text: str) -> None:
  """ValueError unless ``out`` can take this meta-training: missing, empty,
  or a meta-training folder of the same settings (``text``, the
  ``meta_config.json`` to write); a training run folder or files of
  anything else are refused.  NotADirectoryError for a file."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise NotADirectoryError(f"--out {out} exists and is not a folder")
  names = sorted(os.listdir(out)) if os.path.isdir(out) else []
  if {"config.json", "cross_task.json"} & set(names):
    raise ValueError(f"{out} is a training run folder (ngrok-jax train), not "
                     "a meta-training one; choose a new --out")
  if CONFIG in names:
    with open(os.path.join(out, CONFIG)) as f:
      try:
        old = json.load(f)
      except ValueError:
        old = None
    if old != json.loads(text):
      raise ValueError(f"{out} holds a run with other settings; use "
                       "another --out")
  elif names:
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    raise ValueError(f"{out} holds files that are not a meta-training run "
                     f"({shown}); choose a new or empty --out")


def rows_of(out: str, meta: Dict[str, Any], step: int) -> List[dict]:
  """The metrics rows a checkpoint covers; rows past it are cut from
  ``metrics.jsonl`` (a run killed after appending them).  The first format
  kept the rows in the checkpoint: the file is rewritten from them."""
  if "rows" in meta:
    rows = list(meta["rows"])
    write_metrics(out, rows)
    return rows
  n, path = int(meta["num_rows"]), os.path.join(out, METRICS_FILE)
  rows, size = [], 0
  if n and os.path.isfile(path):
    with open(path, "rb") as f:
      for line in f:
        if len(rows) == n or not line.endswith(b"\n"):
          break
        rows.append(json.loads(line))
        size += len(line)
  if len(rows) < n:
    raise ValueError(f"{path} holds {len(rows)} rows, the checkpoint of "
                     f"outer step {step} covers {n}: the file was cut or "
                     "replaced")
  if os.path.exists(path) and os.path.getsize(path) > size:
    os.truncate(path, size)
  return rows


def error_exit(e: BaseException) -> int:
  """Prints the one line of a failed ``meta_train.run`` and returns its exit
  status (re-raises an exception that is not a user's or the
  environment's)."""
  if isinstance(e, RunInterrupted):
    print(f"meta_train: {e}", file=sys.stderr)
    return 128 + int(e.signum)
  msg = " ".join(str(e).split())
  if runfolder.is_disk_full(e):
    msg, code = "disk full (no space left on device); free space, then rerun", \
        runfolder.EXIT_DISK_FULL
  elif isinstance(e, OSError):
    code = 3  # the environment: permissions, a file at --out, ...
  elif isinstance(e, CheckpointError):
    code = 1
  elif isinstance(e, ValueError):
    code = 2
  else:
    raise e
  print(f"meta_train: error: {msg}", file=sys.stderr)
  return code
