"""File and JSON helpers of the run folder: atomic writes, appends, and
JSON-safe values (shared by :mod:`ngrok_jax.spec`, :mod:`ngrok_jax.results`,
:mod:`ngrok_jax.ampfile` and the runner).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Union

import numpy as np

__all__ = ["atomic_write", "append_text", "dumps", "json_value", "enc_float",
           "dec_float", "is_int"]


def atomic_write(path: str, data: Union[str, bytes]) -> None:
  """Writes ``data`` to ``path`` via a temporary file and ``os.replace``.

  Args:
    path: the file to write.
    data: text or bytes.
  """
  tmp = f"{path}.tmp{os.getpid()}"
  mode = "wb" if isinstance(data, bytes) else "w"
  with open(tmp, mode) as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def append_text(path: str, text: str) -> None:
  """Appends ``text`` to ``path`` (created if missing) with one ``write`` on
  an ``O_APPEND`` descriptor, then ``fsync``."""
  data = text.encode()
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    view = memoryview(data)
    while view:
      view = view[os.write(fd, view):]
    os.fsync(fd)
  finally:
    os.close(fd)


def dumps(obj) -> str:
  """Indented JSON that refuses NaN/inf (encode them first)."""
  return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)


def json_value(v):
  """Python value for JSON: finite floats, ints, None for NaN/inf."""
  if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
    return int(v)
  if isinstance(v, (np.floating, float)):
    v = float(v)
    return v if math.isfinite(v) else None
  return v


_SPECIAL = {"inf": math.inf, "-inf": -math.inf}


def enc_float(v):
  """JSON-safe float: +-inf (e.g. clip=inf, no clipping) as a string."""
  if isinstance(v, float) and math.isinf(v):
    return "inf" if v > 0 else "-inf"
  return v


def dec_float(v):
  """Inverse of :func:`enc_float`."""
  return _SPECIAL.get(v, v) if isinstance(v, str) else v


def is_int(v: Any) -> bool:
  """An integer (Python or NumPy), not a bool."""
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
