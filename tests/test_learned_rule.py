"""The learned update rule: bounded output, the amplifier placement, and a
frozen rule that trains a user's own model (not the library's
transformer)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ngrok_jax import Amplifier, scale_by_amplifier
from ngrok_jax._src.optim import learned_rule as lr


def _mlp_problem():
  """A user's own model: a 2-layer tanh MLP regressing a smooth target."""
  kx, k1, k2 = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (128, 4))
  y = jnp.sin(x @ jnp.array([1.0, -2.0, 0.5, 1.5]))[:, None]
  params = {"w1": 0.5 * jax.random.normal(k1, (4, 32)), "b1": jnp.zeros(32),
            "w2": 0.5 * jax.random.normal(k2, (32, 1)), "b2": jnp.zeros(1)}

  def loss(p):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return jnp.mean(jnp.square(h @ p["w2"] + p["b2"] - y))
  return params, loss


def _train(tx, params, loss, steps):
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    g = jax.grad(loss)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s
  for _ in range(steps):
    params, state = step(params, state)
  return float(loss(params))


def test_frozen_rule_trains_a_users_mlp(tmp_path):
  cfg = lr.RuleConfig(hidden=(16,), lr=1e-2)
  theta = lr.init_rule(cfg, jax.random.PRNGKey(1))
  lr.save_rule(str(tmp_path), cfg, theta)
  theta2, cfg2 = lr.load_rule(str(tmp_path))
  assert cfg2 == cfg
  params, loss = _mlp_problem()
  start = float(loss(params))
  end = _train(lr.frozen_rule(theta2, config=cfg2), params, loss, 300)
  adam = _train(optax.adam(1e-2), params, loss, 300)
  assert end < 0.1 * start, (start, end)
  assert end < 3 * adam + 1e-3, (end, adam)  # in Adam's league
  with pytest.raises(ValueError, match="needs the parameters"):
    tx = lr.frozen_rule(theta, config=cfg)
    tx.update(params, tx.init(params))


def test_update_is_bounded_whatever_the_rule():
  cfg = lr.RuleConfig(hidden=(8,), lr=1e-3)
  theta = lr.init_rule(cfg, jax.random.PRNGKey(0))
  theta = jax.tree.map(lambda a: 1e3 * a + 50.0, theta)  # a wild rule
  params = {"a": jnp.ones((5, 7)), "b": jnp.zeros((3,))}
  grads = {"a": 1e20 * jax.random.normal(jax.random.PRNGKey(2), (5, 7)),
           "b": jnp.array([1e-30, -2e-30, 0.0])}
  state = lr.init_rule_state(cfg, params)
  for _ in range(3):
    upd, state = lr.rule_update(cfg, theta, grads, state, params)
    for u in jax.tree.leaves(upd):
      assert np.all(np.isfinite(u))
      assert float(jnp.sqrt(jnp.mean(jnp.square(u)))) <= 2 * cfg.lr * (
          1 + 1e-5)


def test_amplifier_placement_is_the_paper_amplifier_before_adam():
  cfg = lr.RuleConfig(placement="amplifier", hidden=(8, 8), lr=1e-3, c=1.0)
  theta = lr.init_rule(cfg, jax.random.PRNGKey(0))
  params = {"a": jnp.ones((4, 3)), "b": jnp.arange(5.0)}
  ref = optax.chain(scale_by_amplifier(Amplifier((8, 8)).apply, theta, c=1.0),
                    optax.adam(1e-3, eps=1e-8))
  rs, st = ref.init(params), lr.init_rule_state(cfg, params)
  for i in range(4):
    g = jax.tree.map(lambda p: jnp.sin(p * (i + 1.3)) + 0.1 * i, params)
    u_ref, rs = ref.update(g, rs, params)
    u, st = lr.rule_update(cfg, theta, g, st, params)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_ref)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-9)
    params = optax.apply_updates(params, u)


def test_rule_sees_its_inputs_and_starts_near_adam():
  cfg = lr.RuleConfig(hidden=(8,))
  assert lr.num_features(cfg) == 12
  theta = lr.init_rule(cfg, jax.random.PRNGKey(0))
  params = {"w": jax.random.normal(jax.random.PRNGKey(1), (6, 6))}
  g = {"w": jax.random.normal(jax.random.PRNGKey(2), (6, 6))}
  st = lr.init_rule_state(cfg, params)
  adam = optax.adam(cfg.lr)
  d = lr.rule_distances(cfg, theta, g, st, params,
                        [adam.update(g, adam.init(params))[0],
                         g])
  assert float(d[0]) < 0.02  # the first step is Adam's direction,
  assert float(d[1]) > 1.5  # against the gradient
  # both outputs matter: the direction head changes the direction, the
  # magnitude head the per-tensor scale
  w, b = theta["layers"][-1]
  u0, _ = lr.rule_update(cfg, theta, g, st, params)
  rms = lambda u: float(jnp.sqrt(jnp.mean(jnp.square(u["w"]))))
  for col in (0, 1):
    th = dict(layers=list(theta["layers"][:-1]) + [(w.at[:, col].add(1.0), b)])
    u, _ = lr.rule_update(cfg, th, g, st, params)
    same_dir = np.allclose(u["w"] / rms(u), u0["w"] / rms(u0), atol=1e-4)
    assert same_dir == (col == 1), col
    assert np.isclose(rms(u), rms(u0), rtol=1e-4) == (col == 0), col


def test_bad_config_is_a_one_line_error():
  with pytest.raises(ValueError, match="unknown placement"):
    lr.RuleConfig(placement="before")
  with pytest.raises(ValueError, match="no learned rule"):
    lr.load_rule("/nonexistent/folder")
