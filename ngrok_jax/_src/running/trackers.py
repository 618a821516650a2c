"""Experiment trackers as runner hooks: TensorBoard and Weights & Biases.

Both are optional (``pip install -e '.[tensorboard]'``, ``'.[wandb]'``) and
are hooks of :mod:`ngrok_jax.runner` (:mod:`ngrok_jax.hooks`): called with
each chunk's metric rows, ``close()`` at the end of each method and
``end_run(out_dir, summary)`` once after the run.  ``ngrok-jax train --log
tensorboard,wandb`` adds them (in process 0 only).

What they receive, the same for both:

* one tracked run per (method, seed): TensorBoard's ``DIR/tensorboard/
  <method>/seed<S>`` (a sweep adds the swept values: ``seed3-c=0.5``),
  W&B's run ``<method>/seed<S>`` with ``group`` = the run folder's name and
  ``job_type`` = the method, so seeds of a method are compared or
  aggregated in the tracker's own UI;
* as hyperparameters: the method's whole :class:`ngrok_jax.TrainConfig`,
  the seed and its index, the swept values, steps, ``eval_every`` and the
  run folder;
* at every evaluation, every numeric value of that seed's ``metrics.jsonl``
  row (``test/acc``, ``train/loss``, ``grad/age``, ..., ``diverged_at``,
  ``hp/*``) at the row's step (non-finite values as NaN/inf);
* at the end of a finished run, one more tracked run ``plots`` (TensorBoard
  ``DIR/tensorboard/plots``, W&B ``<folder>/plots``, ``job_type="plots"``)
  with the PNGs of ``DIR/plots`` as images and the summary (steps to 95%
  and 99% per seed, medians) as text / run summary.

W&B: the project and entity come from the arguments, else
``WANDB_PROJECT`` / ``WANDB_ENTITY``, else project ``ngrok-jax``; the API
key only from ``WANDB_API_KEY`` (never an option or a file written here;
without it the tracker refuses to start unless ``WANDB_MODE`` is
``offline`` or ``disabled``).  Runs are written under ``DIR/wandb`` (offline:
``DIR/wandb/offline-run-*``, uploaded later with ``wandb sync``); their ids
are kept in ``DIR/wandb/ids.json`` so that a resumed run folder continues
the same W&B runs (W&B drops steps it already has).  A resumed TensorBoard
run appends new event files to the same folders.
"""
from __future__ import annotations

import glob
import importlib
import json
import math
import os
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from ngrok_jax._src.core.fileio import atomic_write

__all__ = ["TRACKERS", "TrackerUnavailable", "TensorBoardLogger",
           "WandbLogger", "make_trackers", "run_names", "hyperparameters",
           "scalars"]

#: tracker -> (module to import, the extra of setup.cfg that installs it)
TRACKERS = {"tensorboard": ("tensorboardX", "tensorboard"),
            "wandb": ("wandb", "wandb")}

_NOT_METRICS = ("method", "seed", "step")


class TrackerUnavailable(RuntimeError):
  """A tracker's optional package (or its W&B API key) is missing."""


def _import(tracker: str):
  module, extra = TRACKERS[tracker]
  try:
    return importlib.import_module(module)
  except ImportError:
    raise TrackerUnavailable(
        f"--log {tracker} needs the optional package {module}: "
        f"pip install -e '.[{extra}]'") from None


def run_names(spec) -> List[str]:
  """The tracked-run name of each seed index: ``seed<S>``, plus the swept
  values (``seed3-c=0.5``)."""
  names = []
  for i, seed in enumerate(spec.seeds):
    sweep = "".join(f"-{k}={float(v[i]):g}" for k, v in spec.hparams.items())
    names.append(f"seed{int(seed)}{sweep}")
  return names


def _plain(v: Any) -> Any:
  if isinstance(v, (bool, int, float, str)):
    return v
  if v is None:
    return "None"
  if isinstance(v, (list, tuple)):
    return ",".join(map(str, v))
  return str(v)


def hyperparameters(spec, method: str, index: int,
                    out_dir: Optional[str]) -> Dict[str, Any]:
  """Flat ``{name: bool/int/float/str}`` of one (method, seed index): the
  method's TrainConfig, the seed, the swept values and the run's budget."""
  hp = {k: _plain(v) for k, v in spec.configs[method].to_dict().items()}
  hp.update(seed=int(spec.seeds[index]), seed_index=int(index),
            steps=int(spec.steps), eval_every=int(spec.eval_every),
            run_folder=os.path.abspath(out_dir) if out_dir else "None")
  for k, v in spec.hparams.items():
    hp[f"hp/{k}"] = float(v[index])
  return hp


def scalars(row: Mapping[str, Any]) -> Dict[str, float]:
  """The numeric values of a metric row (``"nan"``/``"inf"`` strings, as
  ``metrics.jsonl`` encodes non-finite floats, become floats; None and
  other strings are left out)."""
  out = {}
  for k, v in row.items():
    if k in _NOT_METRICS or v is None or isinstance(v, bool):
      continue
    if isinstance(v, (int, float)):
      out[k] = float(v)
    elif isinstance(v, str):
      try:
        out[k] = float(v)
      except ValueError:
        pass
  return out


def _plot_files(out_dir: Optional[str]) -> List[str]:
  if not out_dir:
    return []
  return sorted(glob.glob(os.path.join(out_dir, "plots", "*.png")))


def _summary_text(summary: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
  """A markdown table of steps to 95%/99% per method, and flat values."""
  lines = ["| method | steps to 95% per seed | median | steps to 99% per "
           "seed | median |", "|---|---|---|---|---|"]
  flat = {}
  for m, per in summary.get("methods", {}).items():
    t95, t99 = per.get("t95") or {}, per.get("t99") or {}
    lines.append(f"| {m} | {per.get('steps_to_95')} | {t95.get('median')} "
                 f"| {per.get('steps_to_99')} | {t99.get('median')} |")
    for name, t in (("t95", t95), ("t99", t99)):
      for k in ("median", "success_rate"):
        if isinstance(t.get(k), (int, float)):
          flat[f"{m}/{name}_{k}"] = float(t[k])
  return "\n".join(lines), flat


# ------------------------------------------------------------- TensorBoard
class TensorBoardLogger:
  """Event files under ``logdir`` (default ``out_dir/tensorboard``): one
  folder per (method, seed), plus ``plots`` at the end (tensorboardX)."""

  def __init__(self, out_dir: Optional[str], spec,
               logdir: Optional[str] = None):
    self.tbx = _import("tensorboard")
    if logdir is None and out_dir is None:
      raise ValueError("TensorBoardLogger needs out_dir or logdir")
    self.logdir = logdir or os.path.join(out_dir, "tensorboard")
    self.out_dir, self.spec = out_dir, spec
    self.names = run_names(spec)
    self.writers: Dict[Tuple[str, int], Any] = {}

  def _writer(self, method: str, i: int):
    w = self.writers.get((method, i))
    if w is None:
      from tensorboardX.summary import hparams
      w = self.tbx.SummaryWriter(
          logdir=os.path.join(self.logdir, method, self.names[i]))
      hp = hyperparameters(self.spec, method, i, self.out_dir)
      for s in hparams(hp, {"test/acc": 0.0, "test/loss": 0.0}):
        w.file_writer.add_summary(s)
      w.add_text("config", "```\n" + json.dumps(hp, indent=1) + "\n```")
      self.writers[(method, i)] = w
    return w

  def __call__(self, chunk) -> None:
    for i, row in enumerate(chunk.rows):
      w = self._writer(chunk.method, i)
      for k, v in scalars(row).items():
        w.add_scalar(k, v, int(row["step"]))
      w.flush()

  def close(self) -> None:
    for w in self.writers.values():
      w.close()
    self.writers.clear()

  def end_run(self, out_dir: Optional[str], summary) -> None:
    self.close()
    if summary is None:  # interrupted or failed: nothing more to add
      return
    import matplotlib.image as mpimg
    with self.tbx.SummaryWriter(logdir=os.path.join(self.logdir,
                                                    "plots")) as w:
      text, flat = _summary_text(summary)
      w.add_text("summary", text)
      for k, v in flat.items():
        if math.isfinite(v):
          w.add_scalar(f"summary/{k}", v, 0)
      for path in _plot_files(out_dir):
        img = mpimg.imread(path)[..., :3]
        w.add_image("plots/" + os.path.splitext(os.path.basename(path))[0],
                    img, 0, dataformats="HWC")


# ------------------------------------------------------- Weights & Biases
_OFFLINE = ("offline", "disabled", "dryrun")


class WandbLogger:
  """One W&B run per (method, seed), written under ``out_dir/wandb``; the
  API key only from ``WANDB_API_KEY``."""

  def __init__(self, out_dir: Optional[str], spec,
               project: Optional[str] = None, entity: Optional[str] = None):
    self.wandb = _import("wandb")
    mode = os.environ.get("WANDB_MODE", "online").strip().lower()
    if mode not in _OFFLINE and not os.environ.get("WANDB_API_KEY"):
      raise TrackerUnavailable(
          "--log wandb needs the API key in the environment variable "
          "WANDB_API_KEY (or WANDB_MODE=offline to log without a network)")
    if out_dir is None:
      raise ValueError("WandbLogger needs the run folder out_dir")
    self.out_dir, self.spec = os.path.abspath(out_dir), spec
    self.project = (project or os.environ.get("WANDB_PROJECT") or
                    "ngrok-jax")
    self.entity = entity or os.environ.get("WANDB_ENTITY") or None
    self.group = os.path.basename(os.path.normpath(self.out_dir))
    self.names = run_names(spec)
    self.runs: Dict[Tuple[str, int], Any] = {}

  @property
  def ids_file(self) -> str:
    return os.path.join(self.out_dir, "wandb", "ids.json")

  def _id(self, key: str) -> str:
    """The W&B run id of ``key``, kept in ``wandb/ids.json`` (a resume
    continues the same run)."""
    ids = {}
    if os.path.exists(self.ids_file):
      with open(self.ids_file) as f:
        ids = json.load(f)
    if key not in ids:
      ids[key] = uuid.uuid4().hex[:12]
      os.makedirs(os.path.dirname(self.ids_file), exist_ok=True)
      atomic_write(self.ids_file, json.dumps(ids, indent=1) + "\n")
    return ids[key]

  def _init(self, name: str, job_type: str, config: Mapping[str, Any]):
    return self.wandb.init(
        project=self.project, entity=self.entity, dir=self.out_dir,
        group=self.group, job_type=job_type, name=name, id=self._id(name),
        resume="allow", reinit="create_new", config=dict(config),
        settings=self.wandb.Settings(console="off", silent=True))

  def _run(self, method: str, i: int):
    r = self.runs.get((method, i))
    if r is None:
      r = self._init(f"{method}/{self.names[i]}", method,
                     hyperparameters(self.spec, method, i, self.out_dir))
      self.runs[(method, i)] = r
    return r

  def __call__(self, chunk) -> None:
    for i, row in enumerate(chunk.rows):
      self._run(chunk.method, i).log(scalars(row), step=int(row["step"]))

  def close(self) -> None:
    for r in self.runs.values():
      r.finish()
    self.runs.clear()

  def end_run(self, out_dir: Optional[str], summary) -> None:
    self.close()
    if summary is None:
      return
    r = self._init(f"{self.group}/plots", "plots",
                   dict(self.spec.to_dict(), run_folder=self.out_dir))
    try:
      text, flat = _summary_text(summary)
      r.summary.update(flat)
      images = {"plots/" + os.path.splitext(os.path.basename(p))[0]:
                self.wandb.Image(p) for p in _plot_files(out_dir)}
      r.log(dict(images, summary=self.wandb.Html(
          "<pre>" + text + "</pre>")))
    finally:
      r.finish()


def make_trackers(names: Iterable[str], out_dir: Optional[str], spec, *,
                  wandb_project: Optional[str] = None,
                  wandb_entity: Optional[str] = None) -> List[Any]:
  """The tracker hooks named (``"tensorboard"``, ``"wandb"``).

  Raises:
    TrackerUnavailable: a tracker's optional package is not installed (the
      message names the extra to install) or W&B has no API key.
    ValueError: an unknown name.
  """
  hooks = []
  for name in names:
    if name == "tensorboard":
      hooks.append(TensorBoardLogger(out_dir, spec))
    elif name == "wandb":
      hooks.append(WandbLogger(out_dir, spec, wandb_project, wandb_entity))
    else:
      raise ValueError(f"unknown tracker {name!r}; choose from "
                       f"{', '.join(TRACKERS)}")
  return hooks
