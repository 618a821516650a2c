"""Command-line flags generated from :class:`ngrok_jax.TrainConfig`'s fields,
their converters, and :class:`UsageError` (bad input after parsing).

Each field's ``metadata`` (help text, choices, flag name) sits next to the
field; :mod:`ngrok_jax._src.cli.train_args` turns every field into one
``--flag``, so a new field is reachable from the command line without
touching the CLI.
Converters only parse (integer, number, list, yes/no); every range and
choice is checked once, by ``TrainConfig.validate`` / ``RunSpec.validate``.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from ngrok_jax._src.training.config import TrainConfig

__all__ = ["UsageError", "config_flag", "config_fields", "metavar_of",
           "int_arg", "float_arg", "seeds_arg", "seed_list_arg", "sweep_arg"]


class UsageError(Exception):
  """Bad input: printed as one line, exit status 2."""


def int_arg(flag):
  """An argparse converter to ``int`` with a one-line error naming the flag.

  Args:
    flag: the flag's name, for the error message.

  Returns:
    A function ``str -> int`` raising ``argparse.ArgumentTypeError``.
  """
  def f(s):
    try:
      return int(s)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"{flag} must be an integer, got {s!r}") from None
  return f


def float_arg(flag):
  """An argparse converter to ``float`` with a one-line error naming the flag.

  Args:
    flag: the flag's name, for the error message.

  Returns:
    A function ``str -> float`` raising ``argparse.ArgumentTypeError``.
  """
  def f(s):
    try:
      return float(s)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"{flag} must be a number, got {s!r}") from None
  return f


def _list(flag, item, what):
  def f(s):
    try:
      return tuple(item(x) for x in s.split(",") if x.strip())
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"{flag} must be comma-separated {what}, got {s!r}") from None
  return f


def _yes_no(flag):
  def f(s):
    if s not in ("yes", "no"):
      raise argparse.ArgumentTypeError(f"{flag} must be yes or no, got {s!r}")
    return s == "yes"
  f.metavar = "{yes,no}"
  return f


_SEEDS_HOW = ("a count (--seeds 4: seeds 0..3), a list (--seeds 0,5,7), an "
              "inclusive range (--seeds 3..5 or 3-5), or one seed with "
              "--seed-list 0")


def _seed_items(s: str):
  """The seeds of a list whose items are seeds or inclusive ranges
  ``A..B`` / ``A-B``; None where an item is neither."""
  out = []
  for item in (x.strip() for x in s.split(",")):
    if not item:
      continue
    sep = ".." if ".." in item else "-" if "-" in item[1:] else None
    try:
      if sep is None:
        out.append(int(item))
        continue
      lo, hi = (int(v) for v in item.split(sep, 1))
    except ValueError:
      return None
    if lo > hi:
      return None
    out += range(lo, hi + 1)
  return out


def seeds_arg(s):
  """``--seeds``: '4' -> 4 seeds (0..3); '0,5,7' -> those seeds; '3..5' or
  '3-5' -> seeds 3, 4, 5 (items of a list may be ranges too).

  Args:
    s: the value of ``--seeds``.

  Returns:
    A count (``int``) or a list of seeds.

  Raises:
    argparse.ArgumentTypeError: a form that is none of these, saying how.
  """
  s = s.strip()
  if s.isdigit():
    if int(s) < 1:
      raise argparse.ArgumentTypeError(
          f"--seeds {s}: a bare number is a count of seeds, at least 1; "
          f"for the single seed {s} write --seed-list {s} (or --seeds {s},)")
    return int(s)
  v = _seed_items(s)
  if not v or min(v) < 0 or len(set(v)) != len(v):
    raise argparse.ArgumentTypeError(
        f"--seeds takes {_SEEDS_HOW}, distinct and >= 0; got {s!r}")
  return v


def seed_list_arg(s):
  """``--seed-list``: the seeds themselves, '0' -> [0] (ranges allowed).

  Args:
    s: the value of ``--seed-list``.

  Returns:
    A list of seeds.
  """
  v = _seed_items(s)
  if not v or min(v) < 0 or len(set(v)) != len(v):
    raise argparse.ArgumentTypeError(
        f"--seed-list takes distinct seeds >= 0, e.g. 0 or 0,5,7 or 3..5; "
        f"got {s!r}")
  return v


def sweep_arg(s):
  """'c=0.5,1,2' -> ('c', (0.5, 1.0, 2.0)).

  Args:
    s: one value of ``--sweep``.

  Returns:
    ``(name, values)``.
  """
  name, sep, vals = s.partition("=")
  if not sep or not name.strip():
    raise argparse.ArgumentTypeError(
        f"--sweep must be NAME=v1,v2,... with NAME a hyperparameter, got "
        f"{s!r}")
  return name.strip(), _list(f"--sweep {name.strip()}", float, "numbers")(
      vals)


# ----------------------------------------------- flags from TrainConfig fields
def config_flag(field: dataclasses.Field) -> str:
  """The command-line flag of a :class:`TrainConfig` field:
  ``metadata["flag"]`` or ``--<name with dashes>``."""
  return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _config_type(field: dataclasses.Field, hint):
  """The converter of a field's flag, from its type (Optional unwrapped)."""
  flag = config_flag(field)
  if typing.get_origin(hint) is typing.Union:
    hint = next(a for a in typing.get_args(hint) if a is not type(None))
  if field.metadata.get("choices"):
    f = str
  elif hint is bool:
    return _yes_no(flag)
  elif hint is int:
    f = int_arg(flag)
  elif hint is float:
    f = float_arg(flag)
  elif hint is str:
    f = str
  elif typing.get_origin(hint) is tuple:
    item = typing.get_args(hint)[0]
    f = _list(flag, item, "integers" if item is int else "numbers")
  else:
    raise TypeError(f"no command-line type for TrainConfig.{field.name} "
                    f"({hint}); add one to ngrok_jax._src.cli.flags._config_type")
  return f


def config_fields():
  """(field, flag, converter) of every TrainConfig field with its own flag
  (``method`` is set by ``--methods``; fields with ``cli=False`` have none).

  Returns:
    A list of ``(dataclasses.Field, str, converter)`` triples.
  """
  hints = typing.get_type_hints(TrainConfig)
  return [(f, config_flag(f), _config_type(f, hints[f.name]))
          for f in dataclasses.fields(TrainConfig)
          if config_flag(f) != "--methods" and f.metadata.get("cli", True)]


def metavar_of(field: dataclasses.Field, hint, typ) -> str:
  if field.metadata.get("choices"):
    return "{" + ",".join(field.metadata["choices"]) + "}"
  if hasattr(typ, "metavar"):
    return typ.metavar
  args = typing.get_args(hint)
  if typing.get_origin(hint) is tuple:
    return ("N" if args[0] is int else "X") + ",..."
  return "N" if int in (args or (hint,)) else "X"
