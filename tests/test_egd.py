"""EGD (egalitarian gradient descent): the polar factor against NumPy's SVD,
the method's optimizer step, and the method from the command line and in
experiments.tune."""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import tune
from ngrok_jax._src.cli import cli
from ngrok_jax._src.training import methods
from ngrok_jax._src.optim import registry
from ngrok_jax._src.optim.egd import polar_factor, scale_by_egd
from ngrok_jax._src.analysis.results import read_metrics


def numpy_polar(g):
  """U V^T from np.linalg.svd, dropping singular values below NumPy's
  matrix_rank tolerance."""
  u, s, vh = np.linalg.svd(g, full_matrices=False)
  keep = s > max(g.shape) * np.finfo(g.dtype).eps * s.max()
  return u[:, keep] @ vh[keep]


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (8, 8), (16, 48)])
def test_polar_factor_matches_numpy_svd(shape):
  g = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
  p = np.asarray(polar_factor(jnp.asarray(g)))
  np.testing.assert_allclose(p, numpy_polar(g), atol=2e-5)
  # every singular value 1: orthonormal rows (wide) or columns (tall)
  small = min(shape)
  gram = p @ p.T if shape[0] == small else p.T @ p
  np.testing.assert_allclose(gram, np.eye(small), atol=2e-5)


def test_rank_deficient_zero_vector_and_scalar_leaves():
  r = np.random.default_rng(0)
  a, b = r.normal(size=(4, 1)), r.normal(size=(1, 6))
  rank1 = (a @ b).astype(np.float32)
  want = (a / np.linalg.norm(a)) @ (b / np.linalg.norm(b))
  np.testing.assert_allclose(polar_factor(jnp.asarray(rank1)), want,
                             atol=2e-5)
  np.testing.assert_allclose(polar_factor(jnp.asarray(rank1)),
                             numpy_polar(rank1), atol=2e-5)
  assert not np.any(np.asarray(polar_factor(jnp.zeros((3, 4)))))
  v = r.normal(size=(7,)).astype(np.float32)
  np.testing.assert_allclose(polar_factor(jnp.asarray(v)),
                             v / np.linalg.norm(v), rtol=1e-5)
  assert float(polar_factor(jnp.float32(-2.5))) == -1.0
  t = r.normal(size=(3, 2, 4)).astype(np.float32)  # (3, 8) matrix
  np.testing.assert_allclose(polar_factor(jnp.asarray(t)),
                             numpy_polar(t.reshape(3, 8)).reshape(t.shape),
                             atol=2e-5)


def test_scale_by_egd_is_stateless_and_scale_invariant():
  r = np.random.default_rng(1)
  g = {"w": jnp.asarray(r.normal(size=(6, 4)), jnp.float32),
       "b": jnp.asarray(r.normal(size=(4,)), jnp.float32)}
  tx = scale_by_egd()
  state = tx.init(g)
  u, state2 = tx.update(g, state, g)
  assert state2 == state
  for k in g:
    np.testing.assert_allclose(u[k], polar_factor(g[k]), rtol=1e-6)
  u2, _ = tx.update(jax.tree.map(lambda x: 3.5 * x, g), state)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               u, u2)


def test_egd_method_step_is_lr_times_polar_factor_plus_decoupled_decay(
    tiny_config):
  """One step of the egd method (no warm-up): every parameter moves by
  -lr (U V^T + wd w), no momentum (the second step repeats the rule)."""
  cfg = tiny_config(method="egd", warmup_steps=0).validate()
  rec = cfg.record
  assert (rec.coupled_decay, rec.clipped, rec.uses_amplifier) == (
      False, False, False)
  assert cfg.pools_outer and cfg.hparams()["wd"] == 0.0
  hp = dict(cfg.hparams(), lr=0.05, wd=0.1)
  params = methods.model_of(cfg).init(
      jax.random.key(0), jnp.zeros((1, methods.task_of(cfg).seq_len),
                                   jnp.int32))
  tx = methods.optimizer(cfg, hp)
  state, update = tx.init(params), jax.jit(tx.update)
  r = np.random.default_rng(2)
  for _ in range(2):
    g = jax.tree.map(lambda p: jnp.asarray(r.normal(size=p.shape),
                                           p.dtype), params)
    upd, state = update(g, state, params)
    want = jax.tree.map(lambda gi, p: -0.05 * (polar_factor(gi) + 0.1 * p),
                        g, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                 upd, want)
    params = jax.tree.map(lambda p, u: p + u, params, upd)


def test_egd_trains_from_the_command_line(capsys, tmp_path):
  out = str(tmp_path / "egd")
  argv = ["train", "--task", "a+b", "--p", "11", "--dim", "16", "--heads",
          "2", "--depth", "1", "--batch-size", "32", "--methods", "egd",
          "--lr", "3e-2", "--seeds", "2", "--steps", "20", "--eval-every",
          "10", "--no-progress", "--no-plots", "--out", out]
  try:
    rc = cli.main(argv)
  except SystemExit as e:
    rc = e.code
  assert rc == 0, capsys.readouterr().err
  cfg = json.load(open(os.path.join(out, "config.json")))["configs"]["egd"]
  assert cfg["method"] == "egd"
  rows = read_metrics(out)
  assert [r["step"] for r in rows] == [10, 10, 20, 20]
  for r in rows:
    assert np.isfinite(r["train/loss"]) and r["diverged_at"] == -1
  # the evaluation's transformed gradient is the polar factor: every
  # matrix has Frobenius norm sqrt(rank), far from the raw gradient's
  assert all(r["grad/norm_transformed"] > 1 for r in rows)
  first = [r for r in rows if r["step"] == 10]
  last = [r for r in rows if r["step"] == 20]
  assert sum(r["train/loss"] for r in last) < sum(
      r["train/loss"] for r in first)


def test_egd_is_in_the_tuning_grid():
  grid = dict(registry.get_method("egd").grid)
  assert "egd" in tune.DEFAULT_METHODS and tune.default_grid("egd") == grid
  assert grid == {"lr": (1e-2, 3e-2, 1e-1), "wd": (0.0, 0.1)}


@pytest.mark.slow  # two runs of a d-64 model: about 5 min on a loaded CPU
def test_egd_is_tuned_end_to_end(tmp_path, monkeypatch, capsys):
  """experiments.tune tunes egd over its record's grid (6 cells, one
  vmapped program), and reruns the chosen cell on a held-out seed."""
  grid = dict(registry.get_method("egd").grid)
  out = str(tmp_path / "tune")
  monkeypatch.setattr(sys, "argv", [
      "tune.py", "--quick", "--p", "11", "--steps", "4", "--eval-every",
      "2", "--task", "a+b", "--methods", "egd", "--tune-seeds", "1",
      "--heldout-seeds", "1", "--reference", "egd", "--no-progress",
      "--out", out])
  tune.main()
  egd = json.load(open(os.path.join(out, "tune.json")))["methods"]["egd"]
  assert egd["grid"] == {k: list(v) for k, v in grid.items()}
  assert sorted((c["cell"]["lr"], c["cell"]["wd"]) for c in egd["ranked"]) \
      == sorted((lr, wd) for lr in grid["lr"] for wd in grid["wd"])
  assert egd["chosen"]["lr"] in grid["lr"] and len(
      egd["heldout"]["final_test_acc"]) == 1
  assert "| egd |" in capsys.readouterr().out
