"""Contract tests run over every transform, plus formula references."""
import functools
from typing import Any, Callable, Dict, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import ngrok_jax as nj
from ngrok_jax.learned_rule import muon_config

AMP = nj.Amplifier((8, 8))
PHI = AMP.init(jax.random.PRNGKey(0), jnp.zeros((1,)))


def const_scores(phi, x):
  del phi
  return jnp.full_like(x, 0.37)


def _sin_loss(params, shift):
  # float32 leaves only: a bfloat16 parameter moved by the look-ahead (or by
  # the inner step, placement="after") lands on one of two neighbouring bf16
  # values depending on the last rounding, so a loss of it would carry a
  # bf16-sized jump into every float32 result of the meta step (two equally
  # right computations would differ by ~1e-3, hiding wrong answers that size)
  return sum(jnp.sum(jnp.sin(3.0 * l + shift))
             for l in jax.tree.leaves(params) if l.dtype == jnp.float32)


def train_loss(params):
  return _sin_loss(params, 0.3)


def outer_loss(params):
  return _sin_loss(params, -1.1)


def _neuralgrok(meta_every, placement="after"):
  # inner: clip + Adam as the trainer's (plain optax.adam(lr) returns
  # float32 updates for a bfloat16 leaf when lr is a float32 array)
  def build(hp):
    return nj.neuralgrok(
        nj.coupled_adam(hp["lr"], warmup_steps=0), AMP.apply, PHI,
        meta_every=meta_every, c=hp["c"], lookahead=optax.sgd(hp["la_lr"]),
        # SGD with a (count) schedule: some meta-gradient components are
        # exactly zero in exact arithmetic (softmax ignores a shift of all
        # scores: the output bias, the bias of a hidden unit active on every
        # component) and rounding noise in floats; Adam's first step,
        # lr * sign(g), would turn that noise into a full step and a
        # momentum would store it, so two correct computations would differ
        meta_optimizer=optax.sgd(optax.constant_schedule(hp["meta_lr"])),
        placement=placement)
  return build


class Spec(NamedTuple):
  """A transform of the contract: ``build(hp)`` makes it from hyperparameters
  ``hp`` (Python floats, or traced arrays the way the trainer passes them);
  ``hp2`` is a second seed's values (each one different); ``kwargs`` are the
  keywords its ``update`` needs."""
  build: Callable[[Dict[str, Any]], optax.GradientTransformation]
  hp: Dict[str, float]
  hp2: Dict[str, float]
  kwargs: Dict[str, Any] = {}


_NG_HP = dict(c=0.2, lr=1e-2, la_lr=0.1, meta_lr=1.0)
_NG_HP2 = dict(c=0.35, lr=3e-3, la_lr=0.05, meta_lr=3.0)
_NG_KW = dict(outer_loss=outer_loss, train_loss=train_loss)

SPECS = {
    "amplifier_frozen": Spec(
        lambda h: nj.scale_by_amplifier(AMP.apply, PHI, c=h["c"]),
        dict(c=1.5), dict(c=0.3)),
    "amplifier_learnable": Spec(
        lambda h: nj.scale_by_amplifier(AMP.apply, c=h["c"]),
        dict(c=1.5), dict(c=0.3), dict(amplifier_params=PHI)),
    "normalize": Spec(lambda h: nj.normalize_gradients(h["c"]),
                      dict(c=0.7), dict(c=2.3)),
    "grokfast_ema": Spec(lambda h: nj.grokfast_ema(h["alpha"], h["lamb"]),
                         dict(alpha=0.9, lamb=2.0), dict(alpha=0.8, lamb=0.7)),
    "grokfast_ma": Spec(lambda h: nj.grokfast_ma(3, h["lamb"]),
                        dict(lamb=5.0), dict(lamb=1.3)),
    "coupled_adam": Spec(
        lambda h: nj.coupled_adam(h["lr"], h["wd"], h["b1"], warmup_steps=2,
                                  clip_norm=h["clip"]),
        dict(lr=1e-3, wd=1e-3, b1=0.9, clip=1.0),
        dict(lr=3e-3, wd=0.1, b1=0.8, clip=0.5)),
    "coupled_adamw": Spec(
        lambda h: nj.coupled_adam(h["lr"], h["wd"], warmup_steps=0,
                                  clip_norm=h["clip"], decoupled=True),
        dict(lr=1e-3, wd=0.1, clip=2.0), dict(lr=2e-3, wd=0.03, clip=0.7)),
    "orthogonalize": Spec(lambda h: nj.orthogonalize_gradients(h["eps"]),
                          dict(eps=1e-30), dict(eps=0.5)),
    "project_weight_norm": Spec(lambda h: nj.project_weight_norm(h["norm"]),
                                dict(norm=3.0), dict(norm=7.0)),
    # the whole bilevel update: learnable (meta step every update, after the
    # inner step / every second update, before it) and frozen
    "neuralgrok_after": Spec(_neuralgrok(1), _NG_HP, _NG_HP2, _NG_KW),
    "neuralgrok_before": Spec(_neuralgrok(2, "before"), _NG_HP, _NG_HP2,
                              dict(outer_loss=outer_loss)),
    "neuralgrok_frozen": Spec(_neuralgrok(0), _NG_HP, _NG_HP2, _NG_KW),
}

# each transform built from its Python-float hyperparameters
TRANSFORMS = {name: functools.partial(s.build, s.hp)
              for name, s in SPECS.items()}


def tree():
  r = np.random.default_rng(0)
  return {"w": jnp.asarray(r.normal(size=(3, 4)), jnp.float32),
          "s": jnp.asarray(0.5, jnp.float32),  # scalar leaf
          "h": jnp.asarray(r.normal(size=(5,)), jnp.bfloat16)}


def _update(tx, g, state, params):
  return optax.with_extra_args_support(tx).update(
      g, state, params, amplifier_params=PHI)


# Tolerances of the contract.  float32: the same computation may differ by a
# few roundings (eps = 1.2e-7) when XLA fuses or reorders it (jit, vmap) or
# when a hyperparameter is a float32 array instead of a Python float (e.g.
# 1 - alpha rounded once in float32 instead of in float64); 1e-6 is ~8 eps.
F32_RTOL = 1e-6
# bfloat16 keeps 8 significant bits: eps = 2**-7 = 0.0078.  Python-float
# hyperparameters keep bf16 arithmetic in bf16 (weak types), float32 arrays
# promote it to float32 before the final cast, and jitted XLA code may keep
# bf16 intermediates in float32 (excess precision): each differs from the
# other by a rounding of a few intermediates, each <= eps/2 relative.  Four
# eps covers that and still catches any error of a few percent.
BF16_RTOL = 4 * float(jnp.finfo(jnp.bfloat16).eps)
K = 3  # steps: fills grokfast_ma's window, ends coupled_adam's warm-up


def assert_close(actual, expected, what):
  """Leafwise: same structure, shapes and dtypes; integers equal; floats
  within the dtype's rtol of the value, with an absolute slack of rtol times
  the leaf's largest magnitude (entries that are small by cancellation carry
  the rounding error of the leaf's scale)."""
  chex.assert_trees_all_equal_structs(actual, expected)
  flat = jax.tree_util.tree_flatten_with_path(expected)[0]
  for (path, e), a in zip(flat, jax.tree.leaves(actual)):
    where = f"{what}: leaf {jax.tree_util.keystr(path)}"
    a, e = np.asarray(a), np.asarray(e)
    assert (a.shape, a.dtype) == (e.shape, e.dtype), where
    if not jnp.issubdtype(e.dtype, jnp.floating):
      np.testing.assert_array_equal(a, e, err_msg=where)
      continue
    rtol = BF16_RTOL if e.dtype == jnp.bfloat16 else F32_RTOL
    a, e = a.astype(np.float64), e.astype(np.float64)
    scale = np.max(np.abs(e), initial=0.0, where=np.isfinite(e))
    np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale,
                               err_msg=where)


def _upd(tx, kwargs, g, state, params, **extra):
  return optax.with_extra_args_support(tx).update(g, state, params,
                                                  **kwargs, **extra)


def grads(seed):
  """``K`` gradients of ``tree()``'s structure and dtypes (leading axis K)."""
  r = np.random.default_rng(seed)
  return jax.tree.map(
      lambda x: jnp.asarray(r.normal(size=(K,) + x.shape), x.dtype), tree())


def _steps(update, state, params, gs):
  """The updates and the states after each step of ``update(g, state,
  params)`` over the gradients ``gs`` (leading axis: steps), stacked; a
  Python loop (eager, or each step a call of a jitted update).  The params
  stay fixed: a moving bfloat16 parameter would make the sequence chaotic
  (see ``_sin_loss``)."""
  out = []
  for t in range(K):
    u, state = update(_seed(gs, t), state, params)
    out.append((u, state))
  return jax.tree.map(lambda *x: jnp.stack(x), *out)


def _scan_steps(update, state, params, gs):
  """``_steps`` as one ``lax.scan`` (the state is its carry)."""
  def body(s, g):
    u, s = update(g, s, params)
    return s, (u, s)
  return jax.lax.scan(body, state, gs)[1]


def _seed(tree_, i):
  return jax.tree.map(lambda x: x[i], tree_)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_contract(name):
  """The optax contract every transform keeps (NeuralGrok's whole bilevel
  update included)."""
  spec = SPECS[name]
  tx, kw = spec.build(spec.hp), spec.kwargs
  eager = functools.partial(_upd, tx, kw)
  p0, gs = tree(), grads(1)
  s0 = tx.init(p0)
  ref = _steps(eager, s0, p0, gs)  # the reference: eager, Python floats
  states = ref[1]
  first = _seed(ref, 0)

  # 3. dtypes: the updates have the params' shapes and dtypes (bfloat16 leaf
  # included), and every state those of the initial one.
  for t in range(K):
    u, s = _seed(ref, t)
    chex.assert_trees_all_equal_shapes_and_dtypes(u, p0)
    chex.assert_trees_all_equal_structs(s, s0)
    chex.assert_trees_all_equal_shapes_and_dtypes(s, s0)
  if name in ("neuralgrok_after", "neuralgrok_before"):  # phi does learn
    assert not np.allclose(jax.tree.leaves(states.amplifier_params)[0][-1],
                           jax.tree.leaves(PHI)[0])

  # 1. an unexpected keyword is ignored
  extra = eager(_seed(gs, 0), s0, p0, some_unknown_keyword=jnp.arange(3.0),
                another_one="ignored")
  chex.assert_trees_all_equal(extra, first)

  # 2. + 6. jit: the second call (new values of the same shapes, the state
  # the first call returned) compiles nothing; jit equals eager at every step.
  jitted = jax.jit(eager)
  assert_close(_steps(jitted, s0, p0, gs), ref, "jit vs eager")
  assert jitted._cache_size() == 1, "the jitted update compiled again"

  # 4. the state is stable under lax.cond (update or keep it): it traces,
  # runs, and each branch gives its own state.
  maybe = jax.jit(lambda pred, g, s, p: jax.lax.cond(
      pred, lambda: eager(g, s, p)[1], lambda: s))
  kept = maybe(jnp.asarray(False), _seed(gs, 0), s0, p0)
  stepped = maybe(jnp.asarray(True), _seed(gs, 0), s0, p0)
  assert maybe._cache_size() == 1
  chex.assert_trees_all_equal(kept, s0)
  assert_close(stepped, first[1], "lax.cond update vs eager")

  # 6. vmap over a leading batch (params and gradients) equals the
  # per-example updates (the steps as a lax.scan: the state is its carry)
  batch = [jax.tree.map(lambda x: jnp.stack([x, 2 * x + 1]), p0),
           jax.tree.map(lambda *x: jnp.stack(x), gs, grads(2))]
  out_v = jax.jit(jax.vmap(lambda p, g: _scan_steps(eager, tx.init(p), p, g)))(
      *batch)
  for i in range(2):
    p, g = _seed(batch, i)
    assert_close(_seed(out_v, i), _steps(jitted, tx.init(p), p, g),
                 f"vmap vs per-example {i}")
  assert jitted._cache_size() == 1

  # 5. hyperparameters as traced per-seed float32 arrays (as the trainer
  # passes them: built inside a jitted vmap over seeds) give each seed the
  # result of the transform built from that seed's Python floats.
  def run(hp, p, g):
    t = spec.build(hp)
    return _scan_steps(functools.partial(_upd, t, kw), t.init(p), p, g)
  hp_arrays = {k: jnp.asarray([spec.hp[k], spec.hp2[k]], jnp.float32)
               for k in spec.hp}
  per_seed = jax.jit(jax.vmap(run, in_axes=(0, None, None)))
  out = per_seed(hp_arrays, p0, gs)
  tx2 = spec.build(spec.hp2)
  refs = [ref, _steps(functools.partial(_upd, tx2, kw), tx2.init(p0), p0, gs)]
  for i in range(2):
    assert_close(_seed(out, i), refs[i], f"traced hyperparameters, seed {i}")
  # new hyperparameter values: no recompilation
  per_seed(jax.tree.map(lambda x: x[::-1], hp_arrays), p0, gs)
  assert per_seed._cache_size() == 1, "new hyperparameters compiled again"


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


def _numpy_amplifier(phi, x):
  """The amplifier MLP 1 -> 8 -> 8 -> 1 (ReLU) evaluated directly in NumPy."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), phi)["params"]
  h = x[:, None] * p["kernel_0"][0][None, :] + p["bias_0"]
  h = np.maximum(h, 0) @ p["kernel_1"] + p["bias_1"]
  return (np.maximum(h, 0) @ p["kernel_2"] + p["bias_2"])[:, 0]


def test_frozen_amplifier_in_chain_on_any_model_equals_direct_computation():
  """A user's model (a dict of arrays, no Flax): three steps of
  amplifier -> clip -> Adam against the formulas evaluated in NumPy."""
  c, lr, b1, b2, eps = 0.3, 1e-2, 0.9, 0.999, 1e-8
  tx = optax.chain(nj.scale_by_amplifier(AMP.apply, PHI, c=c),
                   optax.clip_by_global_norm(1.0),
                   optax.adam(lr, b1=b1, b2=b2, eps=eps))
  r = np.random.default_rng(7)
  params = {"a": jnp.asarray(r.normal(size=(3, 3)), jnp.float32),
            "b": jnp.asarray(2.0, jnp.float32)}
  state = tx.init(params)
  ref = {k: np.asarray(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in ref.items()}
  v2 = {k: np.zeros_like(v) for k, v in ref.items()}
  update = jax.jit(tx.update)
  for t in range(1, 4):
    g = {k: r.normal(size=np.shape(ref[k])) for k in ref}
    upd, state = update(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g),
                        state, params)
    params = optax.apply_updates(params, upd)
    amp = {}
    for k, gk in g.items():
      flat = np.ravel(gk)
      sc = _numpy_amplifier(PHI, flat)
      s = np.exp(sc - sc.max()); s /= s.sum()
      sg = s * flat
      amp[k] = (c * sg / np.linalg.norm(sg)).reshape(np.shape(gk))
    norm = np.sqrt(sum(np.sum(x ** 2) for x in amp.values()))
    scale = min(1.0, 1.0 / norm)
    for k in ref:
      gk = amp[k] * scale
      m[k] = b1 * m[k] + (1 - b1) * gk
      v2[k] = b2 * v2[k] + (1 - b2) * gk ** 2
      ref[k] = ref[k] - lr * (m[k] / (1 - b1 ** t)) / (
          np.sqrt(v2[k] / (1 - b2 ** t)) + eps)
    for k in ref:
      np.testing.assert_allclose(np.asarray(params[k], np.float64), ref[k],
                                 rtol=1e-5, atol=1e-6)


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


def test_numpy_scalars_are_numbers_to_the_factories():
  """A NumPy scalar or 0-d array (what a config read back from an array
  holds) is validated as its number: accepted when valid, rejected with
  the usual one-line message when not."""
  g = {"a": jnp.asarray([3.0, 4.0])}
  for c in (np.float32(0.7), np.asarray(0.7, np.float32), np.float64(0.7)):
    tx = nj.normalize_gradients(c)
    out, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(np.linalg.norm(out["a"]), 0.7, rtol=1e-6)
  phi = AMP.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  nj.neuralgrok(optax.sgd(0.1), AMP.apply, phi, c=np.asarray(0.2, np.float32))
  nj.grokfast_ma(np.int64(3))
  for bad in (np.float32(-1.0), np.asarray(0.0), np.float32(np.nan)):
    with pytest.raises(ValueError, match="c must be"):
      nj.normalize_gradients(bad)
    with pytest.raises(ValueError, match="c must be a number > 0"):
      nj.neuralgrok(optax.sgd(0.1), AMP.apply, phi, c=bad)
  with pytest.raises(ValueError, match="c must be a number"):
    nj.normalize_gradients(np.bool_(True))
  with pytest.raises(ValueError, match="window must be an integer"):
    nj.grokfast_ma(np.float32(2.5))


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


# ------------------------------------------ every public transform's leaves
_RULE_THETA, _RULE_CFG = nj.init_rule(nj.RuleConfig(hidden=(4,)),
                                      jax.random.PRNGKey(1)), nj.RuleConfig(
                                          hidden=(4,))
#: Every public transform (SPECS' and those without hyperparameters to
#: trace), each built from Python floats, with its update's keywords.
_MUON_CFG = muon_config(lr=1e-2, wd=0.1, hidden=(4,))
EVERY = {**{n: (TRANSFORMS[n], s.kwargs) for n, s in SPECS.items()},
         "scale_by_egd": (nj.scale_by_egd, {}),
         "clip_by_global_norm": (lambda: nj.clip_by_global_norm(0.5), {}),
         "frozen_rule": (lambda: nj.frozen_rule(_RULE_THETA, config=_RULE_CFG),
                         {}),
         "pretrained_rule": (nj.pretrained_rule, {}),
         # the orthogonalised harness, with a rule that is not the zero one
         "frozen_rule[muon]": (lambda: nj.frozen_rule(
             jax.tree.map(lambda x: x + 0.3, nj.init_rule(
                 _MUON_CFG, jax.random.PRNGKey(0))), config=_MUON_CFG), {})}
#: The transforms that zero the update of the non-finite leaf only (the
#: stateless per-tensor ones); every other one skips the whole step.
PER_LEAF = ("amplifier_frozen", "amplifier_learnable", "normalize",
            "orthogonalize", "scale_by_egd")


def _bad(g, value):
  """``g`` with one component of leaf ``w`` set to ``value``."""
  return dict(g, w=g["w"].at[1, 2].set(value))


@pytest.mark.parametrize("name", sorted(EVERY))
def test_a_nonfinite_gradient_is_confined_to_its_step(name):
  """Protects every transform's state (moments, averages, amplifier and meta
  state, counts) from a NaN or infinite gradient component: the bad step's
  update is finite and zero (for the bad leaf, or the whole step for a
  stateful or global transform), its state is the state before, bit for
  bit (so the count says the step was skipped), and the clean steps after
  it are exactly those of a run without it."""
  make, kw = EVERY[name]
  tx = make()
  step = jax.jit(functools.partial(_upd, tx, kw))
  p0, gs = tree(), grads(1)
  s = tx.init(p0)
  clean = [_seed(gs, t) for t in range(K)]
  ref, st = [], s
  for g in clean:
    u, st = step(g, st, p0)
    ref.append((u, st))
  for value in (np.nan, np.inf):
    u, st = step(clean[0], s, p0)
    u_bad, st_bad = step(_bad(clean[1], value), st, p0)
    chex.assert_tree_all_finite(u_bad)
    chex.assert_trees_all_equal(st_bad, st)  # nothing entered the state
    zero = ("w",) if name in PER_LEAF else ("w", "s", "h")
    for k in zero:
      assert not np.any(np.asarray(u_bad[k], np.float32)), (name, value, k)
    if name in PER_LEAF:  # the other leaves keep their clean update
      u_ok, _ = step(clean[1], st, p0)
      for k in ("s", "h"):
        np.testing.assert_array_equal(np.asarray(u_bad[k], np.float32),
                                      np.asarray(u_ok[k], np.float32))
    for t in (1, 2):  # then the clean steps, as if the bad one never was
      u, st = step(clean[t], st, p0)
      chex.assert_trees_all_equal((u, st), ref[t])
  assert step._cache_size() == 1


def _ng_problem(placement):
  tx = _neuralgrok(1, placement)(_NG_HP)

  def outer(mode, p):
    """mode 0: the outer loss; 1: NaN; 2: finite, with a NaN gradient."""
    return jax.lax.switch(mode, [
        outer_loss, lambda q: outer_loss(q) * jnp.nan,
        lambda q: outer_loss(q) + jnp.sqrt(q["s"] - q["s"])], p)

  @jax.jit
  def step(g, s, p, mode, meta):
    return tx.update(g, s, p, train_loss=train_loss, meta_step=meta,
                     outer_loss=functools.partial(outer, mode))
  return tx, step


@pytest.mark.parametrize("placement", ["after", "before"])
def test_a_nonfinite_outer_loss_or_meta_gradient_never_reaches_the_amplifier(
    placement):
  """Protects NeuralGrok's amplifier and meta optimizer state: a meta step
  whose outer loss is NaN, or whose meta-gradient is (finite loss), is
  skipped -- phi and the meta state are those before, the inner step is
  taken, the update is finite -- and the state and the later steps are
  exactly those of the same steps with that meta step turned off; the
  state's outer_loss / meta_grad_norm show what the step saw."""
  tx, step = _ng_problem(placement)
  p0, gs = tree(), grads(1)
  g = [_seed(gs, t) for t in range(K)]
  yes, no = jnp.asarray(True), jnp.asarray(False)
  s0 = step(g[0], tx.init(p0), p0, 0, yes)[1]
  ref = [step(g[1], s0, p0, 0, no)]  # the reference: no meta step at 1
  for t in (2,):
    ref.append(step(g[t], ref[-1][1], p0, 0, yes))
  for mode in (1, 2):
    u, s1 = step(g[1], s0, p0, mode, yes)
    chex.assert_tree_all_finite(u)
    chex.assert_trees_all_equal(s1.amplifier_params, s0.amplifier_params)
    assert not np.isfinite(float(s1.meta_grad_norm))
    if mode == 1:
      assert np.isnan(float(s1.outer_loss))
    fields = ("count", "amplifier_params", "meta_state", "inner_state")
    chex.assert_trees_all_equal((u,) + tuple(getattr(s1, f) for f in fields),
                                (ref[0][0],) + tuple(getattr(ref[0][1], f)
                                                     for f in fields))
    u2, s2 = step(g[2], s1, p0, 0, yes)
    chex.assert_trees_all_equal((u2, s2), ref[1])
  assert step._cache_size() == 1


def _with_odd_leaves(t, extra):
  return dict(t, **extra)


@pytest.mark.parametrize("name", sorted(EVERY))
def test_zero_size_leaves_pass_through_and_integer_leaves_are_named(name):
  """Protects users' trees with empty tensors (a zero-width layer, an
  optional bias of size 0: optax's own transforms pass them) and with an
  integer leaf (a step counter kept among the params): every transform
  returns a zero-size update of the leaf's shape and dtype and the other
  leaves' updates unchanged; an integer gradient is refused with one line
  naming the leaf's path."""
  make, kw = EVERY[name]
  tx = make()
  p0, g = tree(), _seed(grads(1), 0)
  empty = {"e": jnp.zeros((0,), jnp.float32),
           "z": jnp.zeros((3, 0), jnp.bfloat16)}
  base, _ = _upd(tx, kw, g, tx.init(p0), p0)
  p1, g1 = _with_odd_leaves(p0, empty), _with_odd_leaves(g, empty)
  got, _ = _upd(tx, kw, g1, tx.init(p1), p1)
  for k, v in empty.items():
    assert (got[k].shape, got[k].dtype) == (v.shape, v.dtype), (name, k)
  assert_close({k: got[k] for k in base}, base, f"{name} with empty leaves")
  ints = {"n": jnp.arange(3, dtype=jnp.int32)}
  p2, g2 = _with_odd_leaves(p0, ints), _with_odd_leaves(g, ints)
  with pytest.raises(ValueError, match=r"leaf \['n'\] is int32") as e:
    _upd(tx, kw, g2, tx.init(p2), p2)
  assert "\n" not in str(e.value)


def test_c_must_be_finite_wherever_it_is_checked():
  """Protects the amplifier's output norm c from inf and NaN (an infinite
  norm makes every update infinite): each factory taking c refuses them
  with one line."""
  phi = AMP.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  makers = [lambda c: nj.normalize_gradients(c),
            lambda c: nj.scale_by_amplifier(AMP.apply, phi, c=c),
            lambda c: nj.neuralgrok(optax.sgd(0.1), AMP.apply, phi, c=c),
            lambda c: nj.RuleConfig(placement="amplifier", c=c)]
  for make in makers:
    for bad in (float("inf"), float("nan"), np.float32(np.inf)):
      with pytest.raises(ValueError, match="c.* must be") as e:
        make(bad)
      assert "\n" not in str(e.value)


def test_copies_sharing_an_amplifier_skip_a_bad_meta_step_together():
  """Protects the shared amplifier of a cross-task run (meta_axis_name):
  when one copy's outer loss is NaN (its meta-gradient finite: the averaged
  one is too), every copy keeps phi (they stay equal and finite) and takes
  its inner step."""
  amp = nj.Amplifier((4,), "dense")
  phi0 = amp.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  tx = nj.neuralgrok(optax.sgd(0.1), amp.apply, phi0, meta_every=1,
                     lookahead=optax.sgd(0.5), meta_optimizer=optax.sgd(1.0),
                     placement="before", meta_axis_name="task")
  params = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]])}

  def one(bad):
    s = tx.init(params)
    u, s = tx.update(jax.grad(train_loss)(params), s, params,
                     outer_loss=lambda p: outer_loss(p) + bad)
    return u, s.amplifier_params

  u, phi = jax.vmap(one, axis_name="task")(jnp.asarray([0.0, jnp.nan]))
  chex.assert_tree_all_finite(u)
  assert np.all(np.asarray(u["w"]) != 0)
  for i in range(2):
    chex.assert_trees_all_equal(_seed(phi, i), phi0)
