"""The run spec: everything that determines a run's numbers.

:class:`RunSpec` (per-method :class:`ngrok_jax.TrainConfig`, seeds, steps,
evaluation and checkpoint intervals, per-seed sweeps, early stop, a frozen
amplifier, an optional task axis), its validation, its JSON codec (a run
folder's ``config.json``; :func:`load_spec` also reads the ``cross_task.json``
header of the first cross-task run folders), :meth:`RunSpec.diff` (what
``--resume`` refuses) and :func:`check_resume`.  Building one: :mod:`ngrok_jax._src.storage.spec_build`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ngrok_jax._src.training.config import (HPARAMS, METHODS, TrainConfig,
                                            check_hparam)
from ngrok_jax._src.training.cross_task import METHOD as CROSS_METHOD
from ngrok_jax._src.core.fileio import dec_float, enc_float, is_int
from ngrok_jax._src.optim.user_method import ensure_sources

__all__ = ["FORMAT", "CROSS_FORMAT", "STOP_ACC", "EACH",
           "RunSpec", "load_spec", "check_resume", "check_out_dir"]

FORMAT = "ngrok_jax.run/1"
#: The header format (``cross_task.json``) of the first cross-task folders.
CROSS_FORMAT = "ngrok_jax.cross_task/1"
#: Default test accuracy that every seed must hold for ``stop_after``
#: evaluations before a method stops early (``RunSpec.stop_acc``).
STOP_ACC = 0.99
#: ``amplifier_seed`` value: seed i uses the amplifier file's i-th amplifier.
EACH = "each"


def _amp_seed(v):
  return v if v == EACH else int(v)


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything that determines a run's numbers (saved as config.json).

  Attributes:
    configs: method name -> resolved :class:`TrainConfig` (in run order;
      :meth:`TrainConfig.resolve`: no default left as ``None``).
    seeds: the seeds, vmapped within each method.
    steps: training steps per method.
    eval_every: steps per chunk; every seed is evaluated after each chunk.
    checkpoint_every: checkpoint interval in steps (a multiple of
      ``eval_every``); ``None``/0: only at the end of a method and on
      SIGINT/SIGTERM.
    keep_checkpoints: newest checkpoints kept per method.
    hparams: per-seed hyperparameter values (sweeps), ``{name: (v_seed...)}``.
    amplifier: path of a saved amplifier (``neuralgrok-frozen``).
    amplifier_seed: which seed's amplifier in that file (index), or
      ``"each"``: seed i of this run uses the file's amplifier i (the file
      must hold one per seed of this run; paired amplifiers).
    stop_after: stop a method early once every seed has held test accuracy
      >= ``stop_acc`` for this many consecutive evaluations (recorded in the
      summary as ``stopped_early_at``); ``None``/0: run every step.
    stop_acc: the test accuracy of ``stop_after`` (default 0.99).
    tasks: the task axis: empty for a run on its config's task; else >= 2
      tasks trained at once by method :data:`CROSS_METHOD`, one amplifier
      per seed meta-trained across them (:mod:`ngrok_jax.cross_task`; the
      config's ``task`` is the first of them).
    method_sources: where the user's methods among ``configs`` come from
      (their records' ``origin``: ``module:factory``, file, SHA-256), so
      that a resume imports them again (:func:`load_spec`) and a changed
      source shows in :meth:`diff`; empty without a user's method.
  """
  configs: Dict[str, TrainConfig]
  seeds: Tuple[int, ...]
  steps: int
  eval_every: int
  checkpoint_every: Optional[int] = None
  keep_checkpoints: int = 3
  hparams: Dict[str, Tuple[float, ...]] = dataclasses.field(default_factory=dict)
  amplifier: Optional[str] = None
  amplifier_seed: Union[int, str] = 0
  stop_after: Optional[int] = None
  stop_acc: float = STOP_ACC
  tasks: Tuple[str, ...] = ()
  method_sources: Dict[str, Dict[str, str]] = dataclasses.field(
      default_factory=dict)

  @property
  def methods(self) -> List[str]:
    return list(self.configs)

  def validate(self) -> "RunSpec":
    """Raises ValueError naming the field; returns ``self``.

    Returns:
      The spec itself.

    Raises:
      ValueError: a field is invalid (the message names it).
    """
    if not self.configs:
      raise ValueError("methods must name at least one method; valid: "
                       f"{', '.join(METHODS)}")
    for m, cfg in self.configs.items():
      if m not in METHODS:
        raise ValueError(f"unknown method {m!r}; valid methods: "
                         f"{', '.join(METHODS)}")
      if cfg.method != m:
        raise ValueError(f"config of method {m!r} has method={cfg.method!r}")
      if not cfg.resolved:
        raise ValueError(f"config of method {m!r} has defaults left as None "
                         "(build it with TrainConfig.resolve())")
      cfg.validate()  # once per config object: a no-op after resolve()
    if not self.seeds or not all(is_int(s) and s >= 0 for s in self.seeds):
      raise ValueError(f"seeds must be a non-empty list of integers >= 0, "
                       f"got {list(self.seeds)!r}")
    if len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
    for name, lo in (("steps", 1), ("eval_every", 1), ("keep_checkpoints", 1),
                     ("checkpoint_every", 0), ("stop_after", 0),
                     ("amplifier_seed", 0)):
      v = getattr(self, name)
      if name == "amplifier_seed" and v == EACH:
        continue
      if (v is not None or name in ("steps", "eval_every")) and not (
          is_int(v) and v >= lo):
        raise ValueError(f"{name} must be "
                         + ("a positive integer" if lo else
                            "an integer >= 0") + f", got {v!r}")
    if self.eval_every > self.steps:
      raise ValueError(f"eval_every ({self.eval_every}) must be <= steps "
                       f"({self.steps})")
    ce = self.checkpoint_every
    if ce and ce % self.eval_every:
      raise ValueError(f"checkpoint_every ({ce}) must be a multiple of "
                       f"eval_every ({self.eval_every})")
    for name, vals in self.hparams.items():
      if name not in HPARAMS:
        raise ValueError(f"unknown hyperparameter {name!r}; valid: "
                         f"{', '.join(HPARAMS)}")
      if len(vals) != len(self.seeds):
        raise ValueError(f"hyperparameter {name} has {len(vals)} values for "
                         f"{len(self.seeds)} seeds (one value per seed)")
      check_hparam(name, vals)
    frozen = [m for m, c in self.configs.items()
              if c.record.needs_trained_amplifier]
    if frozen and not self.amplifier:
      raise ValueError(f"method {frozen[0]} needs a trained amplifier "
                       "(--amplifier PATH: a run folder or amplifier.msgpack)")
    if isinstance(self.stop_acc, bool) or not isinstance(
        self.stop_acc, (int, float, np.floating)) or not (
            0 <= self.stop_acc <= 1):
      raise ValueError(f"stop_acc must be a number in [0, 1], got "
                       f"{self.stop_acc!r}")
    if self.tasks:
      self._validate_tasks()
    return self

  def _validate_tasks(self) -> None:
    from ngrok_jax._src.core.tasks import TASKS
    tasks = list(self.tasks)
    if len(tasks) < 2 or len(set(tasks)) != len(tasks):
      raise ValueError(f"tasks must be at least 2 distinct tasks, got {tasks}")
    for t in tasks:
      if t not in TASKS:
        raise ValueError(f"unknown task {t!r}; valid tasks: "
                         f"{', '.join(sorted(TASKS))}")
    if self.methods != [CROSS_METHOD]:
      raise ValueError(f"a cross-task amplifier is meta-trained by method "
                       f"{CROSS_METHOD!r} alone, got methods {self.methods}")
    cfg = self.configs[CROSS_METHOD]
    if cfg.task != tasks[0] or cfg.meta_axis_name is not None:
      raise ValueError(f"the config of a run with tasks has the first task "
                       f"({tasks[0]!r}) and no meta_axis_name, got task "
                       f"{cfg.task!r}, meta_axis_name {cfg.meta_axis_name!r}")
    for name in ("stop_after", "amplifier"):
      if getattr(self, name):
        raise ValueError(f"{name} does not apply to a run with tasks")

  def to_dict(self) -> Dict[str, Any]:
    """The JSON of ``config.json`` (``+-inf`` floats as strings).

    Returns:
      A JSON-serialisable dict.
    """
    return dict(
        format=FORMAT,
        methods=self.methods,
        configs={m: _cfg_dict(c) for m, c in self.configs.items()},
        seeds=list(self.seeds), steps=self.steps, eval_every=self.eval_every,
        checkpoint_every=self.checkpoint_every,
        keep_checkpoints=self.keep_checkpoints,
        hparams={k: [enc_float(float(x)) for x in v]
                 for k, v in self.hparams.items()},
        amplifier=self.amplifier, amplifier_seed=self.amplifier_seed,
        stop_after=self.stop_after, stop_acc=self.stop_acc,
        **(dict(tasks=list(self.tasks)) if self.tasks else {}),
        **(dict(method_sources={m: dict(o) for m, o in
                                self.method_sources.items()})
           if self.method_sources else {}))

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
    """Inverse of :meth:`to_dict`; reads every earlier ``config.json``
    (missing keys take their defaults).

    Args:
      d: the dict of a ``config.json``.

    Returns:
      A ``RunSpec`` (not validated yet; a user's method it names is
      validated once registered: :func:`load_spec` imports it again).
    """
    sources = {m: dict(o) for m, o in (d.get("method_sources") or {}).items()}
    configs = {m: _cfg_from_dict(d["configs"][m]) for m in d["methods"]}
    return cls(configs=configs, seeds=tuple(int(s) for s in d["seeds"]),
               steps=int(d["steps"]), eval_every=int(d["eval_every"]),
               checkpoint_every=d.get("checkpoint_every"),
               keep_checkpoints=int(d.get("keep_checkpoints",
                                          _default("keep_checkpoints"))),
               hparams={k: tuple(float(dec_float(x)) for x in v)
                        for k, v in d.get("hparams", {}).items()},
               amplifier=d.get("amplifier"),
               amplifier_seed=_amp_seed(d.get("amplifier_seed",
                                              _default("amplifier_seed"))),
               stop_after=d.get("stop_after") or None,
               stop_acc=float(d.get("stop_acc", STOP_ACC)),
               tasks=tuple(d.get("tasks") or ()), method_sources=sources)

  @classmethod
  def from_cross_header(cls, h: Mapping[str, Any]) -> "RunSpec":
    """The spec of a first-format cross-task folder from its header
    (``cross_task.json``, format :data:`CROSS_FORMAT`).

    Args:
      h: the header dict.

    Returns:
      A ``RunSpec`` with ``tasks`` (not validated yet).
    """
    if h.get("format") != CROSS_FORMAT:
      raise ValueError(f"not a {CROSS_FORMAT} header: {h.get('format')!r}")
    return cls(configs={CROSS_METHOD: _cfg_from_dict(h["config"])},
               seeds=tuple(int(s) for s in h["seeds"]),
               steps=int(h["steps"]), eval_every=int(h["eval_every"]),
               checkpoint_every=h.get("checkpoint_every") or None,
               hparams={k: tuple(float(x) for x in v)
                        for k, v in (h.get("hparams") or {}).items()},
               tasks=tuple(h["tasks"]))

  def diff(self, other: "RunSpec") -> List[str]:
    """Names of the fields that differ (``configs.<method>.<field>``).

    Args:
      other: the spec to compare with.

    Returns:
      A list of field names, empty if the specs are equal.
    """
    a, b = self.to_dict(), other.to_dict()
    out = []
    for k in list(a) + [k for k in b if k not in a]:
      if k == "configs":
        for m in sorted(set(a[k]) | set(b[k])):
          ca, cb = a[k].get(m), b[k].get(m)
          if ca is None or cb is None:
            out.append(f"configs.{m}")
            continue
          out += [f"configs.{m}.{f}" for f in ca if ca[f] != cb.get(f)]
      elif a.get(k) != b.get(k):
        out.append(k)
    return out


def _default(name: str):
  """The default of the :class:`RunSpec` field ``name``."""
  return {f.name: f.default for f in dataclasses.fields(RunSpec)}[name]


def _cfg_dict(cfg: TrainConfig) -> Dict[str, Any]:
  return {k: (list(v) if isinstance(v, tuple) else enc_float(v))
          for k, v in cfg.to_dict().items()}


def _cfg_from_dict(d: Mapping[str, Any]) -> TrainConfig:
  """The config of a saved ``configs.<method>``: as written (every value
  resolved), or, from a folder written before configs were resolved, with
  the ``None`` defaults filled in as the run used them."""
  return TrainConfig.from_dict(
      {k: (dec_float(v) if k in HPARAMS else v) for k, v in d.items()}
  ).with_defaults()


def load_spec(out_dir: str, *, need_methods: bool = True) -> RunSpec:
  """The :class:`RunSpec` saved in a run folder's config.json (or, in a
  first-format cross-task folder, its ``cross_task.json``).

  Args:
    out_dir: the run folder.
    need_methods: the user's methods the folder records must import again
      (a resume); ``False`` (reading the results): one that does not is
      left unregistered.

  Returns:
    The :class:`RunSpec`.

  Raises:
    ValueError: no or no valid ``config.json``, or (``need_methods``) a
      user's method of the run that cannot be imported again.
  """
  path = os.path.join(out_dir, "config.json")
  header = os.path.join(out_dir, "cross_task.json")
  if not os.path.isfile(path) and os.path.isfile(header):
    path = header
  if not os.path.isfile(path):
    raise ValueError(f"{out_dir!r} is not a run folder (no config.json)")
  try:
    with open(path) as f:
      d = json.load(f)
    sources = d.get("method_sources") if path != header else None
  except (ValueError, AttributeError) as e:
    raise ValueError(f"{path} is not a valid run config ({e})") from None
  if isinstance(sources, dict):  # a user's method: imported again first
    try:
      ensure_sources(sources, where=f"the run in {out_dir}")
    except ValueError:
      if need_methods:
        raise
  try:
    if path == header:
      return RunSpec.from_cross_header(d)
    return RunSpec.from_dict(d)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path} is not a valid run config ({e})") from None


def check_out_dir(out_dir: Optional[str], resume: bool) -> None:
  """ValueError unless ``out_dir`` can take a new run (``resume`` false:
  a missing or empty folder, :func:`ngrok_jax._src.storage.runfolder.check_new_folder`)
  or be resumed."""
  if out_dir is None:
    if resume:
      raise ValueError("resume needs out_dir (the run folder)")
    return
  from ngrok_jax._src.storage.runfolder import check_new_folder
  if not resume:
    check_new_folder(out_dir)
  elif os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"out_dir {out_dir!r} exists and is not a folder")


def check_resume(spec: RunSpec, out_dir: Optional[str], resume: bool,
                 force: bool = False) -> List[str]:
  """Validates ``out_dir`` for a new run or a resume; returns the fields in
  which ``spec`` differs from the saved config (only with ``force``).

  Raises ValueError if ``out_dir`` already holds a run and ``resume`` is
  false, or if the configuration differs and ``force`` is false (the
  message names the differing fields).

  Args:
    spec: the run's spec.
    out_dir: the run folder, or None.
    resume: whether the run continues ``out_dir``.
    force: resume even if the configuration differs.

  Returns:
    The names of the differing fields.
  """
  check_out_dir(out_dir, resume)
  if out_dir is None or not resume:
    return []
  if not any(os.path.exists(os.path.join(out_dir, n))
             for n in ("config.json", "cross_task.json")):
    return []
  saved = load_spec(out_dir)
  diff = saved.diff(spec)
  if diff and force:
    from ngrok_jax._src.storage.runfolder import check_change
    check_change(saved, spec, out_dir)  # a field fixing the state: refused
  if diff and not force:
    raise ValueError(f"the configuration differs from the checkpointed run "
                     f"in {out_dir} in: {', '.join(diff)} (use --force to "
                     "resume anyway)")
  return diff
