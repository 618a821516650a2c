"""A run's log noise and a full disk.

* :class:`Noise`: while a run writes its folder, the log records of orbax
  (``absl``) and ``asyncio`` and exceptions of background threads go to
  ``errors.log`` (:data:`NOISE_LOG`) in the folder, each distinct message
  once.
* :func:`is_disk_full`: whether an exception is a full disk (the command
  line then exits with :data:`EXIT_DISK_FULL`).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from ngrok_jax._src.core.fileio import append_text

__all__ = ["NOISE_LOG", "EXIT_DISK_FULL", "Noise", "is_disk_full"]

#: Library log noise of a run (orbax, asyncio, background threads).
NOISE_LOG = "errors.log"
#: Exit status of ``ngrok-jax`` when the disk is full.
EXIT_DISK_FULL = 3


def is_disk_full(e: BaseException) -> bool:
  """Whether ``e`` (or an exception it wraps) is a full disk."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if getattr(e, "errno", None) == 28 or "No space left on device" in str(
        e) or "os_error_code='28'" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


_PREFIX = re.compile(r"^(\[[^\]]*\])+\s*")


class Noise(logging.Handler):
  """Sends the ``absl`` (orbax) and ``asyncio`` log records and the
  exceptions of background threads to ``out_dir/errors.log`` while active
  (``with Noise(out_dir):``), each distinct message once (repeats
  counted at the end).

  Args:
    out_dir: the run folder (``None``: nothing captured).
  """

  LOGGERS = ("absl", "asyncio", "orbax")

  def __init__(self, out_dir: Optional[str]):
    super().__init__(logging.WARNING)
    self.out_dir = out_dir
    self.seen: Dict[str, int] = {}
    self._old: List[Any] = []

  @property
  def path(self) -> str:
    return os.path.join(self.out_dir, NOISE_LOG)

  def _write(self, key: str, text: str) -> None:
    key = _PREFIX.sub("", key.strip().splitlines()[0] if key.strip() else "")
    self.seen[key] = self.seen.get(key, 0) + 1
    if self.seen[key] > 1:
      return
    try:
      if os.path.isdir(self.out_dir):
        append_text(self.path, time.strftime("%H:%M:%S ") + text.rstrip()
                    + "\n")
    except OSError:
      pass

  def emit(self, record: logging.LogRecord) -> None:
    key = str(record.exc_info[1]) if record.exc_info and record.exc_info[
        1] is not None else record.getMessage()
    self._write(key, logging.Formatter(
        "%(levelname)s:%(name)s:%(message)s").format(record))

  def _thread_hook(self, a) -> None:
    import traceback
    self._write(str(a.exc_value), "".join(traceback.format_exception(
        a.exc_type, a.exc_value, a.exc_traceback)))

  def _unraisable(self, u) -> None:
    self._write(str(u.exc_value), f"{u.err_msg or 'unraisable'}: "
                f"{type(u.exc_value).__name__}: {u.exc_value}")

  def __enter__(self):
    if self.out_dir is None:
      return self
    for name in self.LOGGERS:
      lg = logging.getLogger(name)
      self._old.append((lg, lg.propagate))
      lg.addHandler(self)
      lg.propagate = False
    self._hooks = (threading.excepthook, sys.unraisablehook)
    threading.excepthook, sys.unraisablehook = (self._thread_hook,
                                                self._unraisable)
    return self

  def __exit__(self, *exc):
    if self.out_dir is None:
      return False
    for lg, prop in self._old:
      lg.removeHandler(self)
      lg.propagate = prop
    threading.excepthook, sys.unraisablehook = self._hooks
    rep = {k: n for k, n in self.seen.items() if n > 1}
    for k, n in rep.items():
      try:
        if os.path.isdir(self.out_dir):
          append_text(self.path, f"(repeated {n} times) {k[:300]}\n")
      except OSError:
        pass
    return False
