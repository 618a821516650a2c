"""Several JAX processes: 2 processes x 2 forced host CPU devices on localhost.

The two processes are started with ``ngrok-jax train --coordinator
127.0.0.1:PORT --num-processes 2 --process-id I`` (through ``cli.main``, with
gloo CPU collectives), while this test process trains the same run on one
device as the reference.  Checked: the 2-process run folder equals the
1-process run to the tolerances of ``tests/test_sharding.py``; only process
0 writes it; a checkpoint of the 1-process run resumes in 2 processes and a
checkpoint of the 2-process run resumes in 1 process, with the same
metrics.  The processes are bounded in time and killed on any failure.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np

from ngrok_jax._src.cli import cli, train_args
from ngrok_jax._src.running import runner
from tests.tolerances import layout_atol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = ["--task", "a+b", "--p", "11", "--dim", "16", "--heads", "2",
        "--depth", "1", "--amp-hidden", "8,8", "--batch-size", "32",
        "--meta-every", "2", "--wd", "0.001", "--seeds", "4", "--steps", "20",
        "--eval-every", "10", "--checkpoint-every", "10", "--methods",
        "neuralgrok", "--no-progress", "--no-plots"]

# One process of the pair: a new run into `two`, then (once this test has
# put the rewound 1-process folder in place) a resume of `one_to_two`.
PROCESS = textwrap.dedent("""
    import json, os, sys, time
    from ngrok_jax import cli, sharding
    addr, pid, two, one_to_two, ready = sys.argv[1:6]
    tiny = json.loads(sys.argv[6])
    dist = ["--coordinator", addr, "--num-processes", "2", "--process-id", pid]
    rc = cli.main(["train", *tiny, "--out", two, *dist])
    if rc:
      sys.exit(rc)
    t0 = time.time()
    while not os.path.exists(ready):
      if time.time() - t0 > 300:
        sys.exit("timed out waiting for " + ready)
      time.sleep(0.2)
    rc = cli.main(["train", "--resume", one_to_two, "--no-progress",
                   "--no-plots", *dist])
    import jax
    try:
      sharding.shard_count(3)
      uneven = None
    except ValueError as e:
      uneven = str(e)
    print("RESULT" + json.dumps(dict(
        rc=rc, processes=jax.process_count(), devices=jax.device_count(),
        local=jax.local_device_count(), uneven=uneven,
        counts={n: sharding.shard_count(n) for n in (2, 4, 8)})), flush=True)
    sys.exit(rc)
""")


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _rows(folder):
  with open(os.path.join(folder, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


def _rewind(src, dst):
  """A copy of run folder ``src`` as if it had stopped after its step-10
  checkpoint."""
  shutil.copytree(src, dst)
  shutil.rmtree(os.path.join(dst, "checkpoints", "neuralgrok", "20"))
  os.remove(os.path.join(dst, "summary.json"))


def _assert_same_metrics(ref, rows, name):
  assert len(rows) == len(ref), name  # process 1 wrote nothing
  for a, b in zip(ref, rows):
    assert a.keys() == b.keys(), name
    for k, v in a.items():
      if not isinstance(v, float) or k.endswith("/acc"):
        assert b[k] == v, (name, k)
      else:  # tolerances and their reasons: tests/test_sharding.py
        rtol = 1e-5 if k == "weights/entropy" else 1e-6
        np.testing.assert_allclose(b[k], v, rtol=rtol, atol=layout_atol(k),
                                   err_msg=f"{name} {k}")


def test_two_processes_equal_one_and_resume_across_process_counts(tmp_path):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  one_to_two, ready = str(tmp_path / "one_to_two"), str(tmp_path / "ready")
  addr = f"127.0.0.1:{_free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  env["XLA_FLAGS"] = " ".join(
      [f for f in env.get("XLA_FLAGS", "").split()
       if "xla_force_host_platform_device_count" not in f] +
      ["--xla_force_host_platform_device_count=2"])
  procs, logs = [], []
  try:
    for pid in (0, 1):
      out = open(tmp_path / f"p{pid}.out", "w")
      err = open(tmp_path / f"p{pid}.err", "w")
      logs += [out, err]
      procs.append(subprocess.Popen(
          [sys.executable, "-c", PROCESS, addr, str(pid), two, one_to_two,
           ready, json.dumps(TINY)], env=env, cwd=ROOT, stdout=out,
          stderr=err))
    # the reference: the same run in this process, on one device
    spec = train_args.spec_from_args(cli.build_parser().parse_args(
        ["train", *TINY]))
    runner.execute(spec, one, progress=False, plots=False,
                   report=lambda m: None, devices=1)
    _rewind(one, one_to_two)
    open(ready, "w").close()
    deadline = time.time() + 400
    for p in procs:
      p.wait(timeout=max(1, deadline - time.time()))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in logs:
      f.close()
  err = [(tmp_path / f"p{i}.err").read_text() for i in (0, 1)]
  out = [(tmp_path / f"p{i}.out").read_text() for i in (0, 1)]
  for i in (0, 1):
    assert procs[i].returncode == 0, err[i][-3000:]
  res = [json.loads([l for l in o.splitlines()
                     if l.startswith("RESULT")][-1][len("RESULT"):])
         for o in out]
  for r in res:
    assert r["processes"] == 2 and r["devices"] == 4 and r["local"] == 2
    assert r["counts"] == {"2": 2, "4": 4, "8": 4}, r
    assert "multiple of 2" in r["uneven"], r
  # process 0 reports and prints the table; process 1 stays quiet
  assert "seeds sharded over 4 devices of 2 processes" in err[0]
  assert "neuralgrok: resuming from step 10" in err[0]
  assert "| neuralgrok |" in out[0] and "| neuralgrok |" not in out[1]
  assert "sharded" not in err[1]

  # the 2-process checkpoint at step 10, resumed in this single process
  two_to_one = str(tmp_path / "two_to_one")
  _rewind(two, two_to_one)
  msgs = []
  runner.resume(two_to_one, progress=False, plots=False,
                report=msgs.append, devices=1)
  assert "neuralgrok: resuming from step 10" in msgs

  ref = _rows(one)
  assert len(ref) == 8  # 4 seeds x 2 evaluations
  for name in ("two", "one_to_two", "two_to_one"):
    _assert_same_metrics(ref, _rows(str(tmp_path / name)), name)
    s = json.load(open(tmp_path / name / "summary.json"))
    per = s["methods"]["neuralgrok"]
    assert per["last_step"] == [20] * 4 and per["complete"], (name, per)
  # the amplifier (gathered from both processes) equals the 1-process one
  from ngrok_jax._src.storage.ampfile import load_amplifier
  import jax
  a_ref = jax.tree.leaves(load_amplifier(one)[0])
  for name in ("two", "one_to_two"):
    a = jax.tree.leaves(load_amplifier(str(tmp_path / name))[0])
    for x, y in zip(a_ref, a):
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7, err_msg=name)
