"""pes.measure_snr on an inner problem whose gradient and estimator noise
are known in closed form."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ngrok_jax._src.optim import pes

A = jnp.array([1.0, -2.0, 0.5])
K = 4                    # truncation = horizon: every truncation a fresh run
S = K * (K + 1) / 2      # sum of the steps t of a run


def _linear_task():
  """x_t = x_{t-1} + w, meta loss a . x_t: a run's objective is S a . w,
  its gradient S a.  The antithetic PES unit estimate is
  S (a . eps) eps / sigma^2: mean S a, covariance trace S^2 (d + 1) |a|^2
  (Gaussian fourth moments), so with N units SNR_N = N / (d + 1)."""
  def init(key, index):
    del key, index
    return dict(x=jnp.zeros(3))

  def step(theta, inner):
    x = inner["x"] + theta["w"]
    loss = jnp.dot(A, x)
    return dict(x=x), dict(meta_loss=loss, train_loss=loss)
  return pes.InnerTask(init, step)


def test_measure_snr_recovers_a_known_gradient_and_noise():
  """8 units, d 3: SNR 2, signal S^2 |a|^2, noise S^2 4 |a|^2 / 8, the naive
  ratio about 1 + SNR, the mean estimate S a (300 truncations: the Monte
  Carlo spread over 5 keys was under 10%; 20% allowed).  A signal taken
  from one mean's squared norm (biased by the noise) would give SNR 3."""
  n = 8
  cfg = pes.OuterConfig(num_particles=2 * n, truncation=K, horizon=K,
                        stagger=False, sigma=0.1, loss_clip=1e9)
  r = pes.measure_snr(cfg, _linear_task(), {"w": jnp.zeros(3)},
                      jax.random.PRNGKey(0), steps=300)
  a2 = float(A @ A)
  assert r["units"] == n
  assert r["snr"] == pytest.approx(n / 4, rel=0.2)
  assert r["signal"] == pytest.approx(S ** 2 * a2, rel=0.2)
  assert r["noise"] == pytest.approx(S ** 2 * 4 * a2 / n, rel=0.2)
  assert r["ratio"] == pytest.approx(1 + n / 4, rel=0.2)
  np.testing.assert_allclose(np.asarray(r["mean_grad"]["w"]) / S,
                             np.asarray(A), atol=0.2 * np.sqrt(a2))


def test_measure_snr_needs_two_halves_of_two_units():
  cfg = pes.OuterConfig(num_particles=6, truncation=K, horizon=K)
  with pytest.raises(ValueError, match="at least 4 units"):
    pes.measure_snr(cfg, _linear_task(), {"w": jnp.zeros(3)},
                    jax.random.PRNGKey(0), steps=2)


@pytest.mark.slow
def test_rule_snr_script_measures_resumes_and_refuses(tmp_path):
  """experiments/rule_snr at a tiny size: one horizon row per task and one
  SNR row per (truncation, size), README tables; a rerun recomputes
  nothing (rows.jsonl unchanged); other settings exit 2 and write
  nothing."""
  from experiments import rule_snr
  out = str(tmp_path / "snr")
  argv = ["--out", out, "--primes", "11", "--dim", "16", "--horizon-seeds",
          "2", "--horizon-steps", "20", "--every", "10", "--particles", "8",
          "--truncations", "3", "--hidden", "2", "--snr-steps", "1"]
  assert rule_snr.main(argv) == 0
  with open(f"{out}/rows.jsonl") as f:
    text = f.read()
  rows = [json.loads(x) for x in text.splitlines()]
  assert [r["part"] for r in rows] == ["horizon"] * 4 + ["snr"]
  assert all(len(r["steps_to_95"]) == 2 for r in rows[:4])
  assert rows[4]["units"] == 4 and rows[4]["rule_params"] > 0
  assert np.isfinite(rows[4]["snr"]) and rows[4]["horizon"] == 200
  with open(f"{out}/README.md") as f:
    assert "| 3 | 2 |" in f.read()
  assert rule_snr.main(argv) == 0
  with open(f"{out}/rows.jsonl") as f:
    assert f.read() == text
  before = sorted(os.listdir(out))
  assert rule_snr.main(argv[:-1] + ["2"]) == 2
  assert rule_snr.main(argv[:2] + ["--particles", "6"]) == 2
  assert sorted(os.listdir(out)) == before
