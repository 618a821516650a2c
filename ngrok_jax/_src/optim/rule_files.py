"""Checks of a learned rule's files before anything trains with them.

A rule is a configuration (``rule_config.json``, or the ``config`` of a
shipped rule's ``<name>.json``) and weights (``*.msgpack``).  On load,
:mod:`ngrok_jax._src.optim.learned_rule` and
:mod:`ngrok_jax._src.optim.pretrained` check: the configuration is a JSON
object with every field of :class:`ngrok_jax.RuleConfig` and no other (an
empty or partial object would silently mean the defaults), each field of
its type and range (:func:`check_config_values`: a finite positive lr,
...); the weights have exactly the names and shapes the configuration
gives (a ``decays`` or ``time_scales`` list that does not fit the first
layer, other ``hidden`` sizes) and are finite.  Every failure is one
``ValueError`` line naming the file and the field.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, Sequence

import numpy as np
from flax import serialization, traverse_util

__all__ = ["read_json", "config_kwargs", "build_config",
           "check_config_values", "read_weights"]


def read_json(path: str) -> Any:
  """The JSON value in ``path``; ValueError (one line, naming it) if it is
  not JSON."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise ValueError(f"{path}: not a readable JSON file ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''})") from None


#: Fields a rule file written before they existed (0.1.0: the ``update``
#: and ``amplifier`` placements) may omit: their defaults are what those
#: rules ran with (the ``muon`` placement's settings, unused by the others).
LATER_FIELDS = ("wd", "muon_beta", "b1", "ns_steps", "consistent_rms",
                "others")


def config_kwargs(raw: Any, fields: Sequence[str], where: str
                  ) -> Dict[str, Any]:
  """A rule configuration's JSON object as keyword arguments (lists become
  tuples), after checking it names every field in ``fields`` (but
  :data:`LATER_FIELDS`, for a non-``muon`` rule) and no other.

  Args:
    raw: the parsed JSON.
    fields: the configuration's field names.
    where: the file (and key) it came from, for the message.

  Returns:
    ``{field: value}``.
  """
  if not isinstance(raw, dict) or not raw:
    raise ValueError(f"{where}: the rule's configuration must be a JSON "
                     f"object with the fields {', '.join(fields)}, got "
                     f"{json.dumps(raw)[:60]}")
  unknown = sorted(set(raw) - set(fields))
  if unknown:
    raise ValueError(f"{where}: unknown field {unknown[0]!r} in the rule's "
                     f"configuration; valid: {', '.join(fields)}")
  later = LATER_FIELDS if raw.get("placement") != "muon" else ()
  missing = [f for f in fields if f not in raw and f not in later]
  if missing:
    raise ValueError(f"{where}: field {missing[0]!r} missing from the rule's "
                     f"configuration (a rule file names every field)")
  return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def build_config(cls, raw: Any, where: str):
  """``cls(**config_kwargs(raw, cls's fields, where))`` (``cls``:
  :class:`ngrok_jax.RuleConfig`); its ValueError prefixed with ``where``.

  Args:
    cls: the configuration's dataclass.
    raw: the parsed JSON object.
    where: the file (and key) it came from.

  Returns:
    The configuration.
  """
  kwargs = config_kwargs(raw, [f.name for f in dataclasses.fields(cls)],
                         where)
  try:
    return cls(**kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}: {str(e).splitlines()[0]}") from None


def _number(x) -> bool:
  return isinstance(x, (int, float, np.integer, np.floating)) and (
      not isinstance(x, (bool, np.bool_)))


def check_config_values(cfg) -> None:
  """Raises ValueError (one line, naming the field) for a value out of its
  type or range in a :class:`ngrok_jax.RuleConfig` ``cfg``."""
  def bad(field, want):
    raise ValueError(f"field {field!r} must be {want}, got "
                     f"{getattr(cfg, field)!r}")

  def seq(x):
    return isinstance(x, (tuple, list))

  if not isinstance(cfg.placement, str):
    bad("placement", "a string")
  if not seq(cfg.hidden) or not cfg.hidden or any(
      not _number(h) or int(h) != h or h < 1 for h in cfg.hidden):
    bad("hidden", "a non-empty list of integers >= 1")
  for field in ("lr", "eps", "c"):
    v = getattr(cfg, field)
    if not _number(v) or not math.isfinite(v) or v <= 0:
      bad(field, "a finite number > 0")
  if not _number(cfg.beta2) or not 0 <= cfg.beta2 < 1:
    bad("beta2", "a number in [0, 1)")
  if not seq(cfg.decays) or not cfg.decays or any(
      not _number(d) or not 0 <= d < 1 for d in cfg.decays):
    bad("decays", "a non-empty list of numbers in [0, 1)")
  if not seq(cfg.time_scales) or any(
      not _number(s) or not 0 < s < math.inf for s in cfg.time_scales):
    bad("time_scales", "a list of finite numbers > 0")
  if not _number(cfg.out_scale) or not math.isfinite(cfg.out_scale):
    bad("out_scale", "a finite number")
  for field in ("muon_beta", "b1"):
    v = getattr(cfg, field)
    if not _number(v) or not 0 <= v < 1:
      bad(field, "a number in [0, 1)")
  if not _number(cfg.wd) or not math.isfinite(cfg.wd) or cfg.wd < 0:
    bad("wd", "a finite number >= 0")
  if not _number(cfg.consistent_rms) or not (
      0 < cfg.consistent_rms < math.inf):
    bad("consistent_rms", "a finite number > 0")
  if not _number(cfg.ns_steps) or int(cfg.ns_steps) != cfg.ns_steps or (
      cfg.ns_steps < 1):
    bad("ns_steps", "an integer >= 1")
  if cfg.others not in ("adamw", "learned"):
    bad("others", "'adamw' or 'learned'")


def _shape_fields(key, placement, got, want) -> str:
  """The configuration fields that decide where weight ``key``'s shape
  ``got`` differs from ``want``."""
  if placement == "update" and key[:3] == ("layers", "0", "0") and (
      got[1:] == want[1:]):  # the number of inputs
    return "decays and time_scales"
  return "hidden"


def read_weights(path: str, template, config_where: str, placement: str):
  """The weights in the msgpack file ``path``, in ``template``'s structure,
  after checking their names and shapes against ``template`` (built from
  the configuration in ``config_where``) and that they are finite.

  Args:
    path: the msgpack file.
    template: the weights the configuration gives (arrays or shapes).
    config_where: the configuration's file, for the message.
    placement: the configuration's placement.

  Returns:
    The weights (NumPy arrays) in ``template``'s structure.
  """
  try:
    with open(path, "rb") as f:
      raw = serialization.msgpack_restore(f.read())
  except Exception as e:  # noqa: BLE001 - any unreadable file, one line
    raise ValueError(f"{path}: not a readable msgpack file "
                     f"({type(e).__name__})") from None
  want = traverse_util.flatten_dict(serialization.to_state_dict(template))
  got = (traverse_util.flatten_dict(raw) if isinstance(raw, dict) and raw
         else {})
  for key in want:
    name = "/".join(key)
    if key not in got:
      raise ValueError(f"{path}: weight {name} missing (the shapes that "
                       f"{config_where} gives: field hidden)")
    a = got[key]
    if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype,
                                                           np.floating):
      raise ValueError(f"{path}: weight {name} is not a float array")
    shape = tuple(np.shape(want[key]))
    if a.shape != shape:
      raise ValueError(
          f"{path}: weight {name} has shape {list(a.shape)}, but "
          f"{config_where} gives {list(shape)} (fields "
          f"{_shape_fields(key, placement, a.shape, shape)})")
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{path}: weight {name} holds non-finite values "
                       f"(NaN or infinity)")
  extra = sorted("/".join(k) for k in got if k not in want)
  if extra:
    raise ValueError(f"{path}: unexpected weight {extra[0]} (the shapes "
                     f"that {config_where} gives: field hidden)")
  return serialization.from_state_dict(
      template, traverse_util.unflatten_dict(
          {k: np.asarray(got[k]) for k in want}))
