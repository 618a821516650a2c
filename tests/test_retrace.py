"""Per-seed hyperparameters never retrace: a run whose configuration
differs from an earlier one only in the numeric hyperparameters of
``HPARAMS`` reuses every compiled program (counted by JAX's own
compilation events), through the public path (``runner.run``); and no
program reads those values from the config (its key holds placeholders
that raise)."""
import contextlib
import dataclasses
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ngrok_jax as nj
from ngrok_jax._src.running import runner
from ngrok_jax._src.training import train as train_lib
from ngrok_jax._src.training.methods import program_config
from run_folders import TINY

#: JAX's monitoring events of one new program: tracing a function to a
#: jaxpr and lowering it to an MLIR module (both happen on a jit cache miss,
#: also when the persistent compilation cache then skips the backend).
EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
          "/jax/core/compile/jaxpr_to_mlir_module_duration")

#: Every per-seed hyperparameter moved off its default (a valid value for
#: every method: eps_root > 0 also suits lookahead="inner"), clip to a
#: finite value (the other baselines' default is inf: no clipping).
OTHER = dict(lr=2e-3, wd=3e-3, b1=0.8, b2=0.95, eps=1e-7, eps_root=1e-16,
             clip=0.5, c=0.3, alpha=0.9, lamb=3.0, meta_lr=3e-4,
             meta_wd=1e-2, lookahead_lr=5e-4)


@contextlib.contextmanager
def compilations():
  """The names of the functions JAX traces or lowers inside the block."""
  seen = []

  def listener(event, duration, **kw):
    del duration
    if event in EVENTS:
      seen.append(kw.get("fun_name", "?"))
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _run(cfg, out_dir):
  runner.run(cfg, methods=[cfg.method], seeds=[0, 1], steps=4, eval_every=2,
             out_dir=str(out_dir), progress=False, plots=False,
             report=lambda m: None)
  return runner.read_metrics(str(out_dir))


def test_other_hyperparameters_cover_every_per_seed_one():
  assert set(OTHER) == set(nj.HPARAMS)


@pytest.mark.parametrize("method", ["adam", "neuralgrok"])
def test_changing_per_seed_hyperparameters_compiles_nothing(method,
                                                            tmp_path):
  """A run (folder, checkpoints, evaluations, amplifier file) with every
  per-seed hyperparameter changed, ``clip`` from the method's default
  (None) to a number included, traces and compiles no new program."""
  base = nj.TrainConfig(method=method, **TINY)
  other = nj.TrainConfig(method=method, **TINY, **OTHER)
  assert base.hparams() != other.hparams()
  first = _run(base, tmp_path / "base")
  with compilations() as seen:
    second = _run(other, tmp_path / "other")
  assert seen == [], f"new programs for new hyperparameters: {seen}"
  # the shared programs ran with the new values
  assert len(first) == len(second) == 4
  for a, b in zip(first, second):
    assert a["step"] == b["step"] and a["train/loss"] != b["train/loss"]


def test_a_structural_field_still_compiles_its_own_program(tiny_config):
  """The key keeps what decides the program: another T is another program,
  another learning rate is not."""
  cfg = tiny_config()
  assert train_lib.programs(dataclasses.replace(cfg, lr=0.5, clip=2.0,
                                                wd=0.0)) is (
      train_lib.programs(cfg))
  assert train_lib.programs(dataclasses.replace(cfg, meta_every=5)) is not (
      train_lib.programs(cfg))


def test_the_program_key_refuses_every_read_of_a_hyperparameter(tiny_config):
  """A program that read a hyperparameter from the config (a constant
  baked in, a new program for each value) fails when it is traced: the
  key's placeholders raise a TypeError naming the field."""
  cfg = tiny_config(lr=3e-3)
  key = program_config(cfg)
  assert program_config(key) == key and hash(key) == hash(program_config(
      tiny_config(lr=1e-2, wd=0.1)))
  assert pickle.loads(pickle.dumps(key)) == key
  assert dataclasses.replace(key, lr=key.lr) == key
  for name in nj.HPARAMS:
    v = getattr(key, name)
    for use in (lambda: v * 2, lambda: 1.0 - v, lambda: float(v),
                lambda: bool(v), lambda: v == 0.0, lambda: v < 1,
                lambda: jnp.asarray(v), lambda: np.asarray(v, np.float32),
                lambda: jax.jit(lambda x: x * v)(1.0)):
      with pytest.raises(TypeError, match=f"TrainConfig.{name} is a "
                         "per-seed hyperparameter"):
        use()
  # what the programs do read is the config's own structure
  assert key.record is cfg.record and key.meta_every == cfg.meta_every
  with pytest.raises(TypeError, match="per-seed"):
    key.hparams()
