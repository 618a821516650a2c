"""ngrok_jax.neuralgrok: the bilevel update as an optax transformation, on
models that are not this library's transformer."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj

def reference_objective(pb, phi, params, g, outer, c, lr):
  """The meta objective written out directly: softmax-weighted, per-tensor
  normalised gradient, one SGD look-ahead step, outer loss (``pb``: the
  :class:`ToyProblem`, its amplifier and loss)."""
  new = {}
  for k in params:
    gk = g[k].ravel()
    s = jax.nn.softmax(pb.amp.apply(phi, gk))
    sg = s * gk
    new[k] = params[k] - lr * (c * sg / jnp.linalg.norm(sg)).reshape(
        g[k].shape)
  return pb.loss(new, *outer)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_meta_gradient_matches_finite_differences(placement, toy_problem):
  """The transform's meta-gradient (read off a meta step with SGD(1) as the
  meta optimizer) equals finite differences of the objective computed
  independently of the library, and is not zero."""
  c, lr = 0.3, 0.05
  with jax.enable_x64(True):
    pb = toy_problem(jnp.float64)
    params, train, outer, amp, phi = pb
    mse = pb.loss
    tx = nj.neuralgrok(optax.sgd(0.1), amp.apply, phi, meta_every=1, c=c,
                       lookahead=optax.sgd(lr),
                       meta_optimizer=optax.sgd(1.0), placement=placement)
    state = tx.init(params)
    g = jax.grad(mse)(params, *train)
    upd, state2 = jax.jit(lambda g, s, p: tx.update(
        g, s, p, train_loss=lambda q: mse(q, *train),
        outer_loss=lambda q: mse(q, *outer)))(g, state, params)
    mg = jax.tree.map(lambda a, b: a - b, phi, nj.amplifier_params(state2))
    if placement == "after":  # the meta step sits at the updated params
      at = optax.apply_updates(params, upd)
      g_at = jax.grad(mse)(at, *train)
    else:
      at, g_at = params, g
    f = jax.jit(lambda ph: reference_objective(pb, ph, at, g_at, outer, c, lr))
    np.testing.assert_allclose(float(state2.outer_loss), float(f(phi)),
                               rtol=1e-12)
    norm = np.sqrt(sum(float(jnp.sum(l ** 2)) for l in jax.tree.leaves(mg)))
    assert norm > 1e-8
    rng = np.random.default_rng(1)
    for _ in range(3):
      v = jax.tree.map(lambda l: jnp.asarray(rng.normal(size=l.shape)), phi)
      h = 1e-6
      fd = (f(jax.tree.map(lambda a, b: a + h * b, phi, v)) -
            f(jax.tree.map(lambda a, b: a - h * b, phi, v))) / (2 * h)
      an = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(mg),
                                              jax.tree.leaves(v)))
      np.testing.assert_allclose(float(an), float(fd), rtol=1e-5, atol=1e-10)


def test_inner_step_is_inner_optimizer_of_amplified_gradient(toy_problem):
  pb = toy_problem()
  params, train, outer, amp, phi = pb
  mse = pb.loss
  inner = optax.adam(1e-2)
  tx = nj.neuralgrok(inner, amp.apply, phi, meta_every=3, c=0.2)
  g = jax.grad(mse)(params, *train)
  upd, state = tx.update(g, tx.init(params), params, meta_step=False)
  ga = nj.amplify(g, lambda x: amp.apply(phi, x), 0.2)
  ref, _ = inner.update(ga, inner.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               upd, ref)
  assert int(state.count) == 1 and np.isnan(float(state.outer_loss))
  jax.tree.map(np.testing.assert_array_equal, nj.amplifier_params(state), phi)


def test_meta_steps_follow_the_count(toy_problem):
  pb = toy_problem()
  params, train, outer, amp, phi = pb
  mse = pb.loss
  kw = dict(train_loss=lambda q: mse(q, *train),
            outer_loss=lambda q: mse(q, *outer))
  for placement, expected in (("after", [2, 5]), ("before", [0, 3])):
    tx = nj.neuralgrok(optax.sgd(0.1), amp.apply, phi, meta_every=3,
                       meta_optimizer=optax.sgd(0.5), placement=placement)
    state, p = tx.init(params), params
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, **kw))
    changed = []
    for i in range(6):
      before = nj.amplifier_params(state)
      u, state = update(jax.grad(mse)(p, *train), state, p)
      p = optax.apply_updates(p, u)
      if any(not np.array_equal(a, b) for a, b in zip(
          jax.tree.leaves(before), jax.tree.leaves(
              nj.amplifier_params(state)))):
        changed.append(i)
      assert bool(nj.is_meta_step(i, 3, placement)) == (i in expected)
    assert changed == expected, placement


def test_a_callers_clock_decides_and_becomes_the_count(toy_problem):
  """One clock: ``count=step`` (the caller's loop step) decides the meta
  step and is the state's count afterwards (``step + 1``), an update
  skipped for a non-finite gradient included, so continuing on the state's
  own count keeps the caller's meta steps; shared under ``vmap`` it keeps
  a real branch.  Fails if the keyword is ignored (the count lags)."""
  pb = toy_problem()
  params, train, outer, amp, phi = pb
  mse = pb.loss
  kw = dict(train_loss=lambda q: mse(q, *train),
            outer_loss=lambda q: mse(q, *outer))
  tx = nj.neuralgrok(optax.sgd(0.1), amp.apply, phi, meta_every=3,
                     meta_optimizer=optax.sgd(0.5))  # "after": 2, 5, 8, ...
  clock = jax.jit(lambda g, s, c: tx.update(g, s, params, count=c, **kw))
  own = jax.jit(lambda g, s: tx.update(g, s, params, **kw))
  g = jax.grad(mse)(params, *train)
  moved = lambda a, b: any(not np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(nj.amplifier_params(a)),
      jax.tree.leaves(nj.amplifier_params(b))))
  s0 = tx.init(params)  # count 0; the caller's loop is at step 5
  _, s = clock(g, s0, 5)
  assert int(s.count) == 6 and moved(s0, s)  # step 5 decided: a meta step
  bad = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), g)
  u, s7 = clock(bad, s, 6)  # skipped: nothing changes but the clock
  assert int(s7.count) == 7 and not any(
      np.any(np.asarray(x)) for x in jax.tree.leaves(u))
  jax.tree.map(np.testing.assert_array_equal, s7._replace(count=s.count), s)
  # the state's own count goes on in step with the caller's: 7 no, 8 yes
  _, s8 = own(g, s7)
  assert int(s8.count) == 8 and not moved(s7, s8)
  _, s9 = own(g, s8)
  assert int(s9.count) == 9 and moved(s8, s9)
  # a clock shared by vmapped seeds keeps the meta step a real branch
  states = jax.vmap(lambda _: tx.init(params))(jnp.arange(2))
  shared = jax.make_jaxpr(jax.vmap(
      lambda st, c: tx.update(g, st, params, count=c, **kw),
      in_axes=(0, None)))(states, jnp.asarray(2, jnp.int32))
  assert _has_cond(shared)


def _has_cond(jaxpr) -> bool:
  return bool(re.search(r"\bcond\[", str(jaxpr)))


def test_vmap_over_seeds_keeps_a_real_branch_with_a_shared_flag(toy_problem):
  pb = toy_problem()
  params, train, outer, amp, phi = pb
  mse = pb.loss
  tx = nj.neuralgrok(optax.sgd(0.1), amp.apply, phi, meta_every=4)
  states = jax.vmap(lambda _: tx.init(params))(jnp.arange(2))
  kw = dict(train_loss=lambda q: mse(q, *train),
            outer_loss=lambda q: mse(q, *outer))

  def per_seed(s, flag):
    g = jax.grad(mse)(params, *train)
    return tx.update(g, s, params, meta_step=flag, **kw)

  shared = jax.make_jaxpr(jax.vmap(per_seed, in_axes=(0, None)))(
      states, jnp.asarray(True))
  own = jax.make_jaxpr(jax.vmap(lambda s: per_seed(s, None)))(states)
  assert _has_cond(shared)       # a shared flag: the meta step is a branch
  assert not _has_cond(own)      # batched count: vmap computes both sides
  # both give the same numbers (jitted: one compilation each, not one per
  # operation)
  a = jax.jit(jax.vmap(per_seed, in_axes=(0, None)))(states,
                                                      jnp.asarray(False))
  b = jax.jit(jax.vmap(lambda s: per_seed(s, None)))(states)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6),
               a[0], b[0])


def test_frozen_with_meta_every_zero_equals_scale_by_amplifier(toy_problem):
  pb = toy_problem()
  params, train, _, amp, phi = pb
  mse = pb.loss
  tx = nj.neuralgrok(optax.adam(1e-2), amp.apply, phi, meta_every=0, c=0.4)
  ref = optax.chain(nj.scale_by_amplifier(amp.apply, phi, c=0.4),
                    optax.adam(1e-2))
  s, rs, p, q = tx.init(params), ref.init(params), params, params
  for _ in range(3):
    u, s = tx.update(jax.grad(mse)(p, *train), s, p)  # no outer_loss needed
    v, rs = ref.update(jax.grad(mse)(q, *train), rs, q)
    p, q = optax.apply_updates(p, u), optax.apply_updates(q, v)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p, q)
  assert s.meta_state == optax.EmptyState()


def test_bad_arguments_raise_clear_errors(toy_problem):
  pb = toy_problem()
  params, train, _, amp, phi = pb
  mse = pb.loss
  with pytest.raises(ValueError, match="meta_every"):
    nj.neuralgrok(optax.sgd(1.0), amp.apply, phi, meta_every=-1)
  with pytest.raises(ValueError, match="placement"):
    nj.neuralgrok(optax.sgd(1.0), amp.apply, phi, placement="during")
  with pytest.raises(ValueError, match="lookahead"):
    nj.neuralgrok(optax.sgd(1.0), amp.apply, phi, lookahead="adam")
  with pytest.raises(ValueError, match="c must be"):
    nj.neuralgrok(optax.sgd(1.0), amp.apply, phi, c=0.0)
  tx = nj.neuralgrok(optax.sgd(1.0), amp.apply, phi, meta_every=1)
  g = jax.grad(mse)(params, *train)
  with pytest.raises(ValueError, match="outer_loss"):
    tx.update(g, tx.init(params), params)
  with pytest.raises(ValueError, match="train_loss"):
    tx.update(g, tx.init(params), params, outer_loss=lambda p: 0.0)
  with pytest.raises(ValueError, match="one NeuralGrokState"):
    nj.amplifier_params(optax.adam(1.0).init(params))


def readme_snippet() -> str:
  import pathlib
  text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
  m = re.search(r"<!-- neuralgrok-snippet -->\s*```python\n(.*?)```", text,
                re.S)
  assert m, "README.md lost its neuralgrok snippet"
  return m.group(1)


def test_readme_snippet_trains_a_users_own_model():
  ns = {}
  exec(compile(readme_snippet(), "README.md", "exec"), ns)  # noqa: S102
  loss, train, held_out = ns["loss"], ns["train"], ns["held_out"]
  amp, phi = ns["amp"], ns["phi"]
  assert float(loss(ns["params"], *train)) < 0.05
  phi0 = amp.init(jax.random.key(1), jnp.zeros((1,)))
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(phi), jax.tree.leaves(phi0)))
  assert moved > 1e-4  # the meta steps trained the amplifier
