"""The run spec: everything that determines a run's numbers, its building
and its loading.

:class:`RunSpec` (per-method :class:`ngrok_jax.TrainConfig`, seeds, steps,
evaluation and checkpoint intervals, per-seed sweeps, early stop, a frozen
amplifier, an optional task axis), its validation, its JSON codec (a run
folder's ``config.json``; :func:`load_spec` also reads the ``cross_task.json``
header of the first cross-task run folders), :meth:`RunSpec.diff` (what
``--resume`` refuses) and :func:`check_resume`.  Building one:
:func:`make_spec`, the one configuration function (a preset or a saved spec
as the starting point, a config, methods, seeds, per-method overrides,
per-seed hyperparameters or a sweep, a frozen amplifier, a task axis;
validated), and :func:`sweep_seeds` (seeds x sweep values).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ngrok_jax._src.core.fileio import dec_float, enc_float, is_int
from ngrok_jax._src.core.tasks import TASKS
from ngrok_jax._src.optim.registry import (DEFAULT_METHOD, DEFAULT_METHODS,
                                           get_method)
from ngrok_jax._src.optim.user_method import ensure_sources, resolve_method
from ngrok_jax._src.training import presets
from ngrok_jax._src.training.config import (HPARAMS, METHODS, TrainConfig,
                                            check_hparam)
from ngrok_jax._src.training.cross_task import METHOD as CROSS_METHOD
from ngrok_jax._src.training.cross_task import configs as task_configs
from ngrok_jax._src.storage.ampfile import check_fits, load_amplifier
from ngrok_jax._src.storage.runfolder import check_change, check_new_folder

__all__ = ["FORMAT", "CROSS_FORMAT", "STOP_ACC", "EACH",
           "RunSpec", "load_spec", "check_resume", "check_out_dir",
           "make_spec", "sweep_seeds"]

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
  a missing or empty folder,
  :func:`ngrok_jax._src.storage.runfolder.check_new_folder`) or be
  resumed."""
  if out_dir is None:
    if resume:
      raise ValueError("resume needs out_dir (the run folder)")
    return
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
    check_change(saved, spec, out_dir)  # a field fixing the state: refused
  if diff and not force:
    raise ValueError(f"the configuration differs from the checkpointed run "
                     f"in {out_dir} in: {', '.join(diff)} (use --force to "
                     "resume anyway)")
  return diff


# ------------------------------------------------------- building a spec
def _base_config(config) -> TrainConfig:
  if config is None:
    return TrainConfig()
  if isinstance(config, TrainConfig):
    return config
  if isinstance(config, Mapping):
    return TrainConfig.from_dict(dict(config))
  raise ValueError(f"config must be a TrainConfig or a dict, got "
                   f"{type(config).__name__}")


def _seed_tuple(seeds) -> Tuple[int, ...]:
  if is_int(seeds):
    if seeds < 1:
      raise ValueError(f"seeds must be a positive number of seeds or a list "
                       f"of seeds, got {seeds}")
    return tuple(range(int(seeds)))
  try:
    return tuple(seeds)
  except TypeError:
    raise ValueError(f"seeds must be an int or a list of ints, got "
                     f"{seeds!r}") from None


#: make_spec's defaults: seeds, steps and eval_every here, the others the
#: :class:`RunSpec` fields' own.
_DEFAULTS = dict(seeds=4, steps=1000, eval_every=100, **{
    f.name: f.default for f in dataclasses.fields(RunSpec)
    if f.name in ("checkpoint_every", "keep_checkpoints", "amplifier_seed",
                  "stop_after", "stop_acc")})


def _starting_point(config, preset, base) -> Dict[str, Any]:
  """The values that arguments left as None take: a saved spec's (``base``),
  a preset's with the ``config`` fields merged in, or the defaults."""
  if base is not None:
    if preset is not None:
      raise ValueError("preset and base cannot be combined (a saved run has "
                       "its configuration)")
    fields = dict(config or {})
    first = next(iter(base.configs.values()))
    per = {m: {k: v for k, v in dataclasses.replace(c, **fields).to_dict(
        ).items() if k != "method"} for m, c in base.configs.items()}
    return dict(
        methods=base.methods, seeds=list(base.seeds), steps=base.steps,
        eval_every=base.eval_every, checkpoint_every=base.checkpoint_every,
        keep_checkpoints=base.keep_checkpoints, amplifier=base.amplifier,
        amplifier_seed=base.amplifier_seed, stop_after=base.stop_after,
        stop_acc=base.stop_acc, tasks=base.tasks, hparams=base.hparams,
        config=dataclasses.replace(first, **fields), method_config=per)
  if preset is not None:
    pre = presets.merge(presets.get_preset(preset) if isinstance(preset, str)
                        else preset, dict(config or {}))
    return dict(_DEFAULTS, methods=pre["methods"], seeds=pre["seeds"],
                steps=pre["steps"], eval_every=pre["eval_every"],
                checkpoint_every=pre.get("checkpoint_every"),
                stop_after=pre.get("stop_after"),
                stop_acc=pre.get("stop_acc", STOP_ACC),
                config=_base_config(pre["config"]),
                method_config=pre.get("method_config", {}))
  return dict(_DEFAULTS, config=_base_config(config), method_config={})


def _per_seed(hparams, n: int) -> Dict[str, Tuple[float, ...]]:
  """Per-seed hyperparameters: one value broadcast to every seed."""
  hp = {}
  for k, v in (hparams or {}).items():
    arr = np.asarray(v, np.float64)
    if arr.ndim == 0:
      arr = np.full((n,), float(arr))
    if arr.ndim != 1:
      raise ValueError(f"hyperparameter {k} must be one value or a list, got "
                       f"shape {arr.shape}")
    hp[k] = tuple(float(x) for x in arr)
  return hp


def make_spec(config: Union[TrainConfig, Mapping[str, Any], None] = None,
              methods: Union[str, Sequence[str], None] = None,
              seeds: Union[int, Sequence[int], None] = None,
              steps: Optional[int] = None, eval_every: Optional[int] = None,
              *, preset: Union[str, Mapping[str, Any], None] = None,
              base: Optional[RunSpec] = None,
              method_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
              hparams: Optional[Mapping[str, Any]] = None,
              sweep=None, checkpoint_every: Optional[int] = None,
              keep_checkpoints: Optional[int] = None,
              amplifier: Optional[str] = None,
              amplifier_seed: Union[int, str, None] = None,
              stop_after: Optional[int] = None,
              stop_acc: Optional[float] = None,
              tasks: Optional[Sequence[str]] = None) -> RunSpec:
  """Builds and validates a :class:`RunSpec`: the one place where a run's
  configuration is assembled (:func:`ngrok_jax.runner.run`, the command
  line, the experiment scripts).  An argument left as None takes the value
  of ``base`` (a saved run), else of ``preset``, else the default (seeds 4,
  steps 1000, eval_every 100, keep_checkpoints 3, amplifier_seed 0).

  Args:
    config: the base :class:`ngrok_jax.TrainConfig`, its dict, or None;
      with ``preset`` or ``base``, the fields set over theirs (and over
      every per-method setting).
    methods: method names (a list or a comma-separated string), a user's
      method as ``module:factory`` (imported and registered,
      :func:`ngrok_jax.register_method`); None: ``neuralgrok, adam`` (with
      ``tasks``: ``neuralgrok``).
    seeds: the number of seeds (0..n-1) or the seeds.
    steps: training steps per method.
    eval_every: steps between evaluations.
    preset: a preset name (:mod:`ngrok_jax.presets`) or preset dict.
    base: a saved :class:`RunSpec` (a resume with options on top).
    method_overrides: per-method config fields (over the preset's).
    hparams: swept per-seed hyperparameter values (one value: every seed).
    sweep: ``{name: values}``: every value gets every seed
      (:func:`sweep_seeds`); not with ``hparams``.
    checkpoint_every: steps between checkpoints (None/0: only at the end).
    keep_checkpoints: how many checkpoints to keep.
    amplifier: a saved amplifier file or run folder.
    amplifier_seed: the index of the seed whose amplifier is used, or
      ``"each"``.
    stop_after: evaluations every seed must hold ``stop_acc`` to stop.
    stop_acc: the accuracy of ``stop_after``.
    tasks: a task axis (>= 2 tasks; the config's task becomes the first),
      or None.

  Returns:
    A validated :class:`RunSpec`.
  """
  d = _starting_point(config, preset, base)

  def pick(v, name):
    return d.get(name) if v is None else v
  tasks = tuple(pick(tasks, "tasks") or ())
  if methods is None:
    methods = d.get("methods") or ([DEFAULT_METHOD] if tasks else
                                   list(DEFAULT_METHODS))
  if isinstance(methods, str):
    methods = [m.strip() for m in methods.split(",") if m.strip()]
  methods = [resolve_method(m) for m in methods]
  method_overrides = {resolve_method(m): v for m, v in
                      (method_overrides or {}).items()}
  if len(set(methods)) != len(methods):
    raise ValueError(f"methods must be distinct (a method is listed twice), "
                     f"got {methods}")
  for m in list(methods) + list(method_overrides or {}):
    if m not in METHODS:
      raise ValueError(f"unknown method {m!r}; valid methods: "
                       f"{', '.join(METHODS)}")
  if sweep and hparams:
    raise ValueError("give per-seed hparams or a sweep, not both")
  if sweep:  # a saved run's seeds count as a number of seeds
    seeds, hp = sweep_seeds(
        pick(seeds, "seeds") if base is None else
        (len(base.seeds) if seeds is None else seeds), sweep)
  else:
    seeds = pick(seeds, "seeds")
    hp = hparams if hparams is not None else d.get("hparams")
  seeds = _seed_tuple(seeds)
  hp = _per_seed(hp, len(seeds))
  amplifier = pick(amplifier, "amplifier")
  amplifier_seed = pick(amplifier_seed, "amplifier_seed")
  base_cfg = d["config"]
  if tasks:
    base_cfg = dataclasses.replace(base_cfg, task=tasks[0],
                                   meta_axis_name=None)
  over_all = {m: dict(d["method_config"].get(m, {})) for m in methods}
  for m, over in (method_overrides or {}).items():
    over_all.setdefault(m, {}).update(over)
  amp_meta = None
  frozen = {m for m in methods if get_method(m).needs_trained_amplifier}
  if amplifier is not None and frozen:
    amp_meta = load_amplifier(
        amplifier, 0 if amplifier_seed == EACH else amplifier_seed)[1]
    for m in sorted(frozen):
      given = dict(method_overrides or {}).get(m, {})
      if "amp_hidden" in given and tuple(given["amp_hidden"]) != tuple(
          amp_meta["hidden"]):
        raise ValueError(
            f"amp_hidden {list(given['amp_hidden'])} of {m} differs from "
            f"the amplifier file's {amp_meta['hidden']} (the file's shape "
            "is used)")
    if amplifier_seed == EACH and len(amp_meta["seeds"]) != len(seeds):
      raise ValueError(f"amplifier_seed 'each' pairs the run's seeds with the"
                       f" amplifier file's, but {amplifier} holds "
                       f"{len(amp_meta['seeds'])} amplifiers for "
                       f"{len(seeds)} seeds")
  configs = {}
  for m in methods:
    over = over_all.get(m, {})
    if m in frozen and amp_meta is not None:
      over.setdefault("amp_hidden", tuple(amp_meta["hidden"]))
    configs[m] = dataclasses.replace(base_cfg, method=m, **over).resolve()
  if amplifier is not None:
    amplifier = os.path.abspath(amplifier)
  if amp_meta is not None:
    for m in sorted(frozen):
      check_fits(amplifier, configs[m])
  spec = RunSpec(configs=configs, seeds=seeds, steps=pick(steps, "steps"),
                 eval_every=pick(eval_every, "eval_every"),
                 checkpoint_every=pick(checkpoint_every,
                                       "checkpoint_every") or None,
                 keep_checkpoints=pick(keep_checkpoints, "keep_checkpoints"),
                 hparams=hp, amplifier=amplifier,
                 amplifier_seed=amplifier_seed,
                 stop_after=pick(stop_after, "stop_after") or None,
                 stop_acc=pick(stop_acc, "stop_acc"), tasks=tasks,
                 method_sources={m: dict(get_method(m).origin) for m in methods
                                 if get_method(m).origin}).validate()
  if tasks:  # the tasks share the transformer's shapes
    task_configs(spec.configs[methods[0]], tasks)
  return spec


def sweep_seeds(seeds: Union[int, Sequence[int]],
                sweeps: Union[Mapping[str, Sequence[float]],
                              Sequence[Tuple[str, Sequence[float]]]]
                ) -> Tuple[List[int], Dict[str, List[float]]]:
  """Seeds x sweep values: every swept value gets every seed.

  Args:
    seeds: a count ``n`` (seeds 0..n-1) or a list of ``n`` seeds.
    sweeps: ``{name: values}`` or ``[(name, values), ...]``, the same number
      ``k`` of values for every name (swept together).

  Returns:
    ``(seeds, {name: per-seed values})`` with ``n * k`` distinct seeds; value
    ``i`` goes to seeds ``i*n .. i*n+n-1``.  A count gives seeds
    ``0..n*k-1``; a list is repeated, offset by ``(max + 1) * i`` for value
    ``i``.  No sweep: ``seeds`` as a list and ``{}``.
  """
  pairs = list(sweeps.items()) if isinstance(sweeps, Mapping) else list(
      sweeps or ())
  base = list(_seed_tuple(seeds))
  if not pairs:
    return base, {}
  names = [n for n, _ in pairs]
  if len(set(names)) != len(names):
    raise ValueError(f"a sweep names a hyperparameter twice: "
                     f"{', '.join(names)}")
  ks = {len(v) for _, v in pairs}
  if len(ks) != 1 or 0 in ks:
    raise ValueError("every sweep needs the same number of values (>= 1)")
  k, n = ks.pop(), len(base)
  if is_int(seeds):
    out = list(range(n * k))
  else:
    if not base:
      raise ValueError("seeds must be a non-empty list of integers")
    off = max(base) + 1
    out = [s + i * off for i in range(k) for s in base]
  return out, {name: [float(v[i // n]) for i in range(n * k)]
               for name, v in pairs}
