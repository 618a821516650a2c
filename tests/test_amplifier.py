import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ngrok_jax as nj


def numpy_mlp(params, x):
  p = params["params"]
  n = len([k for k in p if k.startswith("kernel_")])
  h = x[:, None].astype(np.float64)
  for i in range(n):
    h = h @ np.asarray(p[f"kernel_{i}"], np.float64) + np.asarray(
        p[f"bias_{i}"], np.float64)
    if i < n - 1:
      h = np.maximum(h, 0)
  return h[:, 0]


def numpy_amplify(params, grads, c):
  out = {}
  for k, g in grads.items():
    g = np.asarray(g, np.float64).ravel()
    s = numpy_mlp(params, g)
    s = np.exp(s - s.max())
    s /= s.sum()
    u = s * g
    out[k] = (c * u / np.linalg.norm(u)).reshape(np.shape(grads[k]))
  return out


@pytest.mark.parametrize("hidden", [(8,), (16, 16), (4, 5, 6), (128, 128)])
@pytest.mark.parametrize("method", ["pwl", "dense"])
def test_amplifier_matches_numpy(hidden, method):
  amp = nj.Amplifier(hidden, method=method)
  params = amp.init(jax.random.PRNGKey(1), jnp.zeros((1,)))
  x = np.random.default_rng(0).normal(size=5000).astype(np.float32) * 2
  np.testing.assert_allclose(np.asarray(amp.apply(params, jnp.asarray(x))),
                             numpy_mlp(params, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hidden", [(32,), (8, 8), (3, 4, 5)])
def test_pwl_gradient_equals_dense_gradient(hidden):
  x = jax.random.normal(jax.random.PRNGKey(2), (3000,)) * 0.5
  dense, pwl = nj.Amplifier(hidden, "dense"), nj.Amplifier(hidden, "pwl")
  params = dense.init(jax.random.PRNGKey(0), x[:1])
  w = jax.random.normal(jax.random.PRNGKey(3), x.shape)
  gd = jax.grad(lambda p: jnp.sum(w * dense.apply(p, x)))(params)
  gp = jax.grad(lambda p: jnp.sum(w * pwl.apply(p, x)))(params)
  for a, b in zip(jax.tree.leaves(gd), jax.tree.leaves(gp)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)


def test_pwl_table_is_sorted_and_bounded():
  amp = nj.Amplifier((16, 16))
  params = amp.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  p = params["params"]
  layers = [(p[f"kernel_{i}"], p[f"bias_{i}"]) for i in range(3)]
  bp, slope, icpt = nj.pwl_table(layers)
  assert bp.shape[0] == 16 + 17 * 16 and slope.shape[0] == bp.shape[0] + 1
  assert bool(jnp.all(jnp.diff(bp) >= 0))


def test_pwl_table_accepts_numpy_layers_under_jit():
  """NumPy weights closed over by a jitted function (regression: indexing
  them by a traced array raised TracerArrayConversionError)."""
  amp = nj.Amplifier((8, 8))
  phi = amp.init(jax.random.PRNGKey(3), jnp.zeros((1,)))["params"]
  layers = [(phi[f"kernel_{i}"], phi[f"bias_{i}"]) for i in range(3)]
  layers_np = [(np.asarray(w), np.asarray(b)) for w, b in layers]
  ref = jax.jit(lambda: nj.pwl_table(layers))()
  got = jax.jit(lambda: nj.pwl_table(layers_np))()
  for r, g in zip(ref, got):
    np.testing.assert_array_equal(np.asarray(r), np.asarray(g))


def test_amplify_matches_numpy_formula():
  amp = nj.Amplifier((16, 16))
  params = amp.init(jax.random.PRNGKey(4), jnp.zeros((1,)))
  rng = np.random.default_rng(1)
  grads = {"w": rng.normal(size=(7, 5)).astype(np.float32),
           "b": rng.normal(size=(5,)).astype(np.float32) * 1e-3}
  out = nj.amplify(grads, lambda x: amp.apply(params, x), 2.5)
  ref = numpy_amplify(params, grads, 2.5)
  for k in grads:
    np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)
    assert out[k].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out[k]), 2.5, rtol=1e-5)


def test_zero_gradient_is_finite_in_value_and_meta_gradient():
  amp = nj.Amplifier((8,))
  params = amp.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  grads = {"z": jnp.zeros((4, 3)), "w": jnp.ones((3,))}

  def f(phi):
    out = nj.amplify(grads, lambda x: amp.apply(phi, x), 1.0)
    return jnp.sum(out["z"]) + jnp.sum(out["w"] ** 3)

  val, g = jax.value_and_grad(f)(params)
  out = nj.amplify(grads, lambda x: amp.apply(params, x), 1.0)
  assert np.all(np.asarray(out["z"]) == 0)
  assert np.isfinite(val)
  assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(g))


def test_nan_stays_visible():
  out = nj.safe_normalize(jnp.array([1.0, jnp.nan]), 1.0)
  assert np.isnan(np.asarray(out)).any()


def test_amplifier_rejects_bad_input():
  amp = nj.Amplifier((4,))
  with pytest.raises(ValueError, match="1-D"):
    amp.init(jax.random.PRNGKey(0), jnp.zeros((2, 2)))
  with pytest.raises(ValueError, match="valid: 'pwl', 'dense'"):
    nj.Amplifier((4,), method="fast").init(jax.random.PRNGKey(0), jnp.zeros(1))
  with pytest.raises(ValueError, match="hidden"):
    nj.Amplifier((0,)).init(jax.random.PRNGKey(0), jnp.zeros(1))
