"""One writer per run folder: an exclusive OS lock held for a writer's
whole life.

:func:`lock_folder` creates the folder if it is missing (saying whether it
did) and takes ``flock(LOCK_EX | LOCK_NB)`` on the folder itself (an open
file descriptor of the directory; no lock file is written).  The kernel
drops the lock when the descriptor is closed or the process ends in any
way (SIGKILL included), so a lock is never stale.  A second writer gets
:class:`FolderBusy` (a ``ValueError``: exit 2 on the command line) naming
the folder and, where the system says (Linux's ``/proc/locks``), the
process that holds it; it has written nothing.  On a file system without
``flock`` (some network mounts) the folder is used unlocked.
"""
from __future__ import annotations

import errno
import os
from typing import Optional, Tuple

__all__ = ["FolderBusy", "FolderLock", "lock_folder", "holder_pid"]


class FolderBusy(ValueError):
  """Another process is writing the run folder."""


def holder_pid(fd: int) -> Optional[int]:
  """The process holding a ``flock`` on the file of ``fd`` (from Linux's
  ``/proc/locks``), or None when the system does not say."""
  st = os.fstat(fd)
  key = (f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:"
         f"{st.st_ino}")
  try:
    with open("/proc/locks") as f:
      for line in f:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters "->"
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key:
          return int(parts[4])
  except (OSError, ValueError):
    pass
  return None


class FolderLock:
  """A held lock of one folder (:func:`lock_folder`); :meth:`release`
  (or the process's end) drops it.

  Attributes:
    path: the folder.
    created: whether :func:`lock_folder` created the folder.
  """

  def __init__(self, path: str, fd: Optional[int], created: bool):
    self.path, self.fd, self.created = path, fd, created

  def release(self) -> None:
    if self.fd is not None:
      os.close(self.fd)  # closing the descriptor drops the flock
      self.fd = None


def _create(path: str) -> bool:
  """Makes ``path`` (and its parents); whether this call made it."""
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  try:
    os.mkdir(path)
    return True
  except FileExistsError:
    if not os.path.isdir(path):
      raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder",
                               path) from None
    return False


def _try_lock(path: str) -> Tuple[Optional[int], bool]:
  """``(fd, ok)``: the folder's descriptor, locked (``ok``) or held by
  another process (``ok`` false); ``(None, True)`` without flock."""
  import fcntl
  fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, True
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return fd, False
    os.close(fd)  # no flock on this file system
    return None, True


def lock_folder(path: str) -> FolderLock:
  """Creates ``path`` if missing and locks it for this process.

  Args:
    path: the run folder.

  Returns:
    The held :class:`FolderLock` (``created``: this call made the folder).

  Raises:
    FolderBusy: another process holds the folder (nothing was written
      but, at most, the empty folder itself when it was missing).
    OSError: the folder cannot be made or opened (e.g. a file is there).
  """
  path = os.fspath(path)
  for _ in range(10):
    created = _create(path)
    fd, ok = _try_lock(path)
    if not ok:
      pid = holder_pid(fd)
      os.close(fd)
      who = f"process {pid}" if pid else "another process"
      raise FolderBusy(f"{path!r} is being written by {who} (a run or "
                       "meta-training in progress); wait for it to end or "
                       "choose another folder")
    # the holder before us may have removed the folder (a failed start):
    # then this descriptor is of a deleted folder; take the new one
    try:
      same = fd is None or os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      same = False
    if same:
      return FolderLock(path, fd, created)
    os.close(fd)
  raise FolderBusy(f"{path!r} keeps being replaced by another process")
