r"""A user's own optimizer as a method: :func:`register_method` (Python) and
``module:factory`` (``--methods``, ``runner.run(methods=...)``,
``experiments.tune --methods``).

The factory's contract::

    factory(learning_rate, weight_decay) -> optax.GradientTransformation

``learning_rate`` is the run's ``lr`` with the warm-up (an optax schedule
from 0 to ``lr`` over ``warmup_steps`` steps; ``lr`` itself without
warm-up), ``weight_decay`` the run's ``wd``; both may be per-seed traced
scalars, so the factory passes them on to optax as they are.  A factory
that also takes ``b1``, ``b2`` or ``eps`` (by name, or ``**kwargs``) gets
the run's ``--b1``, ``--b2``, ``--eps``.  The library applies, outside the
factory, as for its own methods: the global-norm clip first (``--clip``;
off by default), and the weight-norm projection last
(``--fix-weight-norm``).  The method is::

    chain(clip_by_global_norm(clip), factory(warmup(lr), wd),
          project_weight_norm(fix_weight_norm))

Its tuning grid (``experiments.tune``): the factory's ``grid`` attribute
(``{"lr": values, "wd": values}``), else :data:`USER_GRID`.  The run
folder's ``config.json`` records where the method came from
(``method_sources``: the ``module:factory`` string, the module's file and
the SHA-256 of its source), and ``--resume`` of that folder imports it
again.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax.numpy as jnp
import optax

from ngrok_jax._src.optim.optimizers import clip_by_global_norm
from ngrok_jax._src.optim.registry import (LR_GRID, Method, get_method,
                                           method_names, register, warmup_lr,
                                           with_projection)

__all__ = ["register_method", "method_from_source", "resolve_method",
           "ensure_sources", "USER_GRID", "FACTORY_KWARGS"]

#: The default tuning grid of a user's method: the library's learning
#: rates, and weight decays for a decoupled (AdamW-like) decay.
USER_GRID = {"lr": LR_GRID, "wd": (0.0, 0.3, 1.0)}
#: The hyperparameters a factory gets when it names them (besides the
#: learning rate and the weight decay).
FACTORY_KWARGS = ("b1", "b2", "eps")
_NAMES = ("learning_rate", "weight_decay")


def _factory_kwargs(factory: Callable) -> Tuple[str, ...]:
  """The names of :data:`FACTORY_KWARGS` that ``factory`` takes."""
  try:
    params = inspect.signature(factory).parameters
  except (TypeError, ValueError):
    return ()
  if any(p.kind is p.VAR_KEYWORD for p in params.values()):
    return FACTORY_KWARGS
  return tuple(k for k in FACTORY_KWARGS if k in params)


def _optimizer(factory: Callable, kwargs: Tuple[str, ...]):
  """The record's ``optimizer``: clip, the factory's transformation at
  the warmed-up learning rate, the projection."""
  def build(cfg, hp, parts, adam):
    del parts, adam
    tx = factory(warmup_lr(cfg, hp), hp["wd"], **{k: hp[k] for k in kwargs})
    return optax.with_extra_args_support(with_projection(cfg, optax.chain(
        clip_by_global_norm(hp["clip"]), tx)))
  return build


def _check_factory(label: str, factory: Callable,
                   kwargs: Tuple[str, ...]) -> None:
  """ValueError (one line) unless ``factory(1e-3, 0.1)`` is an optax
  transformation whose ``init`` and ``update`` run on a 2 x 2 parameter."""
  if not callable(factory):
    raise ValueError(f"{label} is not callable (a method's factory is "
                     "factory(learning_rate, weight_decay) -> "
                     "optax.GradientTransformation)")
  extra = {"b1": 0.9, "b2": 0.98, "eps": 1e-8}
  try:
    tx = factory(1e-3, 0.1, **{k: extra[k] for k in kwargs})
  except Exception as e:  # noqa: BLE001 - the user's code, reported
    raise ValueError(f"{label}(learning_rate, weight_decay) failed: "
                     f"{type(e).__name__}: {e}") from None
  if not isinstance(tx, optax.GradientTransformation):
    raise ValueError(f"{label}(learning_rate, weight_decay) returned "
                     f"{type(tx).__name__}, not an "
                     "optax.GradientTransformation")
  params = {"w": jnp.ones((2, 2), jnp.float32)}
  try:
    tx.update(params, tx.init(params), params)
  except Exception as e:  # noqa: BLE001 - the user's code, reported
    raise ValueError(f"the transformation of {label} fails on a 2 x 2 "
                     f"parameter: {type(e).__name__}: {e}") from None


def _grid(label: str, grid) -> Dict[str, Tuple[float, ...]]:
  grid = USER_GRID if grid is None else grid
  if not isinstance(grid, Mapping) or not grid or set(grid) - {"lr", "wd"}:
    raise ValueError(f"the grid of {label} must map lr and/or wd to values, "
                     f"got {grid!r}")
  out = {}
  for k, v in grid.items():
    try:
      out[k] = tuple(float(x) for x in v)
    except (TypeError, ValueError):
      out[k] = ()
    if not out[k]:
      raise ValueError(f"the grid of {label}: {k} needs numbers, got {v!r}")
  return out


def _origin(factory: Callable, source: Optional[str]) -> Dict[str, str]:
  """Where ``factory`` comes from: ``source`` (``module:attribute``; by
  default the factory's own module and name), the module's file and the
  SHA-256 of that file."""
  module = getattr(factory, "__module__", None)
  if source is None:
    source = f"{module}:{getattr(factory, '__qualname__', '?')}"
  mod = sys.modules.get(source.partition(":")[0]) or sys.modules.get(
      module or "")
  path = getattr(mod, "__file__", None)
  out = {"source": source, "file": os.path.abspath(path) if path else ""}
  if path and os.path.isfile(path):
    with open(path, "rb") as f:
      out["sha256"] = hashlib.sha256(f.read()).hexdigest()
  return out


def register_method(name: str, factory: Callable, *,
                    grid: Optional[Mapping[str, Sequence[float]]] = None,
                    wd: float = 0.0, summary: Optional[str] = None,
                    source: Optional[str] = None) -> Method:
  """Registers a user's optax optimizer as the method ``name``: then
  ``runner.run(methods=[name, ...])``, ``experiments.tune`` and, in the
  same process, ``ngrok_jax.cli.main(["train", "--methods", name])`` run
  it as one of the library's methods (the factory's contract: this
  module's docstring).  Validated first: the factory is called once and
  its transformation run on a 2 x 2 parameter.

  Args:
    name: the method's name (not one of the library's own; registering a
      name again replaces that user's method).
    factory: ``factory(learning_rate, weight_decay[, b1=, b2=, eps=]) ->
      optax.GradientTransformation``.
    grid: its tuning grid ``{"lr": values, "wd": values}`` (default: the
      factory's ``grid`` attribute, else :data:`USER_GRID`).
    wd: the weight decay when the run sets none.
    summary: one line for the docs and the run's description (default:
      the first line of the factory's docstring).
    source: ``"module:attribute"`` that imports the factory again (default:
      the factory's module and name), recorded in the run folder for
      ``--resume``.

  Returns:
    The registered :class:`ngrok_jax.registry.Method`.

  Raises:
    ValueError: one line: the factory does not keep its contract, the
      grid or name is not valid.
  """
  label = f"method {name!r}'s factory"
  kwargs = _factory_kwargs(factory) if callable(factory) else ()
  _check_factory(label, factory, kwargs)
  grid = _grid(label, getattr(factory, "grid", None) if grid is None
               else grid)
  doc = (inspect.getdoc(factory) or "").strip().splitlines()
  summary = summary or (doc[0].rstrip(".") if doc else
                        f"{getattr(factory, '__qualname__', name)}, a "
                        "user's optax optimizer")
  return register(Method(
      name, summary, transform=lambda cfg, hp, parts: optax.identity(),
      optimizer=_optimizer(factory, kwargs), defaults={"wd": float(wd)},
      grid=grid, coupled_decay=False, origin=_origin(factory, source)))


def method_from_source(source: str) -> Method:
  """The method of ``"module:factory"`` (imported, validated and
  registered under the factory's name; again: the registered one).

  Args:
    source: ``"package.module:factory"``: the module is imported as Python
      does (``sys.path``: the working folder, ``PYTHONPATH``, installed
      packages).

  Returns:
    Its :class:`ngrok_jax.registry.Method`.

  Raises:
    ValueError: one line: not ``module:factory``, the module does not
      import, it has no such attribute, or the factory does not keep its
      contract.
  """
  module, colon, attr = source.partition(":")
  if not colon or not module.strip() or not attr.strip() or ":" in attr:
    raise ValueError(f"a user's method is module:factory, got {source!r}")
  for r in (get_method(n) for n in method_names()):
    if r.origin and r.origin.get("source") == source:
      return r
  if os.getcwd() not in sys.path and "" not in sys.path:
    sys.path.append(os.getcwd())  # ./my_module.py, as python -m finds it
  try:
    mod = importlib.import_module(module)
  except Exception as e:  # noqa: BLE001 - the user's module, reported
    raise ValueError(f"method {source}: cannot import {module!r} "
                     f"({type(e).__name__}: {e})") from None
  factory = mod
  for part in attr.split("."):
    if not hasattr(factory, part):
      raise ValueError(f"method {source}: module {module!r} "
                       f"({getattr(mod, '__file__', '?')}) has no "
                       f"attribute {attr!r}")
    factory = getattr(factory, part)
  name = attr.split(".")[-1]
  return register_method(name, factory, source=source)


def resolve_method(method: str) -> str:
  """The method name of ``method``: a registered name as it is, a
  ``"module:factory"`` imported and registered (:func:`method_from_source`).
  """
  if isinstance(method, str) and ":" in method:
    return method_from_source(method.strip()).name
  return method


def _root_of(source: str, path: str) -> str:
  """The folder from which ``source``'s module imports as the file
  ``path`` ('' when the path does not end as the module's name)."""
  parts = source.partition(":")[0].split(".")
  stem = os.path.splitext(os.path.abspath(path))[0] if path else ""
  tail = os.path.join(*parts)
  if stem.endswith(os.sep + os.path.join(tail, "__init__")):
    stem = stem[:-len(os.sep + "__init__")]
  if not stem.endswith(os.sep + tail) or not os.path.isfile(path):
    return ""
  return stem[:-len(tail)].rstrip(os.sep) or os.sep


def ensure_sources(sources: Mapping[str, Mapping[str, str]],
                   where: str = "the run") -> None:
  """Registers the user's methods a run folder records (``config.json``'s
  ``method_sources``) that are not registered now, importing each from
  its ``module:factory``.

  Args:
    sources: ``{method: {"source": ..., "file": ..., "sha256": ...}}``.
    where: the run folder, for the message.

  Raises:
    ValueError: one line: a method's module is gone or no longer keeps the
      contract.
  """
  for name, origin in (sources or {}).items():
    if name in method_names():
      continue
    src = origin.get("source", "?")
    root = _root_of(src, origin.get("file") or "")
    if root and root not in sys.path:  # the module where the run found it
      sys.path.append(root)
    try:
      rec = method_from_source(src)
    except ValueError as e:
      raise ValueError(f"{where} uses method {name!r} from {src} (file "
                       f"{origin.get('file') or '?'}), which cannot be "
                       f"loaded now: {e}") from None
    if rec.name != name:
      raise ValueError(f"{where} uses method {name!r} from {src}, which "
                       f"now registers {rec.name!r}")
