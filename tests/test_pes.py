"""The outer trainer: PES is unbiased where truncated backprop is not,
antithetic pairs share their noise, particles persist and restart at
staggered steps, and meta-training resumes exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ngrok_jax._src.optim import pes

# An unrolled quadratic: x <- x - theta * A x + 0.05 theta^2, meta loss
# 0.5 x^T B x.  The whole-unroll objective sum_t L_t(theta) is a polynomial
# of theta whose gradient jax.grad gives exactly.
A = jnp.array([1.0, 3.0])
B = jnp.array([2.0, 0.5])
X0 = jnp.array([1.0, -1.0])
THETA = jnp.array([0.2, 0.1])
# runs of T steps, truncations of K: the 4th truncation restarts the run
# after its 3rd step, so the whole-unroll objective covers T steps of the
# first run and 2 of the second.
T, K, TRUNCS = 18, 5, 4


def _quad_task():
  def init(key, index):
    del key, index
    return dict(x=X0)

  def step(theta, inner):
    x = inner["x"] - theta * A * inner["x"] + 0.05 * theta ** 2
    return dict(x=x), dict(meta_loss=0.5 * jnp.sum(B * x * x),
                           train_loss=0.5 * jnp.sum(A * x * x))
  return pes.InnerTask(init, step)


def _whole_unroll_grad():
  task = _quad_task()

  def total(th, steps):
    inner, tot = task.init(None, 0), 0.0
    for _ in range(steps):
      inner, m = task.step(th, inner)
      tot = tot + m["meta_loss"]
    return tot
  return np.asarray(jax.grad(total)(THETA, T) + jax.grad(total)(
      THETA, TRUNCS * K - T))


def _episode_estimates(estimator, particles):
  """Each unit's estimates summed over TRUNCS truncations."""
  task = _quad_task()
  cfg = pes.OuterConfig(estimator=estimator, num_particles=particles,
                        truncation=K, horizon=T, sigma=0.01, stagger=False,
                        loss_clip=1e6)
  parts = pes.init_particles(cfg, task, THETA, jax.random.PRNGKey(0))
  est = pes.pes_estimate if estimator == "pes" else pes.tbptt_estimate
  fn = jax.jit(lambda p, k: est(cfg, task, THETA, p, k))
  key, total = jax.random.PRNGKey(1), 0.0
  for _ in range(TRUNCS):
    key, sub = jax.random.split(key)
    _, parts, aux = fn(parts, sub)
    total = total + np.asarray(aux["per_unit"])
  return total


def test_pes_matches_whole_unroll_gradient_and_tbptt_is_biased():
  true = _whole_unroll_grad()
  g = _episode_estimates("pes", 8000)  # 4000 antithetic pairs
  mean = g.mean(0)
  se = g.std(0, ddof=1) / np.sqrt(g.shape[0])
  z = (mean - true) / se
  assert np.all(np.abs(z) < 4), (mean, true, se, z)
  # the test has power: the standard error is small against the gradient
  # and against truncated backprop's bias (about 20% of its norm)
  assert np.all(se < 0.04 * np.linalg.norm(true))
  tb = _episode_estimates("tbptt", 2).mean(0)
  rel = np.linalg.norm(tb - true) / np.linalg.norm(true)
  assert rel > 0.1, (tb, true)


def _noise_task():
  """The meta loss ignores theta but carries noise from the run's key."""
  def init(key, index):
    return dict(key=key, n=jnp.zeros((), jnp.int32),
                tag=jax.random.uniform(key), index=index)

  def step(theta, inner):
    key, sub = jax.random.split(inner["key"])
    noise = jax.random.normal(sub)
    loss = noise + 0.0 * jnp.sum(theta["w"])
    return (dict(inner, key=key, n=inner["n"] + 1),
            dict(meta_loss=loss, train_loss=loss))
  return pes.InnerTask(init, step)


def test_antithetic_pairs_share_their_noise():
  task = _noise_task()
  theta = {"w": jnp.arange(3.0)}
  cfg = pes.OuterConfig(num_particles=8, truncation=4, horizon=6,
                        sigma=0.1, loss_clip=100.0)
  parts = pes.init_particles(cfg, task, theta, jax.random.PRNGKey(0))
  grad, new, aux = pes.pes_estimate(cfg, task, theta, parts,
                                    jax.random.PRNGKey(3))
  eps, ths = aux["eps"]["w"], aux["thetas"]["w"]
  # the + and - members of every pair: theta + eps and theta - eps
  np.testing.assert_array_equal(ths[:4], theta["w"] + eps)
  np.testing.assert_array_equal(ths[4:], theta["w"] - eps)
  assert len({tuple(np.asarray(e)) for e in eps}) == 4  # pairs differ
  # same data noise in both members, so the estimate is exactly zero
  np.testing.assert_array_equal(aux["obj"][:4], aux["obj"][4:])
  np.testing.assert_array_equal(grad["w"], np.zeros(3))
  assert np.asarray(aux["obj"][:4]).std() > 0  # and the noise is there


def test_persistence_accumulators_and_staggered_resets():
  task = _noise_task()
  theta = {"w": jnp.zeros((2,))}
  horizon, k, pairs = 7, 3, 4
  cfg = pes.OuterConfig(num_particles=2 * pairs, truncation=k,
                        horizon=horizon, sigma=0.1, num_groups=2)
  parts = pes.init_particles(cfg, task, theta, jax.random.PRNGKey(0))
  length = [horizon - (u * horizon) // pairs for u in range(pairs)]
  np.testing.assert_array_equal(parts.length, length * 2)
  np.testing.assert_array_equal(parts.index, [0, 1, 0, 1] * 2)
  t, acc = [0] * pairs, np.zeros((pairs, 2), np.float32)
  tags = np.asarray(parts.inner["tag"])
  fn = jax.jit(lambda p, key: pes.pes_estimate(cfg, task, theta, p, key))
  key = jax.random.PRNGKey(5)
  for _ in range(6):
    key, sub = jax.random.split(key)
    old_tags = tags
    _, parts, aux = fn(parts, sub)
    seen = np.zeros((pairs, k), bool)
    for u in range(pairs):  # the expected schedule, step by step
      for j in range(k):
        if t[u] >= length[u]:
          t[u], length[u] = 0, horizon
          seen[u, j:] = True
        t[u] += 1
    np.testing.assert_array_equal(aux["seen"][:pairs], seen)
    np.testing.assert_array_equal(aux["seen"][pairs:], seen)
    np.testing.assert_array_equal(parts.t, t * 2)
    # the inner state is carried: its own step count equals t
    np.testing.assert_array_equal(parts.inner["n"], t * 2)
    tags = np.asarray(parts.inner["tag"])
    ended = seen[:, -1]
    np.testing.assert_array_equal(tags[:pairs] != old_tags[:pairs], ended)
    np.testing.assert_array_equal(tags[:pairs], tags[pairs:])
    eps = np.asarray(aux["eps"]["w"])
    acc = np.where(ended[:, None], eps, acc + eps)
    np.testing.assert_allclose(parts.accum["w"], acc, rtol=1e-6, atol=1e-7)
  assert seen.any() and not seen.all()  # staggered: some, not all, reset


@pytest.fixture(scope="module")
def meta_train():
  from experiments import meta_train
  return meta_train


def _args(meta_train, out, steps):
  return meta_train.parser().parse_args([
      "--out", str(out), "--primes", "11", "--dim", "16", "--heads", "2",
      "--batch-size", "16", "--meta-batch", "16", "--hidden", "8",
      "--particles", "4", "--truncation", "3", "--horizon", "5",
      "--outer-steps", str(steps), "--checkpoint-every", "2",
      "--no-progress", "--no-plots"])


def test_meta_training_resume_is_exact(meta_train, tmp_path):
  full = meta_train.run(_args(meta_train, tmp_path / "a", 4))
  meta_train.run(_args(meta_train, tmp_path / "b", 2))
  resumed = meta_train.run(_args(meta_train, tmp_path / "b", 4))
  for x, y in zip(jax.tree.leaves(full["state"]),
                  jax.tree.leaves(resumed["state"])):
    np.testing.assert_array_equal(x, y)
  strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k}
                        for r in rows]
  assert strip(full["rows"]) == strip(resumed["rows"])
  assert len(full["rows"]) == 4
  # the rule moved, and the saved rule loads back
  from ngrok_jax._src.optim import learned_rule
  theta, cfg = learned_rule.load_rule(str(tmp_path / "b"))
  assert cfg.hidden == (8,)
  for x, y in zip(jax.tree.leaves(theta),
                  jax.tree.leaves(resumed["state"]["theta"])):
    np.testing.assert_array_equal(x, y)


def test_bad_settings_are_one_line_errors():
  with pytest.raises(ValueError, match="even for PES"):
    pes.OuterConfig(num_particles=3)
  with pytest.raises(ValueError, match="unknown estimator"):
    pes.OuterConfig(estimator="es")


def test_meta_objective_never_reads_the_test_split():
  from ngrok_jax._src.optim import learned_rule
  from ngrok_jax._src.training import rule_tasks as rt
  cfg = rt.ArithConfig(p=11, dim=16, heads=2, batch_size=16, meta_batch=0)
  rule = learned_rule.RuleConfig(hidden=(4,))
  theta = learned_rule.init_rule(rule, jax.random.PRNGKey(0))
  inputs, labels, sizes = rt.arith_data(cfg)
  n_tr, n_meta, _ = sizes
  inner = rt.arith_task(cfg, rule).init(jax.random.PRNGKey(1), jnp.int32(2))
  perm = np.asarray(inner["perm"])

  @jax.jit
  def losses(y):  # one step with these labels
    return rt.arith_task(cfg, rule, data=(inputs, y, sizes)).step(
        theta, inner)[1]
  corrupt = lambda rows: labels.at[:, rows].set((labels[:, rows] + 1) % cfg.p)
  base = losses(labels)
  same = losses(corrupt(perm[n_tr + n_meta:]))  # the test split
  for k in ("meta_loss", "train_loss"):
    np.testing.assert_array_equal(same[k], base[k])
  other = losses(corrupt(perm[n_tr:n_tr + n_meta]))  # control: meta split
  assert float(other["meta_loss"]) != float(base["meta_loss"])
  np.testing.assert_array_equal(other["train_loss"], base["train_loss"])
