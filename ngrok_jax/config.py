"""The run configuration: :class:`TrainConfig`, its choices and checks.

Every field of :class:`TrainConfig` is a structural setting (static: a
change compiles a new program) or a numeric hyperparameter named in
``HPARAMS`` (carried per seed as an array; changing it never recompiles).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ngrok_jax import tasks as tasks_lib

__all__ = ["METHODS", "AMPLIFIER_METHODS", "CLIPPED_METHODS", "LOOKAHEADS",
           "PLACEMENTS", "BATCHINGS", "HPARAMS", "TrainConfig", "check_hparam",
           "num_examples"]

#: Values of ``TrainConfig.method``: the baselines and NeuralGrok (learned
#: amplifier, or a trained one kept frozen).
METHODS = ("adam", "adamw", "grokfast-ema", "grokfast-ma", "rescale",
           "neuralgrok", "neuralgrok-frozen")
AMPLIFIER_METHODS = ("neuralgrok", "neuralgrok-frozen")
#: Methods clipped (global norm ``clip``) by default: the amplifier's
#: pipeline and its rescaling ablation; the other baselines are unclipped.
CLIPPED_METHODS = ("neuralgrok", "neuralgrok-frozen", "rescale")
LOOKAHEADS = ("sgd", "inner")
PLACEMENTS = ("after", "before")
BATCHINGS = ("epoch", "iid")

#: Numeric hyperparameters carried per seed as arrays (``TrainConfig``
#: fields; overridable per seed in ``Trainer.init(hparams=...)``).
HPARAMS = ("lr", "wd", "b1", "b2", "eps", "eps_root", "clip", "c", "alpha",
           "lamb", "meta_lr", "meta_wd", "lookahead_lr")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a run.

  Structural fields (task, sizes, method, T, ...) are static: changing them
  compiles a new program.  The numeric fields named in ``HPARAMS`` become
  per-seed arrays; ``None`` means the method's default (``wd``: 1.0 for
  ``adamw``, else 0; ``lamb``: 5.0 for ``grokfast-ma``, else 2.0;
  ``meta_wd``: the model's ``wd``; ``lookahead_lr``: the model's ``lr``;
  ``clip``: 1.0 for NeuralGrok and
  rescaling, inf (no clipping) for the other baselines).

  Defaults follow the authors' final code (NeuralOptGrok a7490be):
  ``init="torch"``, ``meta_placement="after"``, ``batching="epoch"``,
  ``c=0.2``, baselines unclipped and trained on the outer split too
  (``train_on_outer=None``: True for every method without a meta step).
  """
  task: str = "a+b"
  p: int = 97
  method: str = "neuralgrok"
  fractions: Tuple[float, float, float] = (0.49, 0.01, 0.50)
  split_seed: Optional[int] = None  # None: each seed splits the data itself
  depth: int = 2
  dim: int = 128
  heads: int = 4
  batch_size: int = 512
  warmup_steps: int = 10
  init: str = "torch"  # "torch" (reference) or "flax"
  batching: str = "epoch"  # "epoch" (reference DataLoader) or "iid"
  # None: True for methods without an outer loop (they train on 50%)
  train_on_outer: Optional[bool] = None
  amp_hidden: Tuple[int, ...] = (128, 128)
  amp_method: str = "pwl"  # "pwl" (exact, fast) or "dense"
  amp_dtype: str = "float32"  # "bfloat16": mixed precision, dense path only
  # dense path only: evaluate the amplifier in rematerialised blocks of this
  # many components (bounds the meta step's activation memory); None: off.
  amp_chunk: Optional[int] = None
  meta_every: int = 3  # T
  lookahead: str = "sgd"  # "sgd" (reference) or "inner" (real optimizer)
  meta_placement: str = "after"  # "after" (reference) or "before"
  window: int = 100  # GrokFast-MA
  # numeric hyperparameters (see HPARAMS)
  lr: float = 1e-3
  wd: Optional[float] = None
  b1: float = 0.9
  b2: float = 0.98
  eps: float = 1e-8
  eps_root: float = 0.0
  clip: Optional[float] = None
  c: float = 0.2
  alpha: float = 0.98
  lamb: Optional[float] = None
  meta_lr: float = 1e-4
  meta_wd: Optional[float] = None
  lookahead_lr: Optional[float] = None  # None: the model's lr (reference)

  # ------------------------------------------------------------------ checks
  def validate(self) -> "TrainConfig":
    """Raises ValueError naming the field and the valid choices."""
    if self.method not in METHODS:
      raise ValueError(f"unknown method {self.method!r}; valid methods: "
                       f"{', '.join(METHODS)}")
    if self.task not in tasks_lib.TASKS:
      raise ValueError(f"unknown task {self.task!r}; valid tasks: "
                       f"{', '.join(sorted(tasks_lib.TASKS))}")
    if self.lookahead not in LOOKAHEADS:
      raise ValueError(f"unknown lookahead {self.lookahead!r}; valid: "
                       f"{', '.join(LOOKAHEADS)}")
    for name, valid in (("init", ("torch", "flax")),
                        ("batching", BATCHINGS),
                        ("meta_placement", PLACEMENTS)):
      if getattr(self, name) not in valid:
        raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: "
                         f"{', '.join(valid)}")
    if self.train_on_outer not in (None, True, False):
      raise ValueError(f"train_on_outer must be None, True or False, got "
                       f"{self.train_on_outer!r}")
    if self.method == "neuralgrok" and self.train_on_outer:
      raise ValueError("train_on_outer=True would train neuralgrok on its "
                       "own meta-validation (outer) split")
    if self.amp_method not in ("pwl", "dense"):
      raise ValueError(f"unknown amp_method {self.amp_method!r}; valid: "
                       "pwl, dense")
    if self.amp_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"unknown amp_dtype {self.amp_dtype!r}; valid: "
                       "float32, bfloat16")
    if self.amp_chunk is not None and (
        isinstance(self.amp_chunk, bool) or
        not isinstance(self.amp_chunk, (int, np.integer)) or
        self.amp_chunk < 1):
      raise ValueError(f"amp_chunk must be None or a positive integer, got "
                       f"{self.amp_chunk!r}")
    for name in ("p", "depth", "dim", "heads", "batch_size", "window"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name in ("warmup_steps", "meta_every"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if self.dim % self.heads:
      raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
    if not self.amp_hidden or any(
        isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
        for h in self.amp_hidden):
      raise ValueError(f"amp_hidden must be positive integers, got "
                       f"{self.amp_hidden!r}")
    if self.method == "neuralgrok" and self.meta_every < 1:
      raise ValueError("meta_every (T) must be >= 1 for neuralgrok")
    if self.method == "neuralgrok" and self.lookahead == "inner" and not (
        self.eps_root > 0):
      raise ValueError("lookahead='inner' differentiates through Adam and "
                       "needs eps_root > 0 (e.g. 1e-16)")
    for name, v in self.hparams().items():
      check_hparam(name, v)
    if self.task == "a/b" and not tasks_lib._is_prime(self.p):
      raise ValueError(f"task 'a/b' needs a prime p, got {self.p}")
    tasks_lib.split_sizes(num_examples(self.task, self.p), self.fractions)
    return self

  def hparams(self) -> Dict[str, float]:
    """The resolved numeric hyperparameters of this method."""
    wd = self.wd if self.wd is not None else (
        1.0 if self.method == "adamw" else 0.0)
    lamb = self.lamb if self.lamb is not None else (
        5.0 if self.method == "grokfast-ma" else 2.0)
    meta_wd = self.meta_wd if self.meta_wd is not None else wd
    clip = self.clip if self.clip is not None else (
        1.0 if self.method in CLIPPED_METHODS else math.inf)
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
    return self.method != "neuralgrok"

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
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
  """Validates one numeric hyperparameter (or every entry of an array)."""
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
  if tasks_lib.TASKS[task]["arity"] == 2:
    return p * (p - 1)
  return p ** 3 * (p - 1) ** 2
