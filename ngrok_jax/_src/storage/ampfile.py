"""The amplifier file of a run folder: ``amplifier.msgpack`` and
``amplifier.json``.

``amplifier.msgpack`` (flax msgpack) holds ``params``, the amplifier
parameters of every seed stacked on a leading axis, and ``meta``, a JSON
string with ``format`` (``ngrok_jax.amplifier/1``), ``hidden``,
``amp_method``, ``amp_inputs`` (``grad`` or ``rich``; absent in files
written before it existed: ``grad``), ``seeds``, ``task``, ``p``, ``step``, ``c`` (per seed),
``grad_range`` (the gradient components seen, at initialisation and at the
end), ``grad_range_final``, ``steps_to_95`` and ``example`` (the largest 2-D
gradient tensor of seed 0 at the end, for plots).  ``amplifier.json`` is
that metadata without the example, readable.  :func:`run_amplifier_meta`
computes the metadata from a trained NeuralGrok state.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ngrok_jax._src.core.fileio import atomic_write, dumps, is_int
from ngrok_jax._src.training.methods import loss_fn, program_config

__all__ = ["AMP_FORMAT", "save_amplifier", "load_amplifier", "check_fits",
           "grad_range_fn", "run_amplifier_meta"]

AMP_FORMAT = "ngrok_jax.amplifier/1"
#: Metadata every amplifier file has.
REQUIRED = ("hidden", "seeds", "task", "p", "step", "grad_range")
FILE = "amplifier.msgpack"


def _amp_file(path: str) -> str:
  return os.path.join(path, FILE) if os.path.isdir(path) else path


def save_amplifier(path: str, params, meta: Mapping[str, Any]) -> None:
  """Saves stacked (seed-axis) amplifier params and metadata (msgpack), and
  the metadata without its example tensor as ``<path stem>.json``.

  Args:
    path: the ``.msgpack`` file to write.
    params: the amplifier parameters, every leaf with a leading seed axis.
    meta: JSON-serialisable metadata (hidden sizes, seeds, task, ...).
  """
  from flax import serialization
  blob = serialization.msgpack_serialize(dict(
      meta=json.dumps(dict(meta, format=AMP_FORMAT)),
      params=jax.tree.map(np.asarray, params)))
  atomic_write(path, blob)
  atomic_write(os.path.splitext(path)[0] + ".json",
               dumps({k: v for k, v in meta.items() if k != "example"}))


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
  if not isinstance(meta, dict) or meta.get("format") != AMP_FORMAT:
    raise ValueError(f"{f} is not an ngrok_jax amplifier file")
  missing = [k for k in REQUIRED if k not in meta]
  if missing:
    raise ValueError(f"{f} lacks {', '.join(missing)} in its metadata (not "
                     "a complete amplifier file)")
  n = len(meta["seeds"]) if isinstance(meta["seeds"], list) else 0
  leaves = jax.tree.leaves(params)
  if not n or not leaves or any(np.ndim(a) < 1 or np.shape(a)[0] != n
                                for a in leaves):
    raise ValueError(f"{f}: its weights do not hold one amplifier for each "
                     f"of the {n} seeds its metadata names")
  if seed_index is not None:
    if not is_int(seed_index) or not 0 <= seed_index < n:
      raise ValueError(f"amplifier seed index must be in [0, {n}), got "
                       f"{seed_index!r}")
    params = jax.tree.map(lambda a: np.asarray(a)[seed_index], params)
  return params, meta


def check_fits(path: str, cfg) -> None:
  """ValueError unless the amplifier file's weights have the shapes of
  ``cfg``'s amplifier (its ``amp_hidden`` and ``amp_inputs``), per seed."""
  from ngrok_jax._src.training.methods import init_amplifier_params
  params, meta = load_amplifier(path, None)
  want = jax.eval_shape(lambda k: init_amplifier_params(cfg, k),
                        jax.random.PRNGKey(0))
  flat = jax.tree_util.tree_flatten_with_path
  got = {jax.tree_util.keystr(k): tuple(np.shape(a)[1:])
         for k, a in flat(params)[0]}
  ok = got == {jax.tree_util.keystr(k): tuple(w.shape)
               for k, w in flat(want)[0]}
  if not ok:
    raise ValueError(f"{_amp_file(path)}: its weights do not match its "
                     f"metadata (hidden {meta['hidden']}, amp_inputs "
                     f"{meta.get('amp_inputs', 'grad')}) or this run's "
                     f"amplifier (amp_hidden {list(cfg.amp_hidden)}, "
                     f"amp_inputs {cfg.amp_inputs})")


def grad_range_fn(trainer) -> Callable:
  """Jitted ``(state, data) -> (lo, hi, grads)``: per seed, min/max of the
  full-train-split gradient components, and the gradient tree of seed 0.

  One program per config (``trainer.config``'s structural part, its
  ``program_config``: the loss depends on nothing else), shared by every
  trainer of it: a run asks at its start and at its
  end, and traces once.

  Args:
    trainer: a :class:`ngrok_jax.Trainer`.

  Returns:
    The jitted function.
  """
  return _grad_range_program(program_config(trainer.config))


@functools.lru_cache(maxsize=4)  # bounded, as ``train.programs``
def _grad_range_program(cfg) -> Callable:
  def one(params, idx, inputs, labels):
    g = jax.grad(lambda p: loss_fn(cfg, p, inputs[idx], labels[idx]))(params)
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


def run_amplifier_meta(cfg, seeds: Sequence[int], state, grad_range,
                       range0: Optional[Sequence[float]],
                       steps_to_95) -> Dict[str, Any]:
  """The metadata of a trained NeuralGrok ``state`` (config ``cfg``):
  ``grad_range`` is ``grad_range_fn(trainer)(state, data)`` at the end,
  ``range0`` the ``[min, max]`` it gave at initialisation (``None``: the
  end's)."""
  lo, hi, g = grad_range
  lo, hi = float(np.min(lo)), float(np.max(hi))
  r0 = list(range0) if range0 is not None else [lo, hi]
  name, ex = _example_tensor(jax.tree.map(np.asarray, g))
  c = np.asarray(state.seeds.hparams["c"], np.float64)
  return dict(hidden=list(cfg.amp_hidden), amp_method=cfg.amp_method,
              amp_inputs=cfg.amp_inputs,
              seeds=list(seeds), task=cfg.task, p=cfg.p,
              step=int(state.step), c=[float(x) for x in c],
              grad_range=[min(r0[0], lo), max(r0[1], hi)],
              grad_range_final=[lo, hi], steps_to_95=steps_to_95,
              example=dict(name=name, seed=int(seeds[0]), grad=ex.tolist()))
