"""Contract tests run over every transform, plus formula references."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import ngrok_jax as nj

AMP = nj.Amplifier((8, 8))
PHI = AMP.init(jax.random.PRNGKey(0), jnp.zeros((1,)))


def const_scores(phi, x):
  del phi
  return jnp.full_like(x, 0.37)


TRANSFORMS = {
    "amplifier_frozen": lambda: nj.scale_by_amplifier(AMP.apply, PHI, c=1.5),
    "amplifier_learnable": lambda: nj.scale_by_amplifier(AMP.apply, c=1.5),
    "normalize": lambda: nj.normalize_gradients(0.7),
    "grokfast_ema": lambda: nj.grokfast_ema(0.9, 2.0),
    "grokfast_ma": lambda: nj.grokfast_ma(3, 5.0),
    "coupled_adam": lambda: nj.coupled_adam(1e-3, 1e-3, warmup_steps=2),
}


def tree():
  r = np.random.default_rng(0)
  return {"w": jnp.asarray(r.normal(size=(3, 4)), jnp.float32),
          "s": jnp.asarray(0.5, jnp.float32),  # scalar leaf
          "h": jnp.asarray(r.normal(size=(5,)), jnp.bfloat16)}


def _update(tx, g, state, params):
  return optax.with_extra_args_support(tx).update(
      g, state, params, amplifier_params=PHI)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_contract_jit_vmap_dtype(name):
  tx = TRANSFORMS[name]()
  params = tree()
  state = tx.init(params)
  upd, state2 = _update(tx, params, state, params)
  chex.assert_trees_all_equal_structs(upd, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(upd, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(state, state2)
  # jit gives the same result
  upd_j, _ = jax.jit(lambda g, s, p: _update(tx, g, s, p))(params, state, params)
  chex.assert_trees_all_close(upd, upd_j, rtol=1e-2, atol=1e-6)
  # vmap over a leading batch of pytrees equals per-example updates
  batch = jax.tree.map(lambda x: jnp.stack([x, 2 * x + 1]), params)
  states = jax.vmap(tx.init)(batch)
  upd_v, _ = jax.vmap(lambda g, s: _update(tx, g, s, g))(batch, states)
  for i in range(2):
    one = jax.tree.map(lambda x: x[i], batch)
    u1, _ = _update(tx, one, tx.init(one), one)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], upd_v), u1,
                                rtol=1e-2, atol=1e-6)


def test_constant_scores_equal_normalize_gradients():
  params = tree()
  amp = nj.scale_by_amplifier(const_scores, {}, c=1.7)
  u1, _ = amp.update(params, amp.init(params))
  u2, _ = nj.normalize_gradients(1.7).update(params, None)
  chex.assert_trees_all_close(u1, u2, rtol=1e-6, atol=1e-7)
  for leaf in jax.tree.leaves(u2):
    np.testing.assert_allclose(np.linalg.norm(np.asarray(leaf, np.float32)),
                               1.7, rtol=1e-2)


def test_grokfast_ema_matches_numpy():
  alpha, lamb = 0.9, 2.0
  tx = nj.grokfast_ema(alpha, lamb)
  r = np.random.default_rng(3)
  gs = [r.normal(size=(4,)).astype(np.float32) for _ in range(6)]
  state = tx.init(jnp.zeros(4))
  ema = None
  for g in gs:
    out, state = tx.update(jnp.asarray(g), state)
    ema = g.copy() if ema is None else alpha * ema + (1 - alpha) * g
    np.testing.assert_allclose(out, g + lamb * ema, rtol=1e-5)


def test_grokfast_ma_matches_numpy():
  w, lamb = 3, 5.0
  tx = nj.grokfast_ma(w, lamb)
  r = np.random.default_rng(4)
  gs = [r.normal(size=(2, 2)).astype(np.float32) for _ in range(8)]
  state = tx.init(jnp.zeros((2, 2)))
  for t, g in enumerate(gs):
    out, state = tx.update(jnp.asarray(g), state)
    window = gs[max(0, t - w + 1):t + 1]
    ref = g + lamb * np.mean(window, axis=0) if len(window) == w else g
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_coupled_adam_matches_pytorch_formula():
  lr, wd, b1, b2, eps, warm = 1e-2, 0.1, 0.9, 0.98, 1e-8, 3
  tx = nj.coupled_adam(lr, wd, b1, b2, eps, warmup_steps=warm, clip_norm=1.0)
  r = np.random.default_rng(5)
  theta = r.normal(size=(5,)).astype(np.float64)
  m = np.zeros(5); v = np.zeros(5)
  p = jnp.asarray(theta, jnp.float32)
  state = tx.init(p)
  for t in range(1, 6):
    g = r.normal(size=(5,)) * 3
    gc = g * min(1.0, 1.0 / np.linalg.norm(g)) + wd * theta
    m = b1 * m + (1 - b1) * gc
    v = b2 * v + (1 - b2) * gc ** 2
    lr_t = lr * min(1.0, (t - 1) / warm)  # PyTorch LambdaLR: 0 at step 0
    theta = theta - lr_t * (m / (1 - b1 ** t)) / (
        np.sqrt(v / (1 - b2 ** t)) + eps)
    upd, state = tx.update(jnp.asarray(g, jnp.float32), state, p)
    p = optax.apply_updates(p, upd)
    np.testing.assert_allclose(p, theta, rtol=1e-5, atol=1e-6)


def test_learnable_amplifier_meta_gradient_flows_through_chain():
  tx = optax.chain(nj.scale_by_amplifier(AMP.apply), optax.clip_by_global_norm(1.0),
                   optax.adam(1e-2, eps_root=1e-12))
  params = tree()
  params = jax.tree.map(lambda x: x.astype(jnp.float32), params)
  state = tx.init(params)

  def f(phi):
    upd, _ = tx.update(params, state, params, amplifier_params=phi)
    new = optax.apply_updates(params, upd)
    return sum(jnp.sum(jnp.sin(3 * l)) for l in jax.tree.leaves(new))

  g = jax.grad(f)(PHI)
  total = sum(float(jnp.sum(jnp.abs(l))) for l in jax.tree.leaves(g))
  assert np.isfinite(total) and total > 0


def test_frozen_amplifier_in_chain_on_any_model():
  tx = optax.chain(nj.scale_by_amplifier(AMP.apply, PHI),
                   optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  params = {"a": jnp.ones((3, 3)), "b": jnp.asarray(2.0)}
  state = tx.init(params)
  upd, _ = jax.jit(tx.update)(params, state, params)
  chex.assert_tree_all_finite(upd)


@pytest.mark.parametrize("method", ["pwl", "dense"])
def test_frozen_amplifier_with_numpy_params_under_jit(method):
  """Regression: NumPy parameters (msgpack restore, ``jax.device_get``)
  closed over by a jitted chain used to raise TracerArrayConversionError in
  ``pwl_table``; they must give exactly the jnp-parameter result."""
  from flax import serialization
  amp = nj.Amplifier((8, 8), method=method)
  phi = amp.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  phi_np = serialization.msgpack_restore(serialization.msgpack_serialize(
      jax.device_get(phi)))
  assert all(isinstance(l, np.ndarray) for l in jax.tree.leaves(phi_np))
  params = jax.tree.map(lambda x: x.astype(jnp.float32), tree())
  grads = jax.tree.map(lambda x: jnp.sin(3 * x) + 0.1, params)

  def run(ph):
    tx = optax.chain(nj.scale_by_amplifier(amp.apply, ph),
                     optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    state = tx.init(params)
    return jax.jit(tx.update)(grads, state, params)

  upd_np, state_np = run(phi_np)
  upd_j, state_j = run(phi)
  chex.assert_tree_all_finite(upd_np)
  chex.assert_trees_all_equal(upd_np, upd_j)
  chex.assert_trees_all_equal(state_np, state_j)


def test_transform_factories_reject_bad_values():
  with pytest.raises(ValueError, match="callable"):
    nj.scale_by_amplifier(3)
  with pytest.raises(ValueError, match="c must be > 0"):
    nj.normalize_gradients(-1.0)
  with pytest.raises(ValueError, match="alpha"):
    nj.grokfast_ema(1.5)
  with pytest.raises(ValueError, match="window"):
    nj.grokfast_ma(0)
  with pytest.raises(ValueError, match="window must be an integer"):
    nj.grokfast_ma(2.5)
  tx = nj.scale_by_amplifier(AMP.apply)
  with pytest.raises(ValueError, match="amplifier_params"):
    tx.update({"a": jnp.ones(2)}, tx.init(None))


_BIG, _TINY = float(np.float32(1e30)), float(np.float32(1e-30))
_f32 = dict(width=32, allow_nan=False, allow_infinity=False,
            allow_subnormal=False)
leaf = hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
                  elements=st.one_of(st.just(0.0),
                                     st.floats(-_BIG, _BIG, **_f32),
                                     st.floats(-_TINY, _TINY, **_f32)))


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.sampled_from("abcd"), leaf, min_size=1))
@example({"a": np.full((2,), np.finfo(np.float32).tiny, np.float32)})
def test_property_outputs_finite_and_normalized(grads):
  for name in ("amplifier_frozen", "normalize"):
    tx = TRANSFORMS[name]()
    out, _ = _update(tx, grads, tx.init(grads), grads)
    c = 1.5 if name == "amplifier_frozen" else 0.7
    for g, o in zip(jax.tree.leaves(grads), jax.tree.leaves(out)):
      o = np.asarray(o, np.float64)
      assert o.shape == g.shape and np.all(np.isfinite(o))
      if np.all(g == 0):
        assert np.all(o == 0)
      else:  # huge and tiny values alike: the norm is exactly c
        np.testing.assert_allclose(np.linalg.norm(o), c, rtol=1e-3)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 3), st.integers(1, 6))
def test_property_nan_in_gradient_stays_visible(pos, n):
  g = np.ones(max(n, pos + 1), np.float32)
  g[pos] = np.nan
  for name in ("amplifier_frozen", "normalize", "grokfast_ema",
               "grokfast_ma", "coupled_adam"):
    tx = TRANSFORMS[name]()
    tree_ = {"x": jnp.asarray(g)}
    out, _ = _update(tx, tree_, tx.init(tree_), tree_)
    assert np.isnan(np.asarray(out["x"])).any(), name
