"""Learned update rules shipped with the package, ready to use.

Each rule is two package data files in ``ngrok_jax/_src/optim/rules/``: ``<name>.msgpack``
(the rule's parameters, as :func:`ngrok_jax.init_rule` shapes
them) and ``<name>.json`` (its :class:`ngrok_jax.RuleConfig`, the exact
meta-training command and settings, and what meta-training cost).
``experiments/export_rule.py`` writes them from a meta-training run folder.

Example::

    import ngrok_jax
    tx = ngrok_jax.pretrained_rule()          # the default rule, frozen
    state = tx.init(params)                   # any pytree of float arrays
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np
import optax
from flax import serialization

from ngrok_jax._src.optim.learned_rule import (RuleConfig, frozen_rule,
                                               init_rule)
from ngrok_jax._src.optim.rule_files import (build_config, read_json,
                                             read_weights)

__all__ = ["RULES_DIR", "DEFAULT_RULE", "rule_names", "rule_info",
           "load_pretrained", "pretrained_rule", "write_rule_files",
           "config_from_dict", "resolve_rule"]

#: The folder of the shipped rules (package data).
RULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rules")
#: The rule :func:`pretrained_rule` loads by default.
DEFAULT_RULE = "arith-pes-cpu"


def rule_names(folder: str = RULES_DIR) -> Tuple[str, ...]:
  """The names of the rules in ``folder`` (both files present), sorted.

  Args:
    folder: a folder of rule files (default: the package's).

  Returns:
    The rule names.
  """
  if not os.path.isdir(folder):
    return ()
  files = set(os.listdir(folder))
  return tuple(sorted(f[:-5] for f in files if f.endswith(".json")
                      and f[:-5] + ".msgpack" in files))


def _paths(name: str, folder: str) -> Tuple[str, str]:
  if name not in rule_names(folder):
    raise ValueError(f"no learned rule {name!r} in {folder}; valid: "
                     f"{', '.join(rule_names(folder)) or '(none)'}")
  base = os.path.join(folder, name)
  return base + ".json", base + ".msgpack"


def config_from_dict(raw: Dict[str, Any], where: str = "the rule's "
                     "configuration") -> RuleConfig:
  """A :class:`ngrok_jax.RuleConfig` from its JSON form (lists -> tuples).

  Args:
    raw: ``dataclasses.asdict(config)`` after a JSON round trip: every
      field, no other.
    where: the file it came from (for the message).

  Returns:
    The config.

  Raises:
    ValueError: one line naming ``where`` and the field, for a field
      unknown, missing or out of range (an empty object included).
  """
  return build_config(RuleConfig, raw, where)


def rule_info(name: str = DEFAULT_RULE, folder: str = RULES_DIR
              ) -> Dict[str, Any]:
  """The metadata of a shipped rule: ``config``, ``command``,
  ``meta_config``, ``cost`` (seconds per outer step, totals) and more.

  Args:
    name: the rule's name (:func:`rule_names`).
    folder: where its files are (default: the package's).

  Returns:
    The parsed ``<name>.json``.

  Raises:
    ValueError: for an unknown name.
  """
  with open(_paths(name, folder)[0]) as f:
    return json.load(f)


def _read(config: RuleConfig, msgpack: str, where: str):
  """The weights in ``msgpack`` checked against ``config`` (from the file
  ``where``): names, shapes, finite values."""
  # the template's shapes only (the first load may happen inside a trace)
  shapes = jax.eval_shape(lambda: init_rule(config, jax.random.PRNGKey(0)))
  theta = read_weights(msgpack, shapes, where, config.placement)
  return jax.tree.map(np.asarray, theta), config


@functools.lru_cache(maxsize=8)
def _load(name: str, folder: str):
  path, msgpack = _paths(name, folder)
  info = read_json(path)
  where = f"{path} (key 'config')"
  if not isinstance(info, dict) or "config" not in info:
    raise ValueError(f"{path}: no 'config' object (the rule's "
                     f"configuration)")
  return _read(config_from_dict(info["config"], where), msgpack, where)


@functools.lru_cache(maxsize=8)
def _load_folder(folder: str, stamp):
  """A folder's rule (``stamp``: its files' sizes and times, so that a
  rewritten rule is read again)."""
  del stamp
  path = os.path.join(folder, "rule_config.json")
  return _read(config_from_dict(read_json(path), path),
               os.path.join(folder, "rule.msgpack"), path)


def resolve_rule(rule: str = DEFAULT_RULE) -> Tuple[Any, RuleConfig]:
  """``(theta, config)`` of the rule a string names (the method
  ``learned-rule``'s ``TrainConfig.rule``; NumPy arrays).

  Args:
    rule: a shipped rule's name (:func:`rule_names`), or a folder holding
      ``rule.msgpack`` and ``rule_config.json`` (:func:`ngrok_jax.save_rule`'s
      files: an ``experiments/meta_train.py`` run folder or its export).

  Returns:
    The rule parameters and its :class:`ngrok_jax.RuleConfig`.

  Raises:
    ValueError: ``rule`` is neither (one line, with the shipped names).
  """
  if not isinstance(rule, str) or not rule:
    raise ValueError(f"a learned rule is a shipped rule's name or a folder, "
                     f"got {rule!r}")
  if rule in rule_names():
    return load_pretrained(rule)
  files = [os.path.join(rule, f) for f in ("rule_config.json",
                                           "rule.msgpack")]
  if not all(os.path.isfile(f) for f in files):
    raise ValueError(
        f"no learned rule {rule!r}: neither a shipped rule ("
        f"{', '.join(rule_names()) or 'none'}) nor a folder with "
        f"rule_config.json and rule.msgpack")
  try:
    stamp = tuple((os.path.getsize(f), os.path.getmtime(f)) for f in files)
    theta, config = _load_folder(os.path.abspath(rule), stamp)
  except ValueError as e:  # one line naming the file and the field
    raise ValueError(str(e).splitlines()[0]) from None
  except (OSError, TypeError, KeyError) as e:
    raise ValueError(f"the learned rule in {rule!r} does not load: "
                     f"{type(e).__name__}: {e}") from None
  return jax.tree.map(np.array, theta), config


def load_pretrained(name: str = DEFAULT_RULE, folder: str = RULES_DIR
                    ) -> Tuple[Any, RuleConfig]:
  """``(theta, config)`` of a shipped rule (NumPy arrays; cached).

  Args:
    name: the rule's name (:func:`rule_names`).
    folder: where its files are (default: the package's).

  Returns:
    The rule parameters and its :class:`ngrok_jax.RuleConfig`.

  Raises:
    ValueError: for an unknown name.
  """
  theta, config = _load(name, os.path.abspath(folder))
  return jax.tree.map(np.array, theta), config


def pretrained_rule(name: str = DEFAULT_RULE, *, lr: Optional[float] = None,
                    folder: str = RULES_DIR, wd: Optional[float] = None,
                    dimension_numbers=None) -> optax.GradientTransformation:
  """A shipped learned rule as a frozen ``optax.GradientTransformation``.

  It works on any pytree of float parameters; ``update`` needs ``params``
  (``tx.update(grads, state, params)``).  Every tensor's update has RMS at
  most ``2 * lr``; a step whose gradient holds a NaN or an infinity is
  skipped (zero update, state unchanged).

  Args:
    name: the rule's name (default :data:`DEFAULT_RULE`; see
      :func:`rule_names`) or, with the default ``folder``, a folder holding
      ``rule.msgpack`` and ``rule_config.json`` (:func:`resolve_rule`: a
      rule you meta-trained yourself).
    lr: the inner learning rate (default: the one it was meta-trained with).
    folder: where its files are (default: the package's).
    wd: the decoupled weight decay of a ``placement="muon"`` rule (default:
      the one it was meta-trained with).
    dimension_numbers: a ``placement="muon"`` rule's leaves to
      orthogonalise (:func:`ngrok_jax.frozen_rule`; default every 2-D
      leaf).

  Returns:
    The frozen rule (:func:`ngrok_jax.frozen_rule`).

  Raises:
    ValueError: for an unknown name, rule files that do not check
      (:mod:`ngrok_jax._src.optim.rule_files`), or a learning rate that is
      not a finite number > 0.
  """
  theta, config = (resolve_rule(name) if folder == RULES_DIR
                   else load_pretrained(name, folder))
  if lr is not None:  # RuleConfig refuses an lr that is not finite and > 0
    config = dataclasses.replace(config, lr=lr)
  if wd is not None:  # and a wd that is not finite and >= 0
    config = dataclasses.replace(config, wd=wd)
  return frozen_rule(theta, config=config,
                     dimension_numbers=dimension_numbers)


def write_rule_files(folder: str, name: str, theta, config: RuleConfig,
                     info: Dict[str, Any]) -> Tuple[str, str]:
  """Writes ``<name>.msgpack`` and ``<name>.json`` into ``folder``.

  Args:
    folder: the output folder (created if missing).
    name: the rule's name (letters, digits, ``-``, ``_``, ``.``).
    theta: the rule parameters.
    config: its :class:`ngrok_jax.RuleConfig`.
    info: more metadata for the JSON (``command``, ``cost``, ...).

  Returns:
    The two paths (JSON, msgpack).
  """
  from ngrok_jax._src.core.fileio import atomic_write, dumps
  if not name or not all(c.isalnum() or c in "-_." for c in name):
    raise ValueError(f"a rule name takes letters, digits, '-', '_' and '.', "
                     f"got {name!r}")
  os.makedirs(folder, exist_ok=True)
  base = os.path.join(folder, name)
  atomic_write(base + ".msgpack", serialization.to_bytes(
      jax.tree.map(np.asarray, jax.device_get(theta))))
  atomic_write(base + ".json", dumps(
      dict(info, name=name, config=dataclasses.asdict(config))))
  _load.cache_clear()
  return base + ".json", base + ".msgpack"
