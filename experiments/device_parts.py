"""The correctness parts of ``experiments/device_check.py`` and what every
part shares (the budget, the context, the paper-size configurations)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

# Before jax starts: allocate GPU memory as needed (not 75% up front), so the
# pytest subprocesses fit beside this process and peak memory means something.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_STEPS = 300_000
#: float32 tolerances of the device-against-CPU comparison (stated, not
#: tuned: XLA's kernels round differently per backend; 20 steps).
F32_RTOL, F32_ATOL = 1e-3, 1e-5
TINY = dict(task="a+b", p=11, depth=1, dim=16, heads=2, batch_size=32,
            amp_hidden=(8, 8), meta_every=2, wd=1e-3)


class Budget:
  """A global deadline; ``left()`` seconds remain, ``spare()`` of them
  before the time kept for the hard task (``reserve``)."""

  def __init__(self, seconds: float, reserve: float = 0.0):
    self.start, self.seconds, self.reserve = time.time(), seconds, reserve

  def left(self) -> float:
    return self.seconds - (time.time() - self.start)

  def spare(self) -> float:
    return self.left() - self.reserve


@dataclasses.dataclass
class Ctx:
  """What the parts share: sizes, the budget, and the outputs."""
  out: str
  dry: bool
  budget: Budget
  log: Callable[[str], None]
  record: Dict[str, Any]
  programs: Dict[Any, Any] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------ helpers
def paper_config(name: str, method: str, dry: bool, **over):
  """The ``TrainConfig`` of preset ``name`` for ``method`` (its own
  values from ``ngrok_jax.presets``; dry run: a tiny model)."""
  from ngrok_jax.presets import get_preset
  from ngrok_jax import TrainConfig
  pre = get_preset(name)
  cfg = {**pre["config"], **pre["method_config"].get(method, {}),
         "method": method}
  if dry:
    small_p = 5 if cfg["task"] == "a*c+b*d-e" else 11
    cfg.update(p=min(cfg["p"], small_p), depth=1, dim=16, heads=2, batch_size=32,
               amp_hidden=tuple(min(h, 8) for h in cfg["amp_hidden"]))
  cfg.update(over)
  return TrainConfig(**cfg).validate()


def time_programs(progs: Dict[Any, Any], repeats: int) -> Dict[Any, float]:
  """Median seconds per step of each compiled program, repeats interleaved
  (each warmed up once)."""
  import statistics
  for p in progs.values():
    p.time(0, warmup=1)
  times = {k: [] for k in progs}
  for _ in range(repeats):
    for k, p in progs.items():
      times[k].append(p.run_once())
  return {k: float(statistics.median(v)) for k, v in times.items()}


def pytest_part(ctx: Ctx, args: List[str], x64: bool, timeout: float
                ) -> Dict[str, Any]:
  """Runs ``pytest args`` in a subprocess on the default backend."""
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get("PYTHONPATH", ""))
  if x64:
    env["JAX_ENABLE_X64"] = "1"
  cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *args] + (["--collect-only"] if ctx.dry else [])
  t0 = time.time()
  try:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=max(timeout, 1))
    rc, out = proc.returncode, proc.stdout + proc.stderr
    # pytest's summary line is the last of stdout (plugins' warnings go to
    # stderr, e.g. pytest-benchmark's under xdist)
    last = proc.stdout.strip() or out.strip()
  except subprocess.TimeoutExpired as e:
    rc, out = None, f"timed out after {timeout:.0f} s\n" + str(e.stdout or "")
    last = out.strip()
  tail = last.splitlines()[-1] if last else ""
  return dict(command=" ".join(cmd[1:]), x64=x64, returncode=rc,
              passed=rc == 0, summary=tail, seconds=time.time() - t0,
              output_tail=out[-2000:])


# -------------------------------------------------------------------- parts
def part_environment(ctx: Ctx) -> Dict[str, Any]:
  import flax
  import jax
  import jaxlib
  import numpy as np
  import optax
  import ngrok_jax
  devs = []
  for d in jax.devices():
    try:
      stats = d.memory_stats() or {}
    except Exception:  # a backend without memory stats
      stats = {}
    devs.append(dict(id=d.id, platform=d.platform,
                     kind=getattr(d, "device_kind", ""),
                     bytes_limit=stats.get("bytes_limit")))
  smi = None
  if shutil.which("nvidia-smi"):
    try:
      smi = subprocess.run(
          ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
           "--format=csv,noheader"], capture_output=True, text=True,
          timeout=20).stdout.strip()
    except Exception as e:  # recorded, not fatal
      smi = f"{type(e).__name__}: {e}"
  return dict(backend=jax.default_backend(), devices=devs,
              device_count=jax.device_count(), jax=jax.__version__,
              jaxlib=jaxlib.__version__, flax=flax.__version__,
              optax=optax.__version__, numpy=np.__version__,
              ngrok_jax=ngrok_jax.__version__,
              python=platform.python_version(), machine=platform.machine(),
              cpu_count=os.cpu_count(), nvidia_smi=smi)


def x64_allowed() -> bool:
  import jax
  return jax.default_backend() in ("cpu", "gpu", "cuda", "rocm")


def part_golden(ctx: Ctx) -> Dict[str, Any]:
  # Selected by file: the golden tests' names change with the trace.
  x64 = x64_allowed()
  out = pytest_part(ctx, ["-x", "tests/test_golden.py"], x64,
                    min(120.0, ctx.budget.spare()))
  out["precision"] = "float64" if x64 else (
      "float64 unavailable on this platform: see device_vs_cpu (float32)")
  return out


def part_device_vs_cpu(ctx: Ctx) -> Dict[str, Any]:
  import jax
  import numpy as np
  from ngrok_jax import train as T
  cfg = paper_config("paper-add", "neuralgrok", ctx.dry)
  steps = 2 * cfg.meta_every if ctx.dry else 20
  runs = {}
  for name, dev in (("device", jax.devices()[0]),
                    ("cpu", jax.devices("cpu")[0])):
    with jax.default_device(dev):
      state, data = T.init(cfg, [0, 1])
      state, out = T.train_steps(cfg, state, data, num_steps=steps)
      runs[name] = {k: np.asarray(v) for k, v in out.items()}
  diffs = {}
  for k in ("loss", "outer_loss"):  # outer_loss: NaN between meta steps
    a, b = runs["device"][k], runs["cpu"][k]
    diffs[k] = float(np.nanmax(np.abs(a - b) / (np.abs(b) + F32_ATOL /
                                                 F32_RTOL)))
    np.testing.assert_allclose(a, b, rtol=F32_RTOL, atol=F32_ATOL,
                               err_msg=f"device vs cpu {k}")
  return dict(passed=True, rtol=F32_RTOL, atol=F32_ATOL, steps=steps,
              max_rel_diff=diffs, device=str(jax.devices()[0]))


def part_equalities(ctx: Ctx) -> Dict[str, Any]:
  import jax
  import numpy as np
  from ngrok_jax import train as T
  from ngrok_jax.sharding import shard_seeds
  cfg = paper_config("paper-add", "neuralgrok", ctx.dry)
  n = (1 if ctx.dry else 4) * 2 * max(1, jax.local_device_count())
  variants = [("all", None, False), ("group1", 1, False)]
  if not ctx.dry:  # (on one device, sharding is the identity)
    variants += [("group2", 2, False), ("sharded", None, True)]
  res = {}
  for name, group, shard in variants:
    state, data = T.init(cfg, list(range(n)))
    if shard:
      state, data = shard_seeds(state, data)
    state, out = T.train_steps(cfg, state, data,
                               num_steps=2 * cfg.meta_every,
                               seed_group=group)
    res[name] = np.asarray(out["loss"])
  diffs = {k: float(np.max(np.abs(v - res["all"]) / np.abs(res["all"])))
           for k, v in res.items() if k != "all"}
  for k, v in res.items():  # the seed-group test's tolerance
    np.testing.assert_allclose(v, res["all"], rtol=1e-5, err_msg=k)
  return dict(passed=True, seeds=n, devices=jax.local_device_count(),
              rtol=1e-5, max_rel_diff=diffs)


def part_equality_tests(ctx: Ctx) -> Dict[str, Any]:
  sel = ("seed_groups or vmapped_seeds or runner_shards or sigkill or "
         "in_process_resume")
  return pytest_part(ctx, ["tests/test_train.py", "tests/test_sharding.py",
                           "tests/test_checkpoint.py", "-k", sel], False,
                     min(90.0, ctx.budget.spare()))


def _metric_rows(folder: str) -> List[Dict[str, Any]]:
  with open(os.path.join(folder, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


def part_resume(ctx: Ctx) -> Dict[str, Any]:
  import numpy as np
  from ngrok_jax import runner
  from ngrok_jax import TrainConfig
  tmp = tempfile.mkdtemp(prefix="ngrok_dc_resume_")
  try:
    one, two = os.path.join(tmp, "one"), os.path.join(tmp, "two")
    kw = dict(progress=False, plots=False, report=lambda m: None, devices=1)
    # dry run: the timings' compiled Adam program (same config, seeds and
    # chunk), so that the persistent compilation cache serves it
    if ctx.dry:
      method, cfg = "adam", paper_config("paper-add", "adam", True)
      every, kw["seed_group"] = 2 * cfg.meta_every, None
    else:
      method, cfg, every = "neuralgrok", TrainConfig(**TINY), 10
    runner.run(cfg, out_dir=one, methods=[method],
               seeds=2, steps=2 * every, eval_every=every,
               checkpoint_every=every, **kw)
    shutil.copytree(one, two)  # as if stopped after its first checkpoint
    shutil.rmtree(os.path.join(two, "checkpoints", method, str(2 * every)))
    os.remove(os.path.join(two, "summary.json"))
    runner.resume(two, **kw)
    a, b = _metric_rows(one), _metric_rows(two)
    assert len(a) == len(b) == 4, (len(a), len(b))
    worst, identical = 0.0, True
    for ra, rb in zip(a, b):
      assert ra.keys() == rb.keys()
      for k, v in ra.items():
        if isinstance(v, float) and np.isfinite(v):
          d = abs(rb[k] - v) / max(abs(v), 1e-6)
          worst, identical = max(worst, d), identical and rb[k] == v
        else:
          assert rb[k] == v, k
    assert worst <= 1e-5, worst
    return dict(passed=True, method=method, bit_identical=identical,
                max_rel_diff=worst, rtol=1e-5, rows=len(a))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
