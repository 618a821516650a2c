"""The library against the authors' PyTorch code, side by side
(``python -m experiments.benchmark --reference``).

At one configuration, the ``paper-add`` preset (the authors' final recipe:
``a+b mod 97``, depth 2, d 128, amplifier 1-128-128-1, T 4, c 0.2; with
``--quick`` a tiny model), this times

* the library's amortised NeuralGrok step and its own Adam step (the
  reference's placement: the meta step after the inner step, the default),
  per seed-step, at S = 1 and at ``--seeds`` seeds (the library vmaps
  seeds; seconds per step / S);
* the reference (NeuralOptGrok commit a7490be, ``src/run.py`` through
  ``src/train.py``, imported, never copied) with and without
  ``--neuralgrok``: its own entry point ``run.run`` in a subprocess of a
  Python that has torch (``--reference-python``; the ``[reference]``
  extra), with inert ``wandb``/``tqdm``/``matplotlib`` stubs.  A step's time
  is the gap between two batches of its inner loader (so it holds the
  reference's own per-step bookkeeping, its meta step and, at epoch ends,
  its test evaluation); the mean over the steps after ``warmup`` whole meta
  periods is reported.

The reference runs one seed per process, so its seconds per seed-step are
its seconds per step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

#: Runs the reference's ``run.run(argv)`` and prints the time of every inner
#: batch: ``RESULT [t0, t1, ...]``.  argv: SRC ARGV_JSON.
DRIVER = r"""
import importlib.machinery, json, sys, time, types
src, argv = sys.argv[1], json.loads(sys.argv[2])
wandb = types.ModuleType("wandb")
wandb.init = lambda **kw: None
wandb.log = lambda *a, **kw: None
tqdm = types.ModuleType("tqdm")
tqdm.tqdm = lambda it, *a, **kw: it
mpl, plt = types.ModuleType("matplotlib"), types.ModuleType("matplotlib.pyplot")
mpl.pyplot = plt
for mod in (wandb, tqdm, mpl, plt):
    mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    sys.modules[mod.__name__] = mod
sys.path.insert(0, src)
import run as ref_run
times = []
orig_train = ref_run.train

class Timed:
    def __init__(self, loader):
        self.loader = loader
    def __len__(self):
        return len(self.loader)
    def __iter__(self):
        for batch in self.loader:
            times.append(time.perf_counter())
            yield batch

def train(args, inner_loader, *a, **kw):
    out = orig_train(args, Timed(inner_loader), *a, **kw)
    times.append(time.perf_counter())
    return out

ref_run.train = train
ref_run.run(ref_run.parser.parse_args(argv))
print("RESULT" + json.dumps(times))
"""


def reference_argv(cfg: Dict[str, Any], neuralgrok: bool, steps: int
                   ) -> List[str]:
  """The reference's command line for a ``paper-*`` preset config."""
  argv = ["--task_type", cfg["task"], "--p", str(cfg["p"]), "--n_layers",
          str(cfg["depth"]), "--dim", str(cfg["dim"]), "--n_heads",
          str(cfg["heads"]), "--lr", str(cfg["lr"]), "--weight_decay",
          str(cfg["wd"]), "--batch_size", str(cfg["batch_size"]),
          "--seed", "0", "--device", "cpu", "--budget", str(steps)]
  if neuralgrok:
    argv += ["--neuralgrok", "--neural_hidden_dims",
             ",".join(map(str, cfg["amp_hidden"])), "--inner_loop_steps",
             str(cfg["meta_every"])]
  return argv


def time_reference(python: str, src: str, argv: List[str], skip: int,
                   timeout: float = 3600) -> Dict[str, Any]:
  """Mean seconds per step of one reference run after ``skip`` steps."""
  env = dict(os.environ)
  env.pop("PYTHONPATH", None)
  proc = subprocess.run([python, "-c", DRIVER, src, json.dumps(argv)],
                        capture_output=True, text=True, timeout=timeout,
                        env=env)
  if proc.returncode != 0:
    raise RuntimeError("the reference failed: " + proc.stderr[-1500:])
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  t = json.loads(line[len("RESULT"):])
  steps = len(t) - 1  # the last entry is the end of training
  if steps <= skip:
    raise RuntimeError(f"the reference ran {steps} steps, fewer than "
                       f"the {skip} warm-up steps")
  return dict(s_per_step=(t[-1] - t[skip]) / (steps - skip), steps=steps,
              warmup_steps=skip, argv=" ".join(argv))


def torch_python(explicit: Optional[str]) -> Optional[str]:
  """A Python with torch: ``explicit``, ``$NGROK_TORCH_PYTHON``, or this
  one if it imports torch; else None."""
  for cand in (explicit, os.environ.get("NGROK_TORCH_PYTHON")):
    if cand:
      return cand
  import importlib.util
  return sys.executable if importlib.util.find_spec("torch") else None


def side_by_side(*, quick: bool, seeds: int, repeats: int, device: str,
                 src: Optional[str], python: Optional[str],
                 reference_steps: int, log=print) -> List[Dict[str, Any]]:
  """Records of the library's NeuralGrok and Adam steps and, when ``src``
  and a torch Python are given, the reference's, at the paper-add recipe."""
  from experiments.bench_common import Program
  from ngrok_jax.presets import get_preset
  from ngrok_jax import TrainConfig
  pre = get_preset("paper-add")
  cfg = dict(pre["config"])
  if quick:
    cfg.update(p=23, depth=1, dim=32, heads=2, batch_size=64,
               amp_hidden=(16, 16))
  T = cfg["meta_every"]
  ng = TrainConfig(**{**cfg, **pre["method_config"].get("neuralgrok", {}),
                      "method": "neuralgrok"}).validate()
  adam = TrainConfig(**{**cfg, **pre["method_config"].get("adam", {}),
                        "method": "adam"}).validate()
  assert ng.meta_placement == "after", ng.meta_placement
  steps = 2 * T
  counts = sorted({1, seeds})
  progs = {(m, S): Program(c, S, steps, seed_group=None)
           for S in counts for m, c in (("neuralgrok", ng), ("adam", adam))}
  for p in progs.values():
    p.time(0, warmup=1)
  times = {k: [] for k in progs}
  for _ in range(repeats):  # interleaved
    for k, p in progs.items():
      times[k].append(p.run_once())
  import statistics
  med = {k: statistics.median(v) for k, v in times.items()}
  common = dict(config="paper-add" + (" (quick size)" if quick else ""),
                meta_every=T, c=cfg["c"], amp_hidden=list(cfg["amp_hidden"]),
                device=device, placement=ng.meta_placement)
  recs = []
  for (m, S), t in med.items():
    recs.append(dict(common, what=f"library_{m}", seeds=S, seconds=t,
                     s_per_seed_step=t / S, all_seconds=times[(m, S)],
                     steps_per_call=steps))
  for S in counts:
    r = med[("neuralgrok", S)] / med[("adam", S)]
    log(f"library S={S}: NeuralGrok amortised {med[('neuralgrok', S)] * 1e3:.1f}"
        f" ms/step, Adam {med[('adam', S)] * 1e3:.1f} ms/step: NeuralGrok/Adam "
        f"= {r:.2f} (target <= 1.5: {'met' if r <= 1.5 else 'NOT met'})")
  if not src:
    log("reference: skipped (no --reference-src and no NEURALOPTGROK_SRC)")
    return recs
  if not python:
    log("reference: skipped (no Python with torch: pip install "
        "'.[reference]', or --reference-python)")
    return recs
  best = min(med[("neuralgrok", S)] / S for S in counts)
  best_adam = min(med[("adam", S)] / S for S in counts)
  for m, lib in (("neuralgrok", best), ("adam", best_adam)):
    argv = reference_argv(cfg, m == "neuralgrok", reference_steps)
    ref = time_reference(python, src, argv, skip=T)
    ratio = ref["s_per_step"] / lib
    recs.append(dict(common, what=f"reference_{m}", seeds=1,
                     seconds=ref["s_per_step"],
                     s_per_seed_step=ref["s_per_step"], ratio_to_library=ratio,
                     reference_python=python, **ref))
    log(f"reference {m}: {ref['s_per_step'] * 1e3:.1f} ms per seed-step "
        f"({ref['steps']} steps, the first {T} skipped); library "
        f"{lib * 1e3:.1f} ms per seed-step: the library is {ratio:.1f}x "
        f"faster per seed-step" + (f" (goal >= 10x: "
                                   f"{'met' if ratio >= 10 else 'NOT met'})"
                                   if m == "neuralgrok" else ""))
  return recs
