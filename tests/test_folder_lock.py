"""One writer per run folder (issue 40, items 1 and 7): the folder's OS lock
(:mod:`ngrok_jax._src.storage.folderlock`, taken by ``runfolder.Guard``).

Each test names in its docstring the data it protects.  The racing writers
are small subprocesses that load only the storage layer (no JAX), so a try
costs a fraction of a second; the command-line refusals run in-process
against a subprocess holding the lock."""
import os
import signal
import subprocess
import sys

import pytest

from ngrok_jax._src.storage import runfolder
from ngrok_jax._src.storage.folderlock import FolderBusy, lock_folder
from run_folders import (TINY_FLAGS, cli_main, folder_listing,
                         write_run_folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The storage layer without the package's __init__ (which imports JAX).
_LIGHT = """
import os, sys, time, types
for name in ("ngrok_jax", "ngrok_jax._src", "ngrok_jax._src.core",
             "ngrok_jax._src.storage"):
  m = types.ModuleType(name)
  m.__path__ = [os.path.join(sys.argv[1], *name.split("."))]
  sys.modules[name] = m
from ngrok_jax._src.storage import folderlock, runfolder
"""

# A writer as the command line is one: check the folder, take it (Guard),
# check it again under the lock (runner.execute's second check), write.
_WRITER = _LIGHT + """
out = sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()  # both writers start at the same moment
try:
  runfolder.check_new_folder(out)
  with runfolder.Guard(out):
    runfolder.check_new_folder(out)
    os.makedirs(out, exist_ok=True)  # as runner.execute
    for name in ("config.json", "metrics.jsonl"):
      time.sleep(0.05)  # the start-up work before config.json, a chunk
      with open(os.path.join(out, name), "w") as f:
        f.write(str(os.getpid()))
    runfolder.mark_progress(out)
    with open(os.path.join(out, "summary.json"), "w") as f:
      f.write(str(os.getpid()))
except ValueError as e:
  print(e, file=sys.stderr)
  sys.exit(2)
"""

_HOLDER = _LIGHT + """
lock = folderlock.lock_folder(sys.argv[2])
print("locked", flush=True)
time.sleep(600)
"""


def test_two_writers_one_folder_one_refused_nothing_deleted(tmp_path):
  """Protects a new run's config.json, metrics.jsonl and summary.json
  against a second writer started on the same folder at the same moment
  (20 tries): one writer completes, the other exits 2 with one line naming
  the folder and the process holding it (or, when it comes after the
  first has finished, the run it holds), and every file of the winner is
  there with the winner's bytes."""
  concurrent, tries = 0, 20
  outs = [str(tmp_path / f"run{i}") for i in range(tries)]
  pairs = [[subprocess.Popen([sys.executable, "-c", _WRITER, ROOT, out],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)] for out in outs]  # started at once: cheaper
  for out, procs in zip(outs, pairs):
    for p in procs:
      assert p.stdout.readline().strip() == "ready"
    for p in procs:
      p.stdin.write("go\n")
      p.stdin.flush()
    res = [(p.wait(timeout=60), p.stderr.read(), p.pid) for p in procs]
    for p in procs:
      for f in (p.stdin, p.stdout, p.stderr):
        f.close()
    assert sorted(r[0] for r in res) == [0, 2], res
    (_, _, winner), (_, err, _) = sorted(res, key=lambda r: r[0])
    assert len(err.strip().splitlines()) == 1 and out in err, err
    if f"process {winner}" in err:
      concurrent += 1
    else:
      assert "already holds a run" in err, err
    assert folder_listing(out) == {n: str(winner).encode() for n in (
        "config.json", "metrics.jsonl", "summary.json")}
  print(f"{concurrent} of {tries} refused by the lock")
  assert concurrent > 0  # the lock, not only the folder check, refused


@pytest.fixture
def holder(tmp_path):
  """Starts a process holding the lock of a folder; yields
  ``(folder, pid)``; SIGKILLs it after the test."""
  started = []

  def start(path):
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, ROOT, str(path)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    started.append(p)
    return p
  yield start
  for p in started:
    p.kill()
    p.wait()
    p.stdout.close()


def test_a_running_run_is_refused_to_every_writer(tmp_path, holder, capsys):
  """Protects a run that is still training (its metrics.jsonl, config.json
  and checkpoints): ``train --resume`` of it and a new ``train
  --cross-tasks`` run into a held folder exit 2 with one line naming the
  folder and the holder's PID and change nothing; once the holder is
  killed (SIGKILL), no stale lock remains."""
  run = write_run_folder(str(tmp_path / "run"), ["adam"], [0],
                         [dict(method="adam", seed=0, step=10)], 10, 10)
  p = holder(run)
  before = folder_listing(run)
  rc, _, err = cli_main(["train", "--resume", run, "--no-progress",
                         "--no-plots"], capsys)
  assert rc == 2 and f"process {p.pid}" in err and run in err, err
  assert len(err.strip().splitlines()) == 1, err
  assert folder_listing(run) == before
  empty = tmp_path / "cross"
  q = holder(empty)
  rc, _, err = cli_main(["train", "--cross-tasks", "a+b,a-b", "--out",
                         str(empty), "--steps", "10", "--eval-every", "10",
                         "--seeds", "1", "--no-progress", "--no-plots"]
                        + TINY_FLAGS, capsys)
  assert rc == 2 and f"process {q.pid}" in err, err
  assert os.listdir(empty) == []
  p.send_signal(signal.SIGKILL)
  p.wait()
  lock = lock_folder(run)  # the kernel dropped the killed holder's lock
  lock.release()


def test_failed_start_removes_only_what_it_created(tmp_path):
  """Protects the files of a folder taken over by nobody else: a Guard
  whose start fails removes only the entries its own process created, and
  does not rewrite the run files it did not change; a second Guard of a
  held folder is refused before it reads the folder."""
  d = tmp_path / "r"
  d.mkdir()
  (d / "config.json").write_text("the run")
  (d / "notes.txt").write_text("the user's")
  mtime = os.stat(d / "config.json").st_mtime_ns
  with pytest.raises(KeyError):
    with runfolder.Guard(str(d)):
      (d / "metrics.jsonl").write_text("ours")
      raise KeyError("fails")
  assert sorted(os.listdir(d)) == ["config.json", "notes.txt"]
  assert os.stat(d / "config.json").st_mtime_ns == mtime
  lock = lock_folder(str(d))
  try:
    with pytest.raises(FolderBusy, match=f"process {os.getpid()}"):
      with runfolder.Guard(str(d)):
        pass
  finally:
    lock.release()


def test_cross_tasks_without_a_task_is_one_line(tmp_path, capsys):
  """Protects minutes of compute: ``--cross-tasks ,`` (no task) is refused
  before any training instead of running a single-task run and failing
  at its end."""
  out = tmp_path / "x"
  rc, _, err = cli_main(["train", "--cross-tasks", ",", "--out", str(out)]
                        + TINY_FLAGS, capsys)
  assert rc == 2 and "--cross-tasks" in err, err
  assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_runner_checks_the_folder_again_under_the_lock(tmp_path,
                                                       monkeypatch):
  """Protects a run that another writer finished between this writer's
  first look at the folder and its lock: ``runner.run`` checks the folder
  again once it holds it, refuses ("already holds a run") and leaves that
  run's config.json and metrics.jsonl as they were."""
  from ngrok_jax._src.running import runner
  d = str(tmp_path / "r")
  real = runfolder.check_resources

  def meanwhile(spec, memory=True):  # the other writer ends meanwhile
    real(spec, memory)
    write_run_folder(d, ["adam"], [0], [dict(method="adam", seed=0,
                                             step=10)], 10, 10)
  monkeypatch.setattr(runfolder, "check_resources", meanwhile)
  with pytest.raises(ValueError, match="already holds a run"):
    runner.run(dict(task="a+b", p=11, depth=1, dim=16, heads=2), "adam", 1,
               10, 10, out_dir=d, progress=False, plots=False)
  monkeypatch.undo()
  before = folder_listing(d)
  write_run_folder(d, ["adam"], [0], [dict(method="adam", seed=0,
                                           step=10)], 10, 10)
  assert folder_listing(d) == before
