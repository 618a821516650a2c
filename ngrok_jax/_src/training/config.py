"""The run configuration: :class:`TrainConfig`, its choices and checks.

Every field of :class:`TrainConfig` is a structural setting (static: a
change compiles a new program) or a numeric hyperparameter named in
``HPARAMS`` (carried per seed as an array; changing it never recompiles).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ngrok_jax._src.core import tasks as tasks_lib
from ngrok_jax._src.core.fileio import is_int
from ngrok_jax._src.optim.registry import (DEFAULT_METHOD, METHOD_NAMES,
                                           Method, get_method)
from ngrok_jax._src.optim.pretrained import DEFAULT_RULE

__all__ = ["METHODS", "AMPLIFIER_METHODS", "CLIPPED_METHODS",
           "DECOUPLED_METHODS", "LOSSES", "LOOKAHEADS",
           "PLACEMENTS", "BATCHINGS", "INITS", "AMP_KINDS", "AMP_DTYPES",
           "AMP_INPUTS", "META_SCHEDULES",
           "HPARAMS", "DEFAULTED", "OFF_WHEN_NONE", "TrainConfig",
           "check_hparam", "num_examples"]

#: Values of ``TrainConfig.method``: every record of
#: :mod:`ngrok_jax.registry` (the baselines, the newer grokking methods and
#: NeuralGrok, learned or frozen), and the methods registered since (a
#: live view, equal to the tuple of the names).
METHODS = METHOD_NAMES
#: Methods whose weight decay is decoupled (AdamW's): the others add
#: ``wd * w`` to the gradient (PyTorch ``Adam(weight_decay=wd)``).
DECOUPLED_METHODS = tuple(m for m in METHODS
                          if not get_method(m).coupled_decay)
#: ``TrainConfig.loss``: softmax or StableMax cross-entropy.
LOSSES = ("softmax", "stablemax")
#: Methods with an amplifier (its parameters in the optimizer state).
AMPLIFIER_METHODS = tuple(m for m in METHODS if get_method(m).uses_amplifier)
#: Methods clipped (global norm ``clip``) by default: the amplifier's
#: pipeline and its rescaling ablation; the other baselines are unclipped.
CLIPPED_METHODS = tuple(m for m in METHODS if get_method(m).clipped)
LOOKAHEADS = ("sgd", "inner")
PLACEMENTS = ("after", "before")
BATCHINGS = ("epoch", "iid")
INITS = ("torch", "flax")
#: ``amp_method``: the exact piecewise-linear table or the MLP itself.
AMP_KINDS = ("pwl", "dense")
AMP_DTYPES = ("float32", "bfloat16")
#: ``amp_inputs``: the gradient component alone (the paper) or, per
#: component, gradient, Adam moments, parameter and a tensor embedding.
AMP_INPUTS = ("grad", "rich")
#: ``meta_schedule``: the meta learning rate over the meta steps.
META_SCHEDULES = ("constant", "cosine", "warmup-cosine")

#: Numeric hyperparameters carried per seed as arrays (``TrainConfig``
#: fields; overridable per seed in ``Trainer.init(hparams=...)``).
HPARAMS = ("lr", "wd", "b1", "b2", "eps", "eps_root", "clip", "c", "alpha",
           "lamb", "meta_lr", "meta_wd", "lookahead_lr")
#: The fields whose ``None`` stands for the method's default:
#: :meth:`TrainConfig.resolve` fills them in (a run folder's ``config.json``
#: records the filled-in values, never ``None``).
DEFAULTED = ("train_on_outer", "wd", "clip", "lamb", "meta_wd",
             "lookahead_lr")
#: The fields whose ``None`` is a setting of its own, not a default: off
#: (``fix_weight_norm``, ``meta_axis_name``), one block (``amp_chunk``),
#: each seed's own split (``split_seed``), no schedule horizon
#: (``meta_schedule_steps``, used only by a decaying ``meta_schedule``).
OFF_WHEN_NONE = ("split_seed", "amp_chunk", "meta_schedule_steps",
                 "meta_axis_name", "fix_weight_norm")


def _field(default, help: str, *, choices: Optional[Sequence] = None,
           min: Optional[int] = None, flag: Optional[str] = None,
           cli: bool = True):
  """A :class:`TrainConfig` field with its help text, its valid ``choices``
  and, for integers, its ``min``imum in ``metadata``: the one source of the
  command line's flags (:mod:`ngrok_jax.cli`, ``--<name-with-dashes>``
  unless ``flag`` names another; none with ``cli=False``) and of
  :meth:`TrainConfig.validate`."""
  return dataclasses.field(default=default, metadata=dict(
      help=help, choices=None if choices is None else choices if isinstance(
          choices, Sequence) else tuple(choices),
      min=min, flag=flag, cli=cli))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a run.

  Structural fields (task, sizes, method, T, ...) are static: changing them
  compiles a new program.  The numeric fields named in ``HPARAMS`` become
  per-seed arrays.  In the fields of ``DEFAULTED``, ``None`` means the
  method's default, which :meth:`resolve` fills in: ``wd``, ``lamb`` and
  ``clip`` the method record's (:meth:`ngrok_jax.registry.Method.default`:
  e.g. wd 1 for ``adamw``, clip 1 for the clipped methods, inf for the
  others), ``meta_wd`` the model's ``wd``, ``lookahead_lr`` the model's
  ``lr``, ``train_on_outer`` True for every method without a meta step.

  Defaults follow the authors' final code (NeuralOptGrok a7490be):
  ``init="torch"``, ``meta_placement="after"``, ``batching="epoch"``,
  ``c=0.2``, baselines unclipped and trained on the outer split too
  (``train_on_outer=None``: True for every method without a meta step).

  Every field carries its help text and checks in ``metadata`` (see
  :func:`_field`); ``ngrok-jax train`` has one flag per field.
  """
  task: str = _field("a+b", "task (a modular-arithmetic expression)",
                     choices=tasks_lib.TASKS)
  p: int = _field(97, "modulus p", min=1)
  method: str = _field(DEFAULT_METHOD, "training method (one run per method)",
                       choices=METHODS, flag="--methods")
  fractions: Tuple[float, float, float] = _field(
      (0.49, 0.01, 0.50), "inner-train, outer (meta-validation) and test "
      "fractions of the examples, e.g. 0.49,0.01,0.5")
  split_seed: Optional[int] = _field(
      None, "one data split for all seeds (default: each seed splits the "
      "data itself)", min=0)
  depth: int = _field(2, "transformer blocks", min=1)
  dim: int = _field(128, "model width d", min=1)
  heads: int = _field(4, "attention heads (must divide dim)", min=1)
  batch_size: int = _field(512, "batch size", min=1)
  warmup_steps: int = _field(10, "linear learning-rate warm-up steps", min=0)
  init: str = _field("torch", "transformer initialisation: torch (PyTorch "
                     "defaults, the reference) or flax", choices=INITS)
  batching: str = _field("epoch", "batches: epoch (shuffled each epoch, as a "
                         "DataLoader; the reference) or iid draws",
                         choices=BATCHINGS)
  train_on_outer: Optional[bool] = _field(
      None, "train on the outer split too (default: yes for methods without "
      "a meta step, as the reference's baselines)")
  amp_hidden: Tuple[int, ...] = _field(
      (128, 128), "amplifier hidden sizes, e.g. 128,128", min=1)
  amp_method: str = _field("pwl", "amplifier evaluation: pwl (exact "
                           "piecewise-linear table, fast) or dense (the MLP "
                           "itself)", choices=AMP_KINDS)
  amp_dtype: str = _field("float32", "dense amplifier matmul dtype "
                          "(bfloat16: mixed precision; dense only)",
                          choices=AMP_DTYPES)
  amp_chunk: Optional[int] = _field(
      None, "dense amplifier only: evaluate in rematerialised blocks of this "
      "many components (bounds the meta step's memory; default: one block)",
      min=1)
  meta_every: int = _field(3, "T: meta step every T steps (NeuralGrok)",
                           min=0)
  lookahead: str = _field("sgd", "meta look-ahead: sgd (the reference) or "
                          "inner (the real optimizer; needs eps_root > 0)",
                          choices=LOOKAHEADS)
  meta_placement: str = _field(
      "after", "meta step after the inner step at the updated parameters "
      "(the reference) or before it at the current ones", choices=PLACEMENTS)
  lookahead_steps: int = _field(
      1, "K: look-ahead steps unrolled per meta step on the step's batch "
      "(truncated back-propagation through K steps; 1: the reference)",
      min=1)
  amp_inputs: str = _field(
      "grad", "amplifier inputs: grad (the gradient component, the "
      "reference) or rich (gradient, Adam moments, parameter, per-tensor "
      "embedding; needs amp_method dense)", choices=AMP_INPUTS)
  meta_schedule: str = _field(
      "constant", "meta learning-rate schedule: constant (the reference), "
      "cosine or warmup-cosine (5%% linear warm-up) decay to 0 over "
      "meta_schedule_steps", choices=META_SCHEDULES)
  meta_schedule_steps: Optional[int] = _field(
      None, "training steps over which a meta_schedule decays (needed by "
      "cosine and warmup-cosine)", min=1)
  meta_axis_name: Optional[str] = _field(
      None, "NeuralGrok: average the meta-gradient over this named vmap "
      "axis (one amplifier shared by the copies along it; set by "
      "ngrok_jax.cross_task, which vmaps tasks over it; None: the paper)",
      cli=False)
  rule: str = _field(
      DEFAULT_RULE, "learned-rule: the frozen rule, a shipped rule's name "
      "or a folder with rule.msgpack and rule_config.json (an "
      "experiments.meta_train run folder)")
  window: int = _field(100, "GrokFast-MA window", min=1)
  loss: str = _field("softmax", "loss: softmax or stablemax cross-entropy "
                     "(Prieto et al. 2025), for every method",
                     choices=LOSSES)
  fix_weight_norm: Optional[float] = _field(
      None, "after every update, rescale the weights to this global L2 "
      "norm (Omnigrok; default: off), for every method")
  # numeric hyperparameters (see HPARAMS; ranges in check_hparam)
  lr: float = _field(1e-3, "learning rate")
  wd: Optional[float] = _field(
      None, "weight decay (coupled L2 for Adam, decoupled for AdamW; "
      "default: 1 for adamw and muon, else 0)")
  b1: float = _field(0.9, "Adam beta1 (model and meta optimizer)")
  b2: float = _field(0.98, "Adam beta2 (model and meta optimizer)")
  eps: float = _field(1e-8, "Adam eps")
  eps_root: float = _field(0.0, "Adam eps_root (> 0 needed by lookahead "
                           "inner, e.g. 1e-16)")
  clip: Optional[float] = _field(
      None, "global-norm clip, inf: off (default: 1 for neuralgrok and "
      "rescale, off for the other baselines)")
  c: float = _field(0.2, "rescaling coefficient c (neuralgrok, rescale)")
  alpha: float = _field(0.98, "GrokFast-EMA alpha")
  lamb: Optional[float] = _field(
      None, "GrokFast lamb (default: 5 for grokfast-ma, else 2)")
  meta_lr: float = _field(1e-4, "meta (amplifier) learning rate")
  meta_wd: Optional[float] = _field(
      None, "meta weight decay (default: the model's wd)")
  lookahead_lr: Optional[float] = _field(
      None, "look-ahead SGD learning rate (default: the model's lr, as the "
      "reference)")

  # ------------------------------------------------------------------ checks
  def validate(self) -> "TrainConfig":
    """Raises ValueError naming the field and the valid choices or range.

    Returns:
      The config itself, so that ``cfg = cfg.validate()`` chains.

    Raises:
      ValueError: a field has an unknown choice or a value out of range, or
        two fields do not go together.
    """
    if self.__dict__.get("_valid"):  # this object was checked already
      return self
    for f in dataclasses.fields(self):
      v, meta = getattr(self, f.name), f.metadata
      if meta["choices"] is not None and v not in meta["choices"]:
        raise ValueError(f"unknown {f.name} {v!r}; valid: "
                         f"{', '.join(meta['choices'])}")
      if meta["min"] is not None and not (v is None and f.default is None):
        many = isinstance(f.default, tuple)  # e.g. amp_hidden: one or more
        vals = (v,) if not many else tuple(v) if isinstance(
            v, (tuple, list)) else ()
        if not vals or not all(is_int(x) and x >= meta["min"] for x in vals):
          what = ("positive integer" if meta["min"] == 1 else
                  f"integer >= {meta['min']}")
          what = f"{what}s" if many else f"a{'n' * (what[0] == 'i')} {what}"
          none = "None or " if f.default is None else ""
          raise ValueError(f"{f.name} must be {none}{what}, got {v!r}")
    if self.train_on_outer not in (None, True, False):
      raise ValueError(f"train_on_outer must be None, True or False, got "
                       f"{self.train_on_outer!r}")
    meta = self.record.needs_outer_batch
    if meta and self.train_on_outer:
      raise ValueError(f"train_on_outer=True would train {self.method} on "
                       f"its own meta-validation (outer) split")
    if self.amp_method != "dense" and (self.amp_chunk is not None or
                                       self.amp_dtype != "float32"):
      raise ValueError("amp_chunk and amp_dtype='bfloat16' apply only to "
                       "amp_method='dense' (--amp-method dense)")
    if self.amp_inputs == "rich" and self.amp_method != "dense":
      raise ValueError("amp_inputs='rich' needs amp_method='dense' (the "
                       "piecewise-linear table exists only for the "
                       "1-input amplifier): add --amp-method dense")
    if (self.meta_schedule != "constant") != (
        self.meta_schedule_steps is not None):
      raise ValueError("meta_schedule cosine and warmup-cosine need "
                       "meta_schedule_steps (the decay horizon in training "
                       "steps), and only they use it")
    if self.fix_weight_norm is not None and not (
        isinstance(self.fix_weight_norm, (int, float)) and
        not isinstance(self.fix_weight_norm, bool) and
        math.isfinite(self.fix_weight_norm) and self.fix_weight_norm > 0):
      raise ValueError(f"fix_weight_norm must be None or a finite number "
                       f"> 0, got {self.fix_weight_norm!r}")
    if self.meta_axis_name is not None and not (
        isinstance(self.meta_axis_name, str) and self.meta_axis_name and
        meta):
      raise ValueError(f"meta_axis_name must be None or a non-empty axis "
                       f"name, and only for method neuralgrok; got "
                       f"{self.meta_axis_name!r} for {self.method!r}")
    if self.record.check is not None:  # e.g. learned-rule's rule
      self.record.check(self)
    if self.dim % self.heads:
      raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
    if meta and self.meta_every < 1:
      raise ValueError(f"meta_every (T) must be >= 1 for {self.method}")
    if meta and self.lookahead == "inner" and not (
        self.eps_root > 0):
      raise ValueError("lookahead='inner' differentiates through Adam and "
                       "needs eps_root > 0 (e.g. 1e-16)")
    for name, v in self.hparams().items():
      check_hparam(name, v)
    if self.task == "a/b" and not tasks_lib.is_prime(self.p):
      raise ValueError(f"task 'a/b' needs a prime p, got {self.p}")
    tasks_lib.split_sizes(num_examples(self.task, self.p), self.fractions)
    # frozen: a config never changes, so one check holds for its lifetime
    # (dataclasses.replace makes a new, unchecked object)
    object.__setattr__(self, "_valid", True)
    return self

  def resolve(self) -> "TrainConfig":
    """The validated config with every default filled in: the one place
    where a (partial) configuration becomes the one a run uses and records.

    Returns:
      The config checked by :meth:`validate`, then :meth:`with_defaults`
      (marked checked: a later :meth:`validate` is free): no field of
      ``DEFAULTED`` is ``None``, every field of ``HPARAMS`` is the float
      :meth:`hparams` gives (the values training uses).

    Raises:
      ValueError: as :meth:`validate`.
    """
    out = self.validate().with_defaults()
    object.__setattr__(out, "_valid", True)  # the same checked values
    return out

  def with_defaults(self) -> "TrainConfig":
    """This config with the method's defaults filled in, not validated (a
    saved ``config.json`` that records ``None`` for a default is read this
    way).

    Returns:
      A ``TrainConfig`` whose ``DEFAULTED`` fields are not ``None`` and
      whose ``HPARAMS`` fields are floats; ``self`` if it is so already.

    Raises:
      ValueError: an unknown method.
    """
    if self.resolved and all(
        type(getattr(self, k)) is float for k in HPARAMS):
      return self  # (needs no method record: a user's may be gone)
    return dataclasses.replace(self, train_on_outer=self.pools_outer,
                               **self.hparams())

  @property
  def resolved(self) -> bool:
    """No field of ``DEFAULTED`` is ``None`` (see :meth:`resolve`)."""
    return all(getattr(self, k) is not None for k in DEFAULTED)

  def hparams(self) -> Dict[str, float]:
    """The resolved numeric hyperparameters of this method.

    Returns:
      ``{name: value}`` for every name of ``HPARAMS``, the method's defaults
      (its registry record's) filled in where a field is None.
    """
    rec = self.record
    wd = self.wd if self.wd is not None else rec.default("wd")
    lamb = self.lamb if self.lamb is not None else rec.default("lamb")
    meta_wd = self.meta_wd if self.meta_wd is not None else wd
    clip = self.clip if self.clip is not None else rec.default("clip")
    out = {k: getattr(self, k) for k in HPARAMS}
    lookahead_lr = (self.lookahead_lr if self.lookahead_lr is not None
                    else self.lr)
    out.update(wd=wd, lamb=lamb, meta_wd=meta_wd, clip=clip,
               lookahead_lr=lookahead_lr)
    return {k: float(v) for k, v in out.items()}

  @property
  def pools_outer(self) -> bool:
    """Whether this method trains on the outer split too (see the class)."""
    if self.train_on_outer is not None:
      return bool(self.train_on_outer)
    return not self.record.needs_outer_batch

  @property
  def record(self) -> Method:
    """The method's :class:`ngrok_jax.registry.Method` record."""
    return get_method(self.method)

  def to_dict(self) -> Dict[str, Any]:
    """The fields as a dict (the form ``config.json`` stores).

    Returns:
      ``{field name: value}`` for every field.
    """
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
    """The config of a dict of fields (lists for the tuple fields are fine).

    Args:
      d: ``{field name: value}``; absent fields take their defaults.

    Returns:
      A ``TrainConfig`` (not validated yet).

    Raises:
      ValueError: ``d`` has a key that is not a field.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
    d = dict(d)
    for k in ("fractions", "amp_hidden"):
      if k in d and d[k] is not None:
        d[k] = tuple(d[k])
    return cls(**d)


_RANGES = {
    "lr": (0, None, False), "wd": (0, None, True), "b1": (0, 1, True),
    "b2": (0, 1, True), "eps": (0, None, True), "eps_root": (0, None, True),
    "clip": (0, None, False), "c": (0, None, False), "alpha": (0, 1, True),
    "lamb": (None, None, True), "meta_lr": (0, None, True),
    "meta_wd": (0, None, True), "lookahead_lr": (0, None, True),
}


def check_hparam(name: str, value) -> None:
  """Validates one numeric hyperparameter (or every entry of an array).

  Args:
    name: one of ``HPARAMS``.
    value: a number or an array of per-seed values.

  Raises:
    ValueError: an unknown name, or a value out of the name's range.
  """
  if name not in _RANGES:
    raise ValueError(f"unknown hyperparameter {name!r}; valid: "
                     f"{', '.join(HPARAMS)}")
  arr = np.asarray(value, dtype=np.float64)
  lo, hi, lo_ok = _RANGES[name]
  if name == "clip":  # inf disables clipping
    bad = np.isnan(arr) | (arr <= 0)
  else:
    bad = ~np.isfinite(arr)
    if lo is not None:
      bad |= (arr < lo) if lo_ok else (arr <= lo)
    if hi is not None:
      bad |= arr >= hi
  if np.any(bad):
    rng = {"lr": "> 0", "clip": "> 0 (inf disables)", "c": "> 0",
           "lamb": "finite"}.get(name, ">= 0" if hi is None else "in [0, 1)")
    raise ValueError(f"hyperparameter {name} must be {rng}, got {value!r}")


def num_examples(task: str, p: int) -> int:
  """The number of examples of ``task`` modulo ``p``.

  Args:
    task: a task name.
    p: the modulus.

  Returns:
    ``p (p - 1)`` for the two-operand tasks, ``p^3 (p - 1)^2`` for
    ``a*c+b*d-e``.
  """
  if tasks_lib.TASKS[task]["arity"] == 2:
    return p * (p - 1)
  return p ** 3 * (p - 1) ** 2
