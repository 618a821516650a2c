"""The multi-seed experiment runner: train, evaluate, record, checkpoint.

One call trains several methods on one task, all seeds of a method vmapped
in one compiled program (one :class:`ngrok_jax.Trainer` per method), in
chunks of ``eval_every`` steps (one ``lax.scan`` each), evaluating every seed
after every chunk, and leaves a *run folder*::

    out_dir/
      config.json       the resolved run (RunSpec: per-method TrainConfig, ...)
      metrics.jsonl     one row per (method, seed, step), every metric key
      summary.json      per method: steps to 95%/99% per seed, diverged_at,
                        median / IQR / success rate, wall time
      amplifier.msgpack trained NeuralGrok amplifier (all seeds) + metadata
      amplifier.json    its metadata, readable
      plots/*.png       curves, AGE, the learned amplifier
      checkpoints/<method>/<step>/   orbax checkpoints (state + metrics)

Python API (stable)::

    from ngrok_jax import runner
    summary = runner.run(config, methods=("neuralgrok", "adam"), seeds=4,
                         steps=3000, eval_every=100, out_dir="runs/x")
    summary = runner.resume("runs/x")
    rows = runner.read_metrics("runs/x")          # list of dicts
    run = runner.load_run("runs/x")               # config, rows, summary

Every file of the run folder is written atomically (temporary file, then
``os.replace``).  ``metrics.jsonl`` is rewritten at every checkpoint, at the
end, and otherwise at most every few seconds, so it is always complete JSON
Lines (``pandas.read_json(path, lines=True)`` reads it in one call).

Resume is exact: the checkpoint holds the whole state (the batches are a
pure function of the per-seed key and the step) and the metrics history, so
a run interrupted anywhere (even by SIGKILL) and resumed produces the same
``metrics.jsonl``, bit for bit on CPU, as an uninterrupted run.  SIGINT and
SIGTERM set a flag; the runner saves a checkpoint at the next chunk boundary
and raises :class:`RunInterrupted`.

Several local devices: the seed axis of the state and data is sharded over
a 1-D ``jax.sharding`` mesh (``NamedSharding``, :mod:`ngrok_jax.sharding`;
the jitted, state-donating ``train_steps`` / ``evaluate`` follow it), over
the largest number of devices (at most ``devices=``, default all) that
divides the number of seeds; if no count above 1 does, the run stays on
one device with a one-line note.  ``devices=1`` turns sharding off.
Checkpoints are host (NumPy) arrays, restored to the host and then placed,
so a run may resume on another device count.  Results equal the
single-device run up to float rounding (programs over fewer seeds per device
round differently; ``tests/test_sharding.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ngrok_jax import metrics as metrics_lib
from ngrok_jax.config import HPARAMS, METHODS, TrainConfig, check_hparam
from ngrok_jax.train import Trainer

__all__ = ["RunSpec", "RunInterrupted", "run", "resume", "make_spec",
           "check_resume", "load_spec", "summary_line",
           "read_metrics", "load_run", "summarize", "load_amplifier",
           "save_amplifier", "atomic_write", "THRESHOLDS"]

THRESHOLDS = (0.95, 0.99)
#: Test accuracy that every seed must hold for ``stop_after`` evaluations
#: before a method stops early.
STOP_ACC = 0.99
FORMAT = "ngrok_jax.run/1"
AMP_FORMAT = "ngrok_jax.amplifier/1"
_WRITE_INTERVAL_S = 5.0


class RunInterrupted(RuntimeError):
  """Raised after SIGINT/SIGTERM once a checkpoint has been saved."""

  def __init__(self, message: str, signum: int, out_dir: Optional[str]):
    super().__init__(message)
    self.signum = signum
    self.out_dir = out_dir


# ---------------------------------------------------------------- utilities
def atomic_write(path: str, data: Union[str, bytes]) -> None:
  """Writes ``data`` to ``path`` via a temporary file and ``os.replace``."""
  tmp = f"{path}.tmp{os.getpid()}"
  mode = "wb" if isinstance(data, bytes) else "w"
  with open(tmp, mode) as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _json_value(v):
  """Python value for JSON: finite floats, ints, None for NaN/inf."""
  if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
    return int(v)
  if isinstance(v, (np.floating, float)):
    v = float(v)
    return v if math.isfinite(v) else None
  return v


def _dumps(obj) -> str:
  return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# ----------------------------------------------------------------- the spec
@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything that determines a run's numbers (saved as config.json).

  Attributes:
    configs: method name -> resolved :class:`TrainConfig` (in run order).
    seeds: the seeds, vmapped within each method.
    steps: training steps per method.
    eval_every: steps per chunk; every seed is evaluated after each chunk.
    checkpoint_every: checkpoint interval in steps (a multiple of
      ``eval_every``); ``None``/0: only at the end of a method and on
      SIGINT/SIGTERM.
    keep_checkpoints: newest checkpoints kept per method.
    hparams: per-seed hyperparameter values (sweeps), ``{name: (v_seed...)}``.
    amplifier: path of a saved amplifier (``neuralgrok-frozen``).
    amplifier_seed: which seed's amplifier in that file (index).
    stop_after: stop a method early once every seed has held test accuracy
      >= ``STOP_ACC`` (0.99) for this many consecutive evaluations (recorded
      in the summary as ``stopped_early_at``); ``None``/0: run every step.
  """
  configs: Dict[str, TrainConfig]
  seeds: Tuple[int, ...]
  steps: int
  eval_every: int
  checkpoint_every: Optional[int] = None
  keep_checkpoints: int = 3
  hparams: Dict[str, Tuple[float, ...]] = dataclasses.field(default_factory=dict)
  amplifier: Optional[str] = None
  amplifier_seed: int = 0
  stop_after: Optional[int] = None

  @property
  def methods(self) -> List[str]:
    return list(self.configs)

  def validate(self) -> "RunSpec":
    if not self.configs:
      raise ValueError("methods must name at least one method; valid: "
                       f"{', '.join(METHODS)}")
    for m, cfg in self.configs.items():
      if m not in METHODS:
        raise ValueError(f"unknown method {m!r}; valid methods: "
                         f"{', '.join(METHODS)}")
      if cfg.method != m:
        raise ValueError(f"config of method {m!r} has method={cfg.method!r}")
      cfg.validate()
    if not self.seeds or not all(_is_int(s) for s in self.seeds):
      raise ValueError(f"seeds must be a non-empty list of integers, got "
                       f"{self.seeds!r}")
    if len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
    if not _is_int(self.steps) or self.steps < 1:
      raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
    if not _is_int(self.eval_every) or self.eval_every < 1:
      raise ValueError(f"eval_every must be a positive integer, got "
                       f"{self.eval_every!r}")
    if self.eval_every > self.steps:
      raise ValueError(f"eval_every ({self.eval_every}) must be <= steps "
                       f"({self.steps})")
    ce = self.checkpoint_every
    if ce is not None:
      if not _is_int(ce) or ce < 0:
        raise ValueError(f"checkpoint_every must be an integer >= 0, got "
                         f"{ce!r}")
      if ce and ce % self.eval_every:
        raise ValueError(f"checkpoint_every ({ce}) must be a multiple of "
                         f"eval_every ({self.eval_every})")
    if not _is_int(self.keep_checkpoints) or self.keep_checkpoints < 1:
      raise ValueError(f"keep_checkpoints must be a positive integer, got "
                       f"{self.keep_checkpoints!r}")
    for name, vals in self.hparams.items():
      if name not in HPARAMS:
        raise ValueError(f"unknown hyperparameter {name!r}; valid: "
                         f"{', '.join(HPARAMS)}")
      if len(vals) != len(self.seeds):
        raise ValueError(f"hyperparameter {name} has {len(vals)} values for "
                         f"{len(self.seeds)} seeds (one value per seed)")
      check_hparam(name, vals)
    if "neuralgrok-frozen" in self.configs and not self.amplifier:
      raise ValueError("method neuralgrok-frozen needs a trained amplifier "
                       "(--amplifier PATH: a run folder or amplifier.msgpack)")
    if self.stop_after is not None and (not _is_int(self.stop_after) or
                                        self.stop_after < 0):
      raise ValueError(f"stop_after must be an integer >= 0, got "
                       f"{self.stop_after!r}")
    if not _is_int(self.amplifier_seed) or self.amplifier_seed < 0:
      raise ValueError(f"amplifier_seed must be an integer >= 0, got "
                       f"{self.amplifier_seed!r}")
    return self

  def to_dict(self) -> Dict[str, Any]:
    return dict(
        format=FORMAT,
        methods=self.methods,
        configs={m: _cfg_dict(c) for m, c in self.configs.items()},
        seeds=list(self.seeds), steps=self.steps, eval_every=self.eval_every,
        checkpoint_every=self.checkpoint_every,
        keep_checkpoints=self.keep_checkpoints,
        hparams={k: [_enc_float(float(x)) for x in v]
                 for k, v in self.hparams.items()},
        amplifier=self.amplifier, amplifier_seed=self.amplifier_seed,
        stop_after=self.stop_after, stop_acc=STOP_ACC)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
    configs = {m: _cfg_from_dict(d["configs"][m]) for m in d["methods"]}
    return cls(configs=configs, seeds=tuple(int(s) for s in d["seeds"]),
               steps=int(d["steps"]), eval_every=int(d["eval_every"]),
               checkpoint_every=d.get("checkpoint_every"),
               keep_checkpoints=int(d.get("keep_checkpoints", 3)),
               hparams={k: tuple(float(_dec_float(x)) for x in v)
                        for k, v in d.get("hparams", {}).items()},
               amplifier=d.get("amplifier"),
               amplifier_seed=int(d.get("amplifier_seed", 0)),
               stop_after=d.get("stop_after") or None)

  def diff(self, other: "RunSpec") -> List[str]:
    """Names of the fields that differ (``configs.<method>.<field>``)."""
    a, b = self.to_dict(), other.to_dict()
    out = []
    for k in a:
      if k == "configs":
        for m in sorted(set(a[k]) | set(b[k])):
          ca, cb = a[k].get(m), b[k].get(m)
          if ca is None or cb is None:
            out.append(f"configs.{m}")
            continue
          out += [f"configs.{m}.{f}" for f in ca if ca[f] != cb.get(f)]
      elif a[k] != b.get(k):
        out.append(k)
    return out


_SPECIAL = {"inf": math.inf, "-inf": -math.inf}


def _enc_float(v):
  """JSON-safe float: +-inf (e.g. clip=inf, no clipping) as a string."""
  if isinstance(v, float) and math.isinf(v):
    return "inf" if v > 0 else "-inf"
  return v


def _dec_float(v):
  return _SPECIAL.get(v, v) if isinstance(v, str) else v


def _cfg_dict(cfg: TrainConfig) -> Dict[str, Any]:
  d = cfg.to_dict()
  return {k: (list(v) if isinstance(v, tuple) else _enc_float(v))
          for k, v in d.items()}


def _cfg_from_dict(d: Mapping[str, Any]) -> TrainConfig:
  return TrainConfig.from_dict(
      {k: (v if k in ("task", "method", "lookahead", "amp_method",
                      "amp_dtype") else _dec_float(v)) for k, v in d.items()})


def make_spec(config: Union[TrainConfig, Mapping[str, Any], None] = None,
              methods: Union[str, Sequence[str]] = ("neuralgrok", "adam"),
              seeds: Union[int, Sequence[int]] = 4, steps: int = 1000,
              eval_every: int = 100, *,
              method_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
              hparams: Optional[Mapping[str, Any]] = None,
              checkpoint_every: Optional[int] = None,
              keep_checkpoints: int = 3, amplifier: Optional[str] = None,
              amplifier_seed: int = 0,
              stop_after: Optional[int] = None) -> RunSpec:
  """Builds and validates a :class:`RunSpec` (arguments as in :func:`run`)."""
  if config is None:
    base = TrainConfig()
  elif isinstance(config, TrainConfig):
    base = config
  elif isinstance(config, Mapping):
    base = TrainConfig.from_dict(dict(config))
  else:
    raise ValueError(f"config must be a TrainConfig or a dict, got "
                     f"{type(config).__name__}")
  if isinstance(methods, str):
    methods = [m.strip() for m in methods.split(",") if m.strip()]
  methods = list(methods)
  if len(set(methods)) != len(methods):
    raise ValueError(f"methods must be distinct, got {methods}")
  for m in methods:
    if m not in METHODS:
      raise ValueError(f"unknown method {m!r}; valid methods: "
                       f"{', '.join(METHODS)}")
  if _is_int(seeds):
    if seeds < 1:
      raise ValueError(f"seeds must be a positive number of seeds or a list "
                       f"of seeds, got {seeds}")
    seeds = tuple(range(int(seeds)))
  else:
    try:
      seeds = tuple(seeds)
    except TypeError:
      raise ValueError(f"seeds must be an int or a list of ints, got "
                       f"{seeds!r}") from None
  method_overrides = dict(method_overrides or {})
  for m in method_overrides:
    if m not in METHODS:
      raise ValueError(f"method_overrides names unknown method {m!r}")
  amp_meta = None
  if amplifier is not None and "neuralgrok-frozen" in methods:
    amp_meta = load_amplifier(amplifier, amplifier_seed)[1]
  configs = {}
  for m in methods:
    over = dict(method_overrides.get(m, {}))
    if m == "neuralgrok-frozen" and amp_meta is not None:
      over.setdefault("amp_hidden", tuple(amp_meta["hidden"]))
    configs[m] = dataclasses.replace(base, method=m, **over)
  hp = {}
  for k, v in (hparams or {}).items():
    arr = np.asarray(v, np.float64)
    if arr.ndim == 0:
      arr = np.full((len(seeds),), float(arr))
    if arr.ndim != 1:
      raise ValueError(f"hyperparameter {k} must be one value or a list, got "
                       f"shape {arr.shape}")
    hp[k] = tuple(float(x) for x in arr)
  if amplifier is not None:
    amplifier = os.path.abspath(amplifier)
  spec = RunSpec(configs=configs, seeds=seeds, steps=steps,
                 eval_every=eval_every,
                 checkpoint_every=checkpoint_every or None,
                 keep_checkpoints=keep_checkpoints, hparams=hp,
                 amplifier=amplifier, amplifier_seed=amplifier_seed,
                 stop_after=stop_after or None)
  return spec.validate()


# ----------------------------------------------------------- the amplifier
def _amp_file(path: str) -> str:
  if os.path.isdir(path):
    path = os.path.join(path, "amplifier.msgpack")
  return path


def save_amplifier(path: str, params, meta: Mapping[str, Any]) -> None:
  """Saves stacked (seed-axis) amplifier params and metadata (msgpack)."""
  from flax import serialization
  blob = serialization.msgpack_serialize(dict(
      meta=json.dumps(dict(meta, format=AMP_FORMAT)),
      params=jax.tree.map(np.asarray, params)))
  atomic_write(path, blob)
  atomic_write(os.path.splitext(path)[0] + ".json",
               _dumps({k: v for k, v in meta.items() if k != "example"}))


def load_amplifier(path: str, seed_index: Optional[int] = 0
                   ) -> Tuple[Any, Dict[str, Any]]:
  """Loads an amplifier saved by a NeuralGrok run.

  Args:
    path: a run folder or its ``amplifier.msgpack``.
    seed_index: which seed's amplifier (index into ``meta["seeds"]``);
      ``None`` returns the stacked parameters of all seeds.

  Returns:
    ``(params, meta)``; ``meta`` has ``hidden``, ``seeds``, ``task``, ``p``,
    ``grad_range``, ``example`` (a real gradient tensor) and more.
  """
  from flax import serialization
  f = _amp_file(path)
  if not os.path.isfile(f):
    raise ValueError(f"no amplifier at {path!r} (expected a run folder with "
                     "amplifier.msgpack or the file itself)")
  try:
    with open(f, "rb") as fh:
      raw = serialization.msgpack_restore(fh.read())
    meta = json.loads(raw["meta"])
    params = raw["params"]
  except Exception as e:  # noqa: BLE001
    raise ValueError(f"{f} is not a readable amplifier file ({e})") from None
  if meta.get("format") != AMP_FORMAT:
    raise ValueError(f"{f} is not an ngrok_jax amplifier file")
  n = len(meta["seeds"])
  if seed_index is not None:
    if not _is_int(seed_index) or not 0 <= seed_index < n:
      raise ValueError(f"amplifier seed index must be in [0, {n}), got "
                       f"{seed_index!r}")
    params = jax.tree.map(lambda a: np.asarray(a)[seed_index], params)
  return params, meta


# ------------------------------------------------------------------ metrics
def _metric_rows(method: str, seeds: Sequence[int], step: int,
                 ev: Mapping[str, np.ndarray],
                 hparams: Mapping[str, Sequence[float]]) -> List[dict]:
  rows = []
  for i, seed in enumerate(seeds):
    row = dict(method=method, seed=int(seed), step=int(step))
    for k, v in hparams.items():
      row[f"hp/{k}"] = _enc_float(float(v[i]))
    for k, v in ev.items():
      if k == "step":
        continue
      row[k] = _json_value(np.asarray(v)[i])
    rows.append(row)
  return rows


def read_metrics(path: str) -> List[dict]:
  """Rows of ``metrics.jsonl`` (path of the file or of the run folder).

  A run folder without ``metrics.jsonl`` but with ``metrics.jsonl.gz`` (as
  exported by ``experiments/export_results.py``) is read from the gzip."""
  if os.path.isdir(path):
    plain = os.path.join(path, "metrics.jsonl")
    gz = plain + ".gz"
    path = gz if not os.path.exists(plain) and os.path.exists(gz) else plain
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    return [json.loads(line) for line in f if line.strip()]


def _seed_curve(rows: Iterable[dict], method: str, seed: int, key: str):
  sel = sorted((r for r in rows if r["method"] == method and r["seed"] == seed),
               key=lambda r: r["step"])
  steps = np.array([r["step"] for r in sel], np.int64)
  vals = np.array([np.nan if r.get(key) is None else r[key] for r in sel],
                  np.float64)
  return steps, vals


def summarize(rows: Sequence[dict], spec: RunSpec,
              wall_time: Optional[Mapping[str, float]] = None,
              complete: Optional[Mapping[str, bool]] = None) -> Dict[str, Any]:
  """Summary of a run from its metric rows.

  Per method and seed: the first evaluated step with test accuracy >= 0.95
  and >= 0.99 (``None``: never), ``diverged_at`` (``None``: never) and the
  final test accuracy; per method: median, quartiles, IQR and success rate of
  the steps over seeds (:func:`ngrok_jax.summarize_steps`), and per sweep
  value the same for the seeds that share it.  Evaluations after a seed
  diverged (its parameters are frozen) do not count.
  """
  wall_time = wall_time or {}
  complete = complete or {}
  out = dict(format=FORMAT, steps=spec.steps, eval_every=spec.eval_every,
             seeds=list(spec.seeds), thresholds=list(THRESHOLDS), methods={})
  for m in spec.methods:
    per = dict(seeds=list(spec.seeds), diverged_at=[], final_test_acc=[],
               last_step=[])
    for t in THRESHOLDS:
      per[f"steps_to_{int(t * 100)}"] = []
    for seed in spec.seeds:
      steps, acc = _seed_curve(rows, m, seed, "test/acc")
      _, div = _seed_curve(rows, m, seed, "diverged_at")
      d = int(div[-1]) if div.size and np.isfinite(div[-1]) and div[-1] >= 0 \
          else None
      per["diverged_at"].append(d)
      if d is not None:
        acc = np.where(steps <= d, acc, np.nan)
      for t in THRESHOLDS:
        per[f"steps_to_{int(t * 100)}"].append(
            metrics_lib.steps_to_threshold(steps, acc, t))
      per["final_test_acc"].append(_json_value(acc[-1]) if acc.size else None)
      per["last_step"].append(int(steps[-1]) if steps.size else 0)
    for t in THRESHOLDS:
      name = f"steps_to_{int(t * 100)}"
      per[f"t{int(t * 100)}"] = _stats(per[name])
    per["num_diverged"] = sum(d is not None for d in per["diverged_at"])
    if spec.hparams:
      groups = {}
      for i, seed in enumerate(spec.seeds):
        label = ",".join(f"{k}={_fmt(v[i])}" for k, v in spec.hparams.items())
        groups.setdefault(label, []).append(i)
      per["groups"] = {}
      for label, idx in groups.items():
        g = dict(seeds=[spec.seeds[i] for i in idx])
        for t in THRESHOLDS:
          name = f"steps_to_{int(t * 100)}"
          g[name] = [per[name][i] for i in idx]
          g[f"t{int(t * 100)}"] = _stats(g[name])
        g["diverged_at"] = [per["diverged_at"][i] for i in idx]
        g["num_diverged"] = sum(d is not None for d in g["diverged_at"])
        per["groups"][label] = g
    held = held_evaluations(rows, m, spec.seeds)
    per["stopped_early_at"] = (
        max(per["last_step"]) if spec.stop_after and held >= spec.stop_after
        and max(per["last_step"]) < spec.steps else None)
    per["wall_time_s"] = round(float(wall_time.get(m, 0.0)), 3)
    per["complete"] = bool(complete.get(m, False))
    out["methods"][m] = per
  return out


def held_evaluations(rows: Sequence[dict], method: str, seeds: Sequence[int],
                     acc: float = None) -> int:
  """The number of most recent evaluations in which *every* seed of
  ``method`` had test accuracy >= ``acc`` (default ``STOP_ACC``)."""
  acc = STOP_ACC if acc is None else acc
  held = None
  for seed in seeds:
    _, vals = _seed_curve(rows, method, seed, "test/acc")
    n = 0
    for v in vals[::-1]:
      if not v >= acc:
        break
      n += 1
    held = n if held is None else min(held, n)
  return held or 0


def _fmt(v: float) -> str:
  return f"{v:g}"


def _stats(values: Sequence[Optional[int]]) -> Dict[str, Any]:
  s = metrics_lib.summarize_steps(values)
  s["iqr"] = (s["q75"] - s["q25"]) if s["median"] is not None else None
  return s


def summary_line(method: str, per: Mapping[str, Any]) -> str:
  """One line: success and median steps to 95% / 99%, divergences, time."""
  parts = [f"{method:>17}:"]
  for t in THRESHOLDS:
    s = per[f"t{int(t * 100)}"]
    if s["median"] is None:
      parts.append(f"{int(t * 100)}% never ({s['success']}/{s['n']})")
    else:
      parts.append(f"{int(t * 100)}% {s['success']}/{s['n']} seeds, median "
                   f"{s['median']:.0f} (IQR {s['q25']:.0f}-{s['q75']:.0f})")
  parts.append(f"diverged {per['num_diverged']}")
  parts.append(f"{per['wall_time_s']:.1f} s")
  return "  ".join(parts[:1]) + " " + "; ".join(parts[1:])


# ------------------------------------------------------------ signal handler
class _StopFlag:
  """SIGINT/SIGTERM handler that only sets a flag (installed in main thread)."""

  def __init__(self):
    self.signum = None
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in (signal.SIGINT, signal.SIGTERM):
        self._old[s] = signal.signal(s, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.signum is not None and signum == signal.SIGINT:
      # second Ctrl-C: give up waiting for the chunk boundary
      raise KeyboardInterrupt
    self.signum = signum

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)
    return False


# --------------------------------------------------------------- the runner
def _progress(total: int, initial: int, desc: str, enabled: bool):
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc=desc, unit="step",
              disable=not enabled, dynamic_ncols=True, leave=True,
              file=sys.stderr, mininterval=0.5)


def _grad_stats_fn(trainer: Trainer):
  """Jitted: per seed, min/max of the full-train-split gradient components,
  and the full gradient tree of seed 0 (for the amplifier plot)."""
  def one(params, idx, inputs, labels):
    g = jax.grad(trainer.loss_fn)(params, inputs[idx], labels[idx])
    flat = jnp.concatenate([jnp.ravel(l) for l in jax.tree.leaves(g)])
    return jnp.min(flat), jnp.max(flat), g

  @jax.jit
  def fn(state, data):
    lo, hi, g = jax.vmap(one, in_axes=(0, 0, None, None))(
        state.seeds.params, data.train, data.inputs, data.labels)
    return lo, hi, jax.tree.map(lambda x: x[0], g)
  return fn


def _example_tensor(g) -> Tuple[str, np.ndarray]:
  """The largest 2-D gradient tensor (name, array) of a gradient tree."""
  best = None
  for path, leaf in jax.tree_util.tree_flatten_with_path(g)[0]:
    a = np.asarray(leaf)
    if a.ndim == 2 and (best is None or a.size > best[1].size):
      best = (jax.tree_util.keystr(path), a)
  if best is None:
    path, leaf = jax.tree_util.tree_flatten_with_path(g)[0][0]
    best = (jax.tree_util.keystr(path), np.asarray(leaf).reshape(1, -1))
  return best


class _Run:
  """State of one run folder while training (internal)."""

  def __init__(self, spec: RunSpec, out_dir: Optional[str], progress: bool,
               plots: bool, report):
    self.spec = spec
    self.out_dir = out_dir
    self.progress = progress
    self.plots = plots
    self.report = report
    self.rows: Dict[str, List[dict]] = {m: [] for m in spec.methods}
    self.wall: Dict[str, float] = {m: 0.0 for m in spec.methods}
    self.complete: Dict[str, bool] = {m: False for m in spec.methods}
    self._last_write = 0.0
    self.devices: Optional[int] = None

  # files ---------------------------------------------------------------
  def path(self, *names) -> str:
    return os.path.join(self.out_dir, *names)

  def all_rows(self) -> List[dict]:
    return [r for m in self.spec.methods for r in self.rows[m]]

  def write_metrics(self, force: bool = False) -> None:
    if self.out_dir is None:
      return
    now = time.monotonic()
    if not force and now - self._last_write < _WRITE_INTERVAL_S:
      return
    text = "".join(json.dumps(r, allow_nan=False) + "\n"
                   for r in self.all_rows())
    atomic_write(self.path("metrics.jsonl"), text)
    self._last_write = now

  def summary(self) -> Dict[str, Any]:
    return summarize(self.all_rows(), self.spec, self.wall, self.complete)

  def write_summary(self) -> Dict[str, Any]:
    s = self.summary()
    if self.out_dir is not None:
      atomic_write(self.path("summary.json"), _dumps(s))
    return s

  # one method ------------------------------------------------------------
  def train_method(self, method: str, stop: _StopFlag, resume: bool) -> None:
    spec = self.spec
    cfg = spec.configs[method]
    trainer = Trainer(cfg)
    amp = None
    if method == "neuralgrok-frozen":
      amp = load_amplifier(spec.amplifier, spec.amplifier_seed)[0]
    hp = {k: np.asarray(v, np.float32) for k, v in spec.hparams.items()}
    state, data = trainer.init(list(spec.seeds), hparams=hp or None,
                               amp_params=amp)
    grad_stats = (_grad_stats_fn(trainer) if method == "neuralgrok" and
                  self.out_dir is not None else None)
    ckpt = None
    if self.out_dir is not None:
      from ngrok_jax.checkpoint import Checkpointer
      ckpt = Checkpointer(self.path("checkpoints", method),
                          spec.keep_checkpoints)
    extra: Dict[str, Any] = {}
    step = 0
    try:
      if resume and ckpt is not None:
        got = ckpt.restore_latest(state, report=self.report)
        if got is not None:
          step, state, meta = got
          self.rows[method] = list(meta["rows"])
          self.wall[method] = float(meta["wall_time"])
          extra = dict(meta.get("extra", {}))
          if step >= spec.steps or self._stop_early(method):
            self.complete[method] = True
          else:
            self.report(f"{method}: resuming from step {step}")
      state, data = self._place(state, data)
      if grad_stats is not None and "grad_range0" not in extra:
        lo, hi, _ = grad_stats(state, data)
        extra["grad_range0"] = [float(np.min(lo)), float(np.max(hi))]
      if not self.complete[method]:
        state = self._loop(method, trainer, state, data, step, ckpt, stop,
                           extra)
      if grad_stats is not None and self.out_dir is not None:
        self._save_amplifier(trainer, state, data, grad_stats, extra)
    finally:
      if ckpt is not None:
        ckpt.close()

  def _stop_early(self, method: str) -> bool:
    n = self.spec.stop_after
    return bool(n) and held_evaluations(self.rows[method], method,
                                        self.spec.seeds) >= n

  def _place(self, state, data):
    """Shards the seed axis over ``self.devices`` local devices (the largest
    count <= it that divides the number of seeds); checkpoints stay layout
    independent (restored to the host, then placed here)."""
    n = _shard_count(len(self.spec.seeds), self.devices)
    if n <= 1:
      return state, data
    from ngrok_jax.sharding import seed_mesh, shard_seeds
    return shard_seeds(state, data, mesh=seed_mesh(jax.local_devices()[:n]))

  def _loop(self, method, trainer, state, data, step, ckpt, stop, extra):
    spec = self.spec
    ce = spec.checkpoint_every
    bar = _progress(spec.steps, step, method, self.progress)
    t_session = time.perf_counter()
    wall0 = self.wall[method]
    try:
      while step < spec.steps:
        n = min(spec.eval_every, spec.steps - step)
        state, out = trainer.train_steps(state, data, n)
        ev = {k: np.asarray(v) for k, v in trainer.evaluate(state, data).items()}
        loss = np.asarray(out["loss"], np.float64)
        ev["batch_loss"] = np.mean(loss, axis=0)
        outer = np.asarray(out["outer_loss"], np.float64)
        with np.errstate(all="ignore"), _quiet():
          ev["outer_loss"] = (np.nanmean(outer, axis=0) if
                              np.isfinite(outer).any() else
                              np.full(outer.shape[1], np.nan))
        step += n
        assert int(ev["step"]) == step, (int(ev["step"]), step)
        self.rows[method] += _metric_rows(method, spec.seeds, step, ev,
                                          spec.hparams)
        self.wall[method] = wall0 + time.perf_counter() - t_session
        acc = ev["test/acc"]
        bar.set_postfix_str(f"median test acc {np.nanmedian(acc):.3f}",
                            refresh=False)
        bar.update(n)
        done = step >= spec.steps or self._stop_early(method)
        if done and step < spec.steps:
          self.report(f"{method}: every seed held test accuracy >= "
                      f"{STOP_ACC} for {spec.stop_after} evaluations; "
                      f"stopped at step {step} of {spec.steps}")
        _test_throttle()
        if ckpt is not None and (done or stop.signum is not None or
                                 (ce and step % ce == 0)):
          ckpt.save(step, state, dict(rows=self.rows[method],
                                      wall_time=self.wall[method],
                                      extra=extra))
          self.write_metrics(force=True)
        else:
          self.write_metrics()
        if done:
          break
        if stop.signum is not None and not done:
          if ckpt is not None:
            ckpt.wait()
          self.write_metrics(force=True)
          self.write_summary()
          name = signal.Signals(stop.signum).name
          where = (f"checkpoint saved; resume with: ngrok-jax train "
                   f"--resume {self.out_dir}" if ckpt is not None
                   else "no run folder, nothing saved")
          raise RunInterrupted(f"{name} received: stopped {method} at step "
                               f"{step}/{spec.steps}; {where}", stop.signum,
                               self.out_dir)
    finally:
      bar.close()
    self.complete[method] = True
    return state

  def _save_amplifier(self, trainer, state, data, grad_stats, extra):
    spec = self.spec
    cfg = spec.configs["neuralgrok"]
    lo, hi, g = grad_stats(state, data)
    r0 = extra.get("grad_range0", [float(np.min(lo)), float(np.max(hi))])
    name, ex = _example_tensor(jax.tree.map(np.asarray, g))
    summ = self.summary()["methods"]["neuralgrok"]
    c = np.asarray(state.seeds.hparams["c"], np.float64)
    meta = dict(hidden=list(cfg.amp_hidden), amp_method=cfg.amp_method,
                seeds=list(spec.seeds), task=cfg.task, p=cfg.p,
                step=int(state.step), c=[float(x) for x in c],
                grad_range=[min(r0[0], float(np.min(lo))),
                            max(r0[1], float(np.max(hi)))],
                grad_range_final=[float(np.min(lo)), float(np.max(hi))],
                steps_to_95=summ["steps_to_95"],
                example=dict(name=name, seed=int(spec.seeds[0]),
                             grad=ex.tolist()))
    save_amplifier(self.path("amplifier.msgpack"), state.seeds.amp_params,
                   meta)


@contextlib.contextmanager
def _quiet():
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    yield


def _shard_count(num_seeds: int, devices: Optional[int]) -> int:
  """Devices to shard ``num_seeds`` over: the largest count <= ``devices``
  (default: all local devices) that divides the number of seeds."""
  avail = jax.local_device_count()
  want = avail if devices is None else min(int(devices), avail)
  for n in range(max(want, 1), 0, -1):
    if num_seeds % n == 0:
      return n
  return 1


def _test_throttle():
  # Test hook: sleep after each chunk so a test can kill a run mid-way.
  s = os.environ.get("NGROK_JAX_TEST_SLEEP")
  if s:
    time.sleep(float(s))


def _default_report(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _check_out_dir(out_dir: Optional[str], resume: bool) -> None:
  if out_dir is None:
    if resume:
      raise ValueError("resume needs out_dir (the run folder)")
    return
  if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
    raise ValueError(f"out_dir must be a path, got {out_dir!r}")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"out_dir {out_dir!r} exists and is not a folder")
  if not resume and os.path.exists(os.path.join(out_dir, "config.json")):
    raise ValueError(f"{out_dir!r} already holds a run; resume it with "
                     f"--resume {out_dir} or choose a new --out")


def run(config: Union[TrainConfig, Mapping[str, Any], None] = None,
        methods: Union[str, Sequence[str]] = ("neuralgrok", "adam"),
        seeds: Union[int, Sequence[int]] = 4, steps: int = 1000,
        eval_every: int = 100, out_dir: Optional[str] = None, *,
        method_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
        hparams: Optional[Mapping[str, Any]] = None,
        checkpoint_every: Optional[int] = None, keep_checkpoints: int = 3,
        amplifier: Optional[str] = None, amplifier_seed: int = 0,
        resume: bool = False, force: bool = False, progress: bool = True,
        plots: bool = True, report=None,
        devices: Optional[int] = None,
        stop_after: Optional[int] = None) -> Dict[str, Any]:
  """Trains ``methods`` on one task for all ``seeds``; returns the summary.

  Args:
    config: the base :class:`TrainConfig` (or its dict); its ``method`` is
      replaced by each of ``methods``.
    methods: method names (list or comma-separated string), run in order,
      each as one vmapped program over the seeds.
    seeds: number of seeds (0..n-1) or the list of seeds.
    steps: training steps per method.
    eval_every: evaluate every seed after every ``eval_every`` steps (one
      ``lax.scan`` chunk); must be <= steps.
    out_dir: the run folder (created); ``None`` keeps everything in memory
      (no files, no checkpoints).
    method_overrides: ``{method: {TrainConfig field: value}}``.
    hparams: per-seed hyperparameter sweep ``{name: value or [one per
      seed]}`` (names in :data:`ngrok_jax.HPARAMS`), same for every method.
    checkpoint_every: checkpoint interval (multiple of ``eval_every``);
      ``None``/0: only at the end of each method and on SIGINT/SIGTERM.
    keep_checkpoints: newest checkpoints kept per method.
    amplifier: run folder or ``amplifier.msgpack`` of a NeuralGrok run, for
      ``neuralgrok-frozen`` (its ``amp_hidden`` is taken from the file).
    amplifier_seed: index of the seed whose amplifier is used.
    resume: continue the run in ``out_dir`` from its newest good checkpoint
      (the given arguments must match its config.json unless ``force``).
    force: resume even if the arguments differ from the saved config.
    progress: show a tqdm progress bar per method.
    plots: write PNG plots into ``out_dir/plots`` at the end.
    report: callable for one-line messages (default: print to stderr).
    devices: shard the seed axis over at most this many local devices
      (``None``: all of them; 1: no sharding).  The count used is the
      largest that divides the number of seeds (``jax.sharding`` Mesh +
      NamedSharding, :mod:`ngrok_jax.sharding`).  Not part of the run's
      configuration: results do not depend on it beyond float rounding, and
      a run may resume on a different number of devices.
    stop_after: stop a method once every seed has held test accuracy >=
      0.99 for this many consecutive evaluations (``None``/0: never); part
      of the run's configuration, reported as ``stopped_early_at``.

  Returns:
    The summary dict (also ``out_dir/summary.json``):
    ``summary["methods"][m]["steps_to_95"]`` is the per-seed list (``None``
    = never), ``["t95"]`` has ``median``, ``q25``, ``q75``, ``iqr``,
    ``success_rate``; likewise ``99``; ``diverged_at``; ``wall_time_s``.

  Raises:
    ValueError: invalid arguments (the message names the field), or a resume
      whose arguments differ from the saved config (names the fields).
    RunInterrupted: SIGINT/SIGTERM; a checkpoint was saved first.
  """
  spec = make_spec(config, methods, seeds, steps, eval_every,
                   method_overrides=method_overrides, hparams=hparams,
                   checkpoint_every=checkpoint_every,
                   keep_checkpoints=keep_checkpoints, amplifier=amplifier,
                   amplifier_seed=amplifier_seed, stop_after=stop_after)
  return _execute(spec, out_dir, resume=resume, force=force,
                  progress=progress, plots=plots, report=report,
                  devices=devices)


def load_spec(out_dir: str) -> RunSpec:
  """The :class:`RunSpec` saved in a run folder's config.json."""
  path = os.path.join(out_dir, "config.json")
  if not os.path.isfile(path):
    raise ValueError(f"{out_dir!r} is not a run folder (no config.json)")
  try:
    with open(path) as f:
      d = json.load(f)
    return RunSpec.from_dict(d)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path} is not a valid run config ({e})") from None


def resume(out_dir: str, *, force: bool = False, progress: bool = True,
           plots: bool = True, report=None,
           spec: Optional[RunSpec] = None,
           devices: Optional[int] = None) -> Dict[str, Any]:
  """Continues the run in ``out_dir`` from its newest good checkpoint.

  ``spec`` (optional) is checked against the saved config: differing fields
  are refused with a ValueError naming them, unless ``force``.  ``devices``
  as in :func:`run` (the run may have been started on another count).
  """
  saved = load_spec(out_dir)
  return _execute(spec or saved, out_dir, resume=True, force=force,
                  progress=progress, plots=plots, report=report,
                  devices=devices)


def check_resume(spec: RunSpec, out_dir: Optional[str], resume: bool,
                 force: bool = False) -> List[str]:
  """Validates ``out_dir`` for a new run or a resume; returns the fields in
  which ``spec`` differs from the saved config (only with ``force``).

  Raises ValueError if ``out_dir`` already holds a run and ``resume`` is
  false, or if the configuration differs and ``force`` is false (the
  message names the differing fields).
  """
  _check_out_dir(out_dir, resume)
  if out_dir is None or not resume:
    return []
  if not os.path.exists(os.path.join(out_dir, "config.json")):
    return []
  diff = load_spec(out_dir).diff(spec)
  if diff and not force:
    raise ValueError(f"the configuration differs from the checkpointed run "
                     f"in {out_dir} in: {', '.join(diff)} (use --force to "
                     "resume anyway)")
  return diff


def _execute(spec: RunSpec, out_dir, *, resume, force, progress, plots,
             report, devices: Optional[int] = None) -> Dict[str, Any]:
  report = report or _default_report
  if devices is not None and (isinstance(devices, bool) or
                              not isinstance(devices, int) or devices < 1):
    raise ValueError(f"devices must be a positive integer, got {devices!r}")
  diff = check_resume(spec, out_dir, resume, force)
  if out_dir is not None:
    out_dir = os.fspath(out_dir)
    if diff:
      report(f"resuming with a different configuration ({', '.join(diff)})"
             " because of --force")
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(os.path.join(out_dir, "config.json"), _dumps(spec.to_dict()))
  r = _Run(spec, out_dir, progress, plots, report)
  r.devices = devices
  n = _shard_count(len(spec.seeds), devices)
  if n > 1:
    report(f"seeds sharded over {n} devices")
  elif jax.local_device_count() > 1 and devices != 1:
    report(f"{len(spec.seeds)} seeds do not split evenly over the "
           f"{jax.local_device_count()} devices: running on one device")
  with _StopFlag() as stop:
    for m in spec.methods:
      if stop.signum is not None:
        break
      r.train_method(m, stop, resume)
      r.write_metrics(force=True)
      s = r.write_summary()
      if r.complete[m] and (progress or report is not _default_report):
        report(summary_line(m, s["methods"][m]))
  summary = r.write_summary()
  r.write_metrics(force=True)
  if stop.signum is not None:
    # The signal arrived during the last chunk of a method: that method
    # finished and was saved, but later ones were not started.  Never return
    # as if the run were done (a caller would go on to its next job).
    left = [m for m in spec.methods if not r.complete[m]]
    name = signal.Signals(stop.signum).name
    if left:
      where = (f"resume with: ngrok-jax train --resume {out_dir}"
               if out_dir is not None else "no run folder, nothing saved")
      raise RunInterrupted(f"{name} received: stopped before {left[0]} "
                           f"(not started: {', '.join(left)}); {where}",
                           stop.signum, out_dir)
    raise RunInterrupted(f"{name} received as the run finished: every "
                         "method is complete and saved", stop.signum, out_dir)
  if out_dir is not None and plots:
    try:
      from ngrok_jax import plots as plots_lib
      plots_lib.plot_run(out_dir)
    except Exception as e:  # noqa: BLE001 - plotting never loses a run
      report(f"plotting failed: {type(e).__name__}: {e}")
  return summary


class RunData(dict):
  """``load_run`` result: keys ``spec``, ``config``, ``rows``, ``summary``."""


def load_run(out_dir: str) -> RunData:
  """Reads a run folder: its spec, config dict, metric rows and summary."""
  spec = load_spec(out_dir)
  with open(os.path.join(out_dir, "config.json")) as f:
    config = json.load(f)
  rows = read_metrics(out_dir) if any(os.path.exists(
      os.path.join(out_dir, f)) for f in ("metrics.jsonl",
                                          "metrics.jsonl.gz")) else []
  sp = os.path.join(out_dir, "summary.json")
  if os.path.exists(sp):
    with open(sp) as f:
      summary = json.load(f)
  else:
    summary = summarize(rows, spec)
  return RunData(spec=spec, config=config, rows=rows, summary=summary,
                 out_dir=out_dir)
