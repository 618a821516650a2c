"""One prepared, time-budgeted check of the library on an accelerator.

Writes ``device_check.json`` (every part's record, rewritten after each
part, so a crash or a kill leaves what was done), ``device_check.md`` (a
summary), ``hard_task_curves.csv`` and ``hard_task_curves.png`` under
``--out``.  The parts, in order (each skipped, with the reason recorded, once
the global ``--budget-s`` is spent; an exception is recorded and the next
part runs):

* ``environment``: devices, jax/jaxlib/flax/optax versions, memory;
* ``golden``: ``tests/test_golden.py`` (the authors' trace) as a pytest
  subprocess on the default backend, in float64 where the platform has it;
* ``device_vs_cpu``: the same small float32 run on the device and on the
  host CPU, compared at stated tolerances (the check where float64 is
  missing);
* ``equalities``: seed groups (all / 2 / 1) and sharding over all local
  devices against one device, on the device;
* ``resume``: a run folder stopped after its first checkpoint and resumed
  against the uninterrupted run, on the device;
* ``timings``: Adam, rescaling and NeuralGrok (the ``paper-add`` recipe, T
  4) per step at S = 1, 8, 32, 128 seeds, as ratios within one run, seeds
  per second and the projected wall time of the paper's 300,000 steps;
* ``amp_method``: pwl against the dense amplifier; ``seed_group``: the
  ``--seed-group`` choices; ``donation``: the step with and without
  donating its state; ``memory``: the device's peak memory;
* ``equality_tests``: the seed-group, vmap and runner sharding/resume tests
  as a pytest subprocess (``-k``-selected);
* ``hard_task``: ``a*c+b*d-e mod 7`` at the ``paper-poly`` size, NeuralGrok
  and Adam in alternating chunks, for the time that is left (the parts
  before it leave it 90 s); curves exported.

GPU memory is allocated as needed (``XLA_PYTHON_CLIENT_PREALLOCATE=false``
unless set), so the pytest subprocesses fit beside this process.

``--cpu-dry-run`` runs every part at a tiny size on the CPU (the pytest
parts only collect their tests) in well under a minute: CI runs it
(``tests/test_device_check.py``).

Usage (on a lent device, from the repository root; BENCHMARK.md "Device
check" has the exact command)::

    python -m experiments.device_check --out /tmp/dc --budget-s 480
    python -m experiments.device_check --out /tmp/dc --cpu-dry-run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

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
  from ngrok_jax.train import TrainConfig
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
  except subprocess.TimeoutExpired as e:
    rc, out = None, f"timed out after {timeout:.0f} s\n" + str(e.stdout or "")
  tail = out.strip().splitlines()[-1] if out.strip() else ""
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
  from ngrok_jax.train import TrainConfig
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


def _program(ctx: Ctx, key, cfg, S: int, steps: int, seed_group=None):
  from experiments.benchmark import Program
  if key not in ctx.programs:
    ctx.programs[key] = Program(cfg, S, steps, seed_group)
  return ctx.programs[key]


def part_timings(ctx: Ctx) -> Dict[str, Any]:
  seeds = (2,) if ctx.dry else (1, 8, 32, 128)
  reps = 1 if ctx.dry else 3
  methods = ("adam", "rescale", "neuralgrok")
  rows, skipped = [], []
  for S in seeds:
    if ctx.budget.spare() < 60 and rows:  # keep time for the later parts
      skipped.append(dict(seeds=S, reason="global budget nearly spent"))
      continue
    cfgs = {m: paper_config("paper-add", m, ctx.dry) for m in methods}
    steps = 2 * cfgs["neuralgrok"].meta_every
    progs = {m: _program(ctx, ("paper-add", m, S), cfgs[m], S, steps)
             for m in methods}
    t = time_programs(progs, reps)
    for m in methods:
      rows.append(dict(method=m, seeds=S, s_per_step=t[m],
                       seed_steps_per_s=S / t[m],
                       paper_budget_hours=PAPER_STEPS * t[m] / 3600,
                       ratio_to_adam=t[m] / t["adam"],
                       compile_s=progs[m].compile_seconds,
                       peak_bytes=progs[m].memory["peak_bytes"]))
    ctx.log("  timings S=%d: %s" % (S, ", ".join(
        f"{m} {t[m] * 1e3:.2f} ms" for m in methods)))
  s1 = {r["method"]: r["s_per_step"] for r in rows if r["seeds"] == 1}
  for r in rows:  # per-seed cost against one seed alone
    if s1:
      r["per_seed_vs_S1"] = r["s_per_step"] / r["seeds"] / s1[r["method"]]
  by_s = {}
  for r in rows:
    by_s.setdefault(r["seeds"], 0.0)
    by_s[r["seeds"]] += PAPER_STEPS * r["s_per_step"] / 3600
  return dict(config="paper-add (a+b mod 97, T 4, c 0.2)", rows=rows,
              skipped=skipped, steps_per_call=2 * 4, repeats=reps,
              task_hours_3_methods={str(k): v for k, v in by_s.items()})


def part_amp_method(ctx: Ctx) -> Dict[str, Any]:
  S = 2 if ctx.dry else 8
  progs = {}
  for meth in ("pwl", "dense"):
    cfg = paper_config("paper-add", "neuralgrok", ctx.dry, amp_method=meth)
    key = ("paper-add", "neuralgrok", S) if meth == "pwl" else (
        "paper-add", "neuralgrok-dense", S)
    progs[meth] = _program(ctx, key, cfg, S, 2 * cfg.meta_every)
  t = time_programs(progs, 1 if ctx.dry else 3)
  return dict(seeds=S, s_per_step=t, dense_over_pwl=t["dense"] / t["pwl"],
              peak_bytes={k: p.memory["peak_bytes"] for k, p in progs.items()})


def part_seed_group(ctx: Ctx) -> Dict[str, Any]:
  S = 2 if ctx.dry else 32
  cfg = paper_config("paper-add", "neuralgrok", ctx.dry)
  steps = 2 * cfg.meta_every
  progs = {}
  for g in (None, 1) if ctx.dry else (None, 8, 1):
    key = ("paper-add", "neuralgrok", S) if g is None else (
        "paper-add", "neuralgrok", S, "group", g)
    progs[str(g or "all")] = _program(ctx, key, cfg, S, steps, g)
  t = time_programs(progs, 1 if ctx.dry else 3)
  return dict(seeds=S, s_per_step=t,
              ratio_to_all={k: v / t["all"] for k, v in t.items()})


class _NoDonation:
  """A training program compiled without donating its state."""

  def __init__(self, cfg, S: int, steps: int):
    import jax
    from ngrok_jax import train as T
    from experiments.benchmark import memory_bytes
    self.steps = steps
    self.state, self.data = T.init(cfg, list(range(S)))
    fn = jax.jit(lambda s, d: T.train_steps(cfg, s, d, num_steps=steps))
    t0 = time.perf_counter()
    self.compiled = fn.lower(self.state, self.data).compile()
    self.compile_seconds = time.perf_counter() - t0
    self.memory = memory_bytes(self.compiled)

  def run_once(self) -> float:
    import jax
    t0 = time.perf_counter()
    self.state, out = self.compiled(self.state, self.data)
    jax.block_until_ready((self.state, out))
    return (time.perf_counter() - t0) / self.steps

  def time(self, repeats: int, warmup: int = 1):
    for _ in range(warmup):
      self.run_once()


def part_donation(ctx: Ctx) -> Dict[str, Any]:
  S = 2 if ctx.dry else 8
  method = "adam" if ctx.dry else "neuralgrok"  # dry: the cheaper compile
  cfg = paper_config("paper-add", method, ctx.dry)
  steps = 2 * cfg.meta_every
  progs = {"donated": _program(ctx, ("paper-add", method, S), cfg, S,
                               steps),
           "not_donated": _NoDonation(cfg, S, steps)}
  t = time_programs(progs, 1 if ctx.dry else 3)
  return dict(seeds=S, method=method, s_per_step=t,
              not_donated_over_donated=t["not_donated"] / t["donated"],
              peak_bytes={k: p.memory["peak_bytes"] for k, p in progs.items()})


def part_memory(ctx: Ctx) -> Dict[str, Any]:
  import jax
  stats = {}
  for d in jax.local_devices():
    try:
      s = d.memory_stats() or {}
    except Exception:
      s = {}
    stats[str(d)] = {k: s.get(k) for k in ("peak_bytes_in_use",
                                           "bytes_in_use", "bytes_limit")}
  compiled = {"/".join(map(str, k)): p.memory["peak_bytes"]
              for k, p in ctx.programs.items()}
  return dict(device_stats=stats, compiled_peak_bytes=compiled,
              largest_compiled=max(compiled.items(), key=lambda kv: kv[1] or 0,
                                   default=None))


def part_hard_task(ctx: Ctx) -> Dict[str, Any]:
  """NeuralGrok and Adam on a*c+b*d-e (paper-poly), chunks alternating,
  until the budget's margin; curves to CSV and PNG."""
  import jax
  import numpy as np
  from ngrok_jax import train as T
  from ngrok_jax.presets import get_preset
  ctx.programs.clear()  # free the timing programs' buffers
  # dry run: the timings' tiny paper-add programs (served by the persistent
  # compilation cache); the same code as the device's paper-poly run
  name = "paper-add" if ctx.dry else "paper-poly"
  pre = get_preset(name)
  S = 2 if ctx.dry else pre["seeds"]
  every = 2 * pre["config"]["meta_every"] if ctx.dry else pre["eval_every"]
  margin = 5 if ctx.dry else 25
  runs = {}
  for m in ("neuralgrok", "adam"):
    cfg = paper_config(name, m, ctx.dry)
    state, data = T.init(cfg, list(range(S)))
    runs[m] = dict(cfg=cfg, state=state, data=data, rows=[], train_s=0.0)
  max_steps = 2 * every if ctx.dry else pre["steps"]
  step, chunk_s = 0, 0.0
  while step < max_steps and ctx.budget.left() - margin > 2 * chunk_s:
    t_chunk = time.time()
    for m, r in runs.items():
      t0 = time.time()
      r["state"], _ = T.train_steps(r["cfg"], r["state"], r["data"],
                                    num_steps=every)
      ev = T.evaluate(r["cfg"], r["state"], r["data"])
      ev = {k: np.asarray(v) for k, v in ev.items()}
      r["train_s"] += time.time() - t0
      for s in range(S):
        r["rows"].append(dict(method=m, step=step + every, seed=s, **{
            k: float(ev[k][s]) for k in ("train/loss", "train/acc",
                                         "test/loss", "test/acc")}))
    step += every
    chunk_s = time.time() - t_chunk
  if not step:
    raise RuntimeError("no time left for one chunk of the hard task")
  rows = [row for r in runs.values() for row in r["rows"]]
  keys = ["method", "step", "seed", "train/loss", "train/acc", "test/loss",
          "test/acc"]
  with open(os.path.join(ctx.out, "hard_task_curves.csv"), "w") as f:
    f.write(",".join(keys) + "\n")
    for row in rows:
      f.write(",".join(str(row[k]) for k in keys) + "\n")
  cfg0 = runs["neuralgrok"]["cfg"]
  _plot_curves(runs, S, os.path.join(ctx.out, "hard_task_curves.png"),
               f"{cfg0.task} mod {cfg0.p} ({name}), one line per seed")
  out = dict(preset=name, seeds=S, eval_every=every, steps=step,
             device=str(jax.devices()[0]))
  for m, r in runs.items():
    final = [row for row in r["rows"] if row["step"] == step]
    hit = {}
    for row in r["rows"]:
      if row["test/acc"] >= 0.95 and row["seed"] not in hit:
        hit[row["seed"]] = row["step"]
    out[m] = dict(s_per_step=r["train_s"] / step,
                  final_test_acc=[row["test/acc"] for row in final],
                  steps_to_95={str(s): hit.get(s) for s in range(S)},
                  paper_budget_hours=PAPER_STEPS * r["train_s"] / step / 3600)
  return out


def _plot_curves(runs, S: int, path: str, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(1, 2, figsize=(10, 4))
  for m, r in runs.items():
    for s in range(S):
      pts = [(row["step"], row["test/acc"], row["train/acc"])
             for row in r["rows"] if row["seed"] == s]
      x = [p[0] for p in pts]
      ax[0].plot(x, [p[1] for p in pts], color="C0" if m == "neuralgrok"
                 else "C1", alpha=0.7, label=m if s == 0 else None)
      ax[1].plot(x, [p[2] for p in pts], color="C0" if m == "neuralgrok"
                 else "C1", alpha=0.7, label=m if s == 0 else None)
  for a, name in zip(ax, ("test accuracy", "train accuracy")):
    a.set_xlabel("step")
    a.set_ylabel(name)
    a.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


# (name, function, seconds it needs at least on a device)
PARTS = [("environment", part_environment, 5),
         ("golden", part_golden, 30),
         ("device_vs_cpu", part_device_vs_cpu, 20),
         ("equalities", part_equalities, 20),
         ("resume", part_resume, 30),
         ("timings", part_timings, 90),
         ("amp_method", part_amp_method, 40),
         ("seed_group", part_seed_group, 40),
         ("donation", part_donation, 30),
         ("memory", part_memory, 1),
         ("equality_tests", part_equality_tests, 30),
         ("hard_task", part_hard_task, 60)]


def summary_markdown(rec: Dict[str, Any]) -> str:
  """The markdown summary of a record (also in the JSON's folder)."""
  env = rec["parts"].get("environment", {}).get("result") or {}
  lines = ["# Device check", "",
           f"Backend **{env.get('backend')}**, devices "
           f"{[d.get('kind') for d in env.get('devices', [])]}, jax "
           f"{env.get('jax')} (jaxlib {env.get('jaxlib')}), flax "
           f"{env.get('flax')}, ngrok_jax {env.get('ngrok_jax')}; "
           f"{'dry run (tiny sizes)' if rec['dry_run'] else 'full size'}; "
           f"budget {rec['budget_s']:.0f} s, used {rec['elapsed_s']:.0f} s.",
           "", "| part | status | seconds | note |", "|---|---|---|---|"]
  for name, p in rec["parts"].items():
    note = p.get("reason") or p.get("error") or ""
    res = p.get("result") or {}
    if "summary" in res:
      note = res["summary"]
    lines.append(f"| {name} | {p['status']} | {p.get('seconds', 0):.1f} | "
                 f"{note[:120].replace('|', '/')} |")
  tim = (rec["parts"].get("timings", {}).get("result") or {}).get("rows")
  if tim:
    lines += ["", "| method | S | ms/step | x Adam | seed-steps/s | "
              "300k steps (h) | per seed vs S=1 |", "|---|---|---|---|---|---|---|"]
    for r in tim:
      lines.append(f"| {r['method']} | {r['seeds']} | "
                   f"{r['s_per_step'] * 1e3:.2f} | {r['ratio_to_adam']:.2f} | "
                   f"{r['seed_steps_per_s']:.0f} | "
                   f"{r['paper_budget_hours']:.2f} | "
                   f"{r.get('per_seed_vs_S1', float('nan')):.3f} |")
  for name in ("amp_method", "seed_group", "donation", "hard_task"):
    res = rec["parts"].get(name, {}).get("result")
    if res:
      lines += ["", f"**{name}**: `{json.dumps(res, default=str)[:600]}`"]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", required=True, help="output folder")
  ap.add_argument("--budget-s", type=float, default=None,
                  help="global time budget in seconds (default 480; dry run "
                       "900); a part that does not fit in what is left is "
                       "skipped with the reason recorded")
  ap.add_argument("--cpu-dry-run", action="store_true",
                  help="every part at a tiny size on the CPU (CI)")
  ap.add_argument("--parts", default=None,
                  help="comma-separated subset of: " +
                       ", ".join(p[0] for p in PARTS))
  args = ap.parse_args(argv)
  names = [p[0] for p in PARTS]
  wanted = names if args.parts is None else args.parts.split(",")
  bad = [w for w in wanted if w not in names]
  if bad:
    ap.error(f"unknown part {bad[0]!r}; valid: {', '.join(names)}")
  if args.cpu_dry_run:
    os.environ["JAX_PLATFORMS"] = "cpu"
  os.makedirs(args.out, exist_ok=True)
  if args.budget_s is None:
    args.budget_s = 900.0 if args.cpu_dry_run else 480.0
  # the hard task keeps 90 s of a device run for itself
  budget = Budget(args.budget_s, reserve=0 if args.cpu_dry_run else 90)

  def log(msg):
    print(f"[{time.time() - budget.start:6.1f}s] {msg}", flush=True)

  rec = dict(dry_run=args.cpu_dry_run, budget_s=args.budget_s,
             argv=sys.argv[1:] if argv is None else list(argv),
             started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             parts={}, elapsed_s=0.0)
  ctx = Ctx(out=args.out, dry=args.cpu_dry_run, budget=budget, log=log,
            record=rec)

  def save():
    rec["elapsed_s"] = time.time() - budget.start
    with open(os.path.join(args.out, "device_check.json"), "w") as f:
      json.dump(rec, f, indent=1, default=str)
    with open(os.path.join(args.out, "device_check.md"), "w") as f:
      f.write(summary_markdown(rec))

  for name, fn, need in PARTS:
    if name not in wanted:
      continue
    need = 1 if args.cpu_dry_run else need
    if (budget.left() if name == "hard_task" else budget.spare()) < need:
      rec["parts"][name] = dict(status="skipped", reason=(
          f"budget spent: {budget.left():.0f} s left, needs ~{need} s"))
      log(f"{name}: skipped (budget)")
      save()
      continue
    log(f"{name} ...")
    t0, c0 = time.time(), time.process_time()
    try:
      res = fn(ctx)
      ok = not (isinstance(res, dict) and res.get("passed") is False)
      rec["parts"][name] = dict(status="ok" if ok else "failed", result=res)
    except Exception as e:  # crash-isolated: recorded, the next part runs
      rec["parts"][name] = dict(status="error",
                                error=f"{type(e).__name__}: {e}"[:500],
                                traceback=traceback.format_exc()[-3000:])
    rec["parts"][name]["seconds"] = time.time() - t0
    rec["parts"][name]["cpu_seconds"] = time.process_time() - c0
    log(f"{name}: {rec['parts'][name]['status']} "
        f"({rec['parts'][name]['seconds']:.1f} s)")
    save()
  save()
  print(summary_markdown(rec))
  return 0


if __name__ == "__main__":
  sys.exit(main())
