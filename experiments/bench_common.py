"""What the benchmark scripts share (``experiments/benchmark.py``,
``bench_extra.py``, ``reference_bench.py``, ``device_timing.py``): the
device's name, a compiled program's memory, a compiled ``train_steps``
program timed per step (:class:`Program`) and one timing record."""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Dict, List, Optional

import jax

from ngrok_jax import train as train_lib
from ngrok_jax import TrainConfig
from ngrok_jax import Trainer

__all__ = ["device_name", "memory_bytes", "abstract_state", "Program",
           "record"]


def device_name() -> str:
  d = jax.devices()[0]
  kind = getattr(d, "device_kind", d.platform)
  if d.platform == "cpu":
    return f"cpu ({kind}, {os.cpu_count()} cores, {platform.machine()})"
  return f"{d.platform} ({kind}) x{jax.local_device_count()}"


def memory_bytes(compiled) -> Dict[str, Optional[int]]:
  """XLA's compiled memory analysis (None where the backend gives none)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pragma: no cover - backend without analysis
    m = None
  if m is None:
    return dict(peak_bytes=None, temp_bytes=None, argument_bytes=None)
  arg, out = m.argument_size_in_bytes, m.output_size_in_bytes
  tmp, alias = m.temp_size_in_bytes, m.alias_size_in_bytes
  return dict(peak_bytes=int(arg + out + tmp - alias), temp_bytes=int(tmp),
              argument_bytes=int(arg))


def abstract_state(trainer: Trainer, num_seeds: int):
  """ShapeDtypeStructs of ``trainer.init`` for ``num_seeds`` seeds (cheap)."""
  state, data = trainer.init(seeds=[0])

  def widen(x):
    return jax.ShapeDtypeStruct((num_seeds,) + x.shape[1:], x.dtype)
  st = state._replace(seeds=jax.tree.map(widen, state.seeds),
                      step=jax.ShapeDtypeStruct(state.step.shape,
                                                state.step.dtype))
  da = data._replace(
      inputs=jax.ShapeDtypeStruct(data.inputs.shape, data.inputs.dtype),
      labels=jax.ShapeDtypeStruct(data.labels.shape, data.labels.dtype),
      train=widen(data.train), outer=widen(data.outer), test=widen(data.test))
  return st, da


class Program:
  """One compiled ``train_steps`` program, timed per step."""

  def __init__(self, cfg: TrainConfig, num_seeds: int, steps: int,
               seed_group: Optional[int] = None):
    self.cfg, self.steps = cfg, steps
    amp = (Trainer(cfg).init_amplifier()
           if cfg.record.needs_trained_amplifier else None)
    self.state, self.data = train_lib.init(cfg, list(range(num_seeds)),
                                           amp_params=amp)
    t0 = time.perf_counter()
    lowered = train_lib.programs(cfg).train_steps.lower(
        self.state, self.data, num_steps=steps, seed_group=seed_group)
    self.compiled = lowered.compile()
    self.compile_seconds = time.perf_counter() - t0
    self.memory = memory_bytes(self.compiled)

  def run_once(self) -> float:
    t0 = time.perf_counter()
    self.state, out = self.compiled(self.state, self.data)
    jax.block_until_ready((self.state, out))
    return (time.perf_counter() - t0) / self.steps

  def time(self, repeats: int, warmup: int = 1) -> List[float]:
    for _ in range(warmup):
      self.run_once()
    return [self.run_once() for _ in range(repeats)]


def record(config_name, seeds, what, times, device, **extra):
  """One timing record: the median of ``times`` (seconds) and all of them,
  with the config, seed count, what was timed, the device and ``extra``."""
  rec = dict(config=config_name, seeds=seeds, what=what,
             seconds=float(statistics.median(times)) if times else None,
             device=device)
  if times:
    rec["all_seconds"] = [float(t) for t in times]
  rec.update(extra)
  return rec
