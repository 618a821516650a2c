"""Issue 13: measuring the amplifier's learning, and the options that let it
learn (rich inputs, K-step look-ahead, meta learning-rate schedule)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj
from ngrok_jax._src.cli import cli
from ngrok_jax._src.analysis import plots
from ngrok_jax._src.training.methods import meta_lr_schedule, meta_optimizer
from ngrok_jax._src.analysis.results import read_metrics

def tree_norm(t):
  return np.sqrt(sum(float(jnp.sum(l ** 2)) for l in jax.tree.leaves(t)))


def check_directional_derivatives(f, phi, mg, seed=1):
  """``mg`` (a gradient of ``f`` at ``phi``) against central differences
  along 3 random directions."""
  rng = np.random.default_rng(seed)
  for _ in range(3):
    v = jax.tree.map(lambda l: jnp.asarray(rng.normal(size=l.shape)), phi)
    h = 1e-6
    fd = (f(jax.tree.map(lambda a, b: a + h * b, phi, v)) -
          f(jax.tree.map(lambda a, b: a - h * b, phi, v))) / (2 * h)
    an = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(mg),
                                            jax.tree.leaves(v)))
    np.testing.assert_allclose(float(an), float(fd), rtol=1e-5, atol=1e-10)


# ------------------------------------------------------------ rich inputs
def test_rich_features_shapes_and_normalisation():
  r = np.random.default_rng(0)
  g = {"a": jnp.asarray(r.normal(size=(2, 3))),
       "b": jnp.asarray(r.normal(size=(4,)))}
  mu = {"a": jnp.asarray(r.normal(size=(2, 3))), "b": jnp.zeros((4,))}
  nu = jax.tree.map(lambda m: m ** 2 * 3.0, mu)
  params = {"a": jnp.asarray(r.normal(size=(2, 3)) * 50),
            "b": jnp.asarray(r.normal(size=(4,)))}
  x, ids = nj.rich_features(g, mu, nu, params)
  assert x.shape == (10, 4) and x.dtype == jnp.float32
  np.testing.assert_array_equal(ids, [0] * 6 + [1] * 4)  # leaves: a, b
  rms = lambda a: np.sqrt(np.mean(np.square(a)))
  for t, (lo, hi) in enumerate(((0, 6), (6, 10))):
    leaf = "ab"[t]
    want = [np.ravel(g[leaf]), np.ravel(mu[leaf]),
            np.sqrt(np.ravel(nu[leaf]) + 1e-30) - 1e-15, np.ravel(params[leaf])]
    for j, w in enumerate(want):
      col = np.asarray(x[lo:hi, j])
      if leaf == "b" and j in (1, 2):  # all-zero moments stay zero
        np.testing.assert_array_equal(col, 0)
        continue
      np.testing.assert_allclose(rms(col), 1.0, rtol=1e-5)
      np.testing.assert_allclose(col, w / rms(w), rtol=1e-5, atol=1e-7)
  # per-tensor scale free: a tensor 1e6 times larger gives the same inputs
  g2 = dict(g, a=g["a"] * 1e6)
  np.testing.assert_allclose(nj.rich_features(g2, mu, nu, params)[0], x,
                             rtol=1e-5)
  # the moments are found inside a chain's state; an optimizer without
  # Adam is refused
  inner = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  m, v = nj.adam_moments(inner.init(params))
  assert jax.tree.structure(m) == jax.tree.structure(params)
  with pytest.raises(ValueError, match="one Adam state"):
    nj.adam_moments(optax.sgd(0.1).init(params))


def test_rich_amplifier_embedding_and_chunks():
  amp = nj.RichAmplifier((8, 4), num_tensors=3)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(50, 4)), jnp.float32)
  ids = jnp.asarray(np.repeat([0, 1, 2], [20, 20, 10]), jnp.int32)
  phi = amp.init(jax.random.PRNGKey(0), x, ids)
  emb = phi["params"]["tensor_embedding"]
  assert emb.shape == (3, 8) and not np.any(emb)  # zero at initialisation
  y = amp.apply(phi, x, ids)
  assert y.shape == (50,)
  np.testing.assert_allclose(amp.apply(phi, x, jnp.zeros_like(ids)), y)
  phi2 = jax.tree.map(lambda a: a, phi)
  phi2["params"]["tensor_embedding"] = emb.at[1].set(1.0)
  y2 = amp.apply(phi2, x, ids)
  changed = np.abs(np.asarray(y2 - y)) > 1e-7
  assert changed[20:40].any() and not changed[:20].any() and (
      not changed[40:].any())  # only tensor 1's components move
  chunked = nj.RichAmplifier((8, 4), num_tensors=3, chunk=16)
  np.testing.assert_allclose(chunked.apply(phi2, x, ids), y2, rtol=1e-6)
  with pytest.raises(ValueError, match=r"\(n, 4\)"):
    amp.apply(phi, x[:, :3], ids)


def test_rich_meta_gradient_is_nonzero_and_matches_finite_differences(
    toy_problem):
  """One meta step of neuralgrok with the rich amplifier (SGD(1) as meta
  optimizer, so the step is the meta-gradient), after two inner Adam steps
  (non-zero moments): finite, non-zero in every part (the per-tensor
  embedding included), and equal to finite differences of the objective
  written out with the features."""
  c, lr = 0.3, 0.05
  with jax.enable_x64(True):
    pb = toy_problem(jnp.float64)
    params, train, outer = pb.params, pb.train, pb.outer
    mse = pb.loss
    amp = nj.RichAmplifier((6, 5), num_tensors=3, dtype=jnp.float64)
    phi = jax.tree.map(lambda a: a.astype(jnp.float64), amp.init(
        jax.random.PRNGKey(3), jnp.zeros((1, 4)), jnp.zeros((1,), jnp.int32)))
    inner = optax.adam(1e-2)
    feats = lambda g, st, p: nj.rich_features(g, *nj.adam_moments(st), p)
    tx = nj.neuralgrok(inner, lambda ph, f: amp.apply(ph, *f), phi,
                       meta_every=3, c=c, lookahead=optax.sgd(lr),
                       meta_optimizer=optax.sgd(1.0), placement="after",
                       features=feats)
    kw = dict(train_loss=lambda q: mse(q, *train),
              outer_loss=lambda q: mse(q, *outer))
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, **kw))
    state, p = tx.init(params), params
    for _ in range(3):  # the third update has the meta step
      before = state
      u, state = update(jax.grad(mse)(p, *train), state, p)
      p = optax.apply_updates(p, u)
    mg = jax.tree.map(lambda a, b: a - b, phi, nj.amplifier_params(state))
    assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(mg))
    assert tree_norm(mg) > 1e-8
    assert np.all(np.abs(np.asarray(
        mg["params"]["tensor_embedding"])).sum(1) > 0)  # every tensor's row
    np.testing.assert_allclose(float(state.meta_grad_norm), tree_norm(mg),
                               rtol=1e-10)
    del before
    # the objective at the updated parameters p, with the post-step state
    g_at = jax.grad(mse)(p, *train)
    x, ids = feats(g_at, state.inner_state, p)

    def f(ph):
      a = nj.amplify(g_at, lambda _: amp.apply(ph, x, ids), c)
      return mse(jax.tree.map(lambda w, d: w - lr * d, p, a), *outer)
    f = jax.jit(f)
    np.testing.assert_allclose(float(state.outer_loss), float(f(phi)),
                               rtol=1e-12)
    np.testing.assert_allclose(float(state.outer_loss_after),
                               float(f(nj.amplifier_params(state))),
                               rtol=1e-12)
    check_directional_derivatives(f, phi, mg)


# ---------------------------------------------------- K-step look-ahead
def reference_k_step(pb, phi, params, g, train, outer, c, k_steps, lr,
                     adam=None):
  """K look-ahead steps written out (``pb``: the :class:`ToyProblem`, its
  amplifier and loss): softmax-weighted, per-tensor
  normalised gradient; SGD(lr), or Adam(lr) from zero moments when
  ``adam=(b1, b2, eps, eps_root)``; the gradient recomputed on the train
  batch after every step; the outer loss at the end."""
  p = params
  m = jax.tree.map(jnp.zeros_like, params)
  v = jax.tree.map(jnp.zeros_like, params)
  for k in range(k_steps):
    a = {}
    for name in p:
      gk = g[name].ravel()
      sg = jax.nn.softmax(pb.amp.apply(phi, gk)) * gk
      a[name] = (c * sg / jnp.linalg.norm(sg)).reshape(g[name].shape)
    if adam is None:
      p = {n: p[n] - lr * a[n] for n in p}
    else:
      b1, b2, eps, eps_root = adam
      t = k + 1
      m = {n: b1 * m[n] + (1 - b1) * a[n] for n in p}
      v = {n: b2 * v[n] + (1 - b2) * a[n] ** 2 for n in p}
      p = {n: p[n] - lr * (m[n] / (1 - b1 ** t)) / (
          jnp.sqrt(v[n] / (1 - b2 ** t) + eps_root) + eps) for n in p}
    if k < k_steps - 1:
      g = jax.grad(pb.loss)(p, *train)
  return pb.loss(p, *outer)


@pytest.mark.parametrize("k_steps,lookahead", [(3, "sgd"), (2, "inner")])
def test_k_step_meta_gradient_matches_finite_differences(k_steps, lookahead,
                                                        toy_problem):
  """The K-step unrolled meta-gradient (float64), read off one meta step
  with SGD(1) as the meta optimizer, equals central differences of the
  objective written out independently; the state's objective before and
  after the step and the meta-gradient norm are that objective's."""
  c, lr, er = 0.3, 0.05, 1e-16
  with jax.enable_x64(True):
    pb = toy_problem(jnp.float64)
    params, train, outer = pb.params, pb.train, pb.outer
    mse = pb.loss
    phi = jax.tree.map(lambda a: a.astype(jnp.float64), pb.amp.init(
        jax.random.PRNGKey(3), jnp.zeros((1,))))
    if lookahead == "sgd":
      inner, la, adam = optax.sgd(0.1), optax.sgd(lr), None
    else:
      inner, la, adam = optax.adam(lr, eps_root=er), "inner", (
          0.9, 0.999, 1e-8, er)
    tx = nj.neuralgrok(inner, pb.amp.apply, phi, meta_every=1, c=c,
                       lookahead=la, meta_optimizer=optax.sgd(1.0),
                       placement="before", lookahead_steps=k_steps)
    g = jax.grad(mse)(params, *train)
    _, state = jax.jit(lambda g, s, p: tx.update(
        g, s, p, train_loss=lambda q: mse(q, *train),
        outer_loss=lambda q: mse(q, *outer)))(g, tx.init(params), params)
    new_phi = nj.amplifier_params(state)
    mg = jax.tree.map(lambda a, b: a - b, phi, new_phi)
    f = jax.jit(lambda ph: reference_k_step(pb, ph, params, g, train, outer, c,
                                            k_steps, lr, adam))
    np.testing.assert_allclose(float(state.outer_loss), float(f(phi)),
                               rtol=1e-10)
    np.testing.assert_allclose(float(state.outer_loss_after),
                               float(f(new_phi)), rtol=1e-10)
    assert tree_norm(mg) > 1e-8
    np.testing.assert_allclose(float(state.meta_grad_norm), tree_norm(mg),
                               rtol=1e-10)
    check_directional_derivatives(f, phi, mg)
    # K steps differ from one step (the unroll is not a no-op)
    one = reference_k_step(pb, phi, params, g, train, outer, c, 1, lr, adam)
    assert abs(float(one) - float(f(phi))) > 1e-6


def test_k_steps_need_train_loss_and_a_positive_count(toy_problem):
  pb = toy_problem(jnp.float32)
  params, train, outer = pb.params, pb.train, pb.outer
  mse = pb.loss
  phi = pb.amp.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  with pytest.raises(ValueError, match="lookahead_steps"):
    nj.neuralgrok(optax.sgd(0.1), pb.amp.apply, phi, lookahead_steps=0)
  tx = nj.neuralgrok(optax.sgd(0.1), pb.amp.apply, phi, meta_every=1,
                     placement="before", lookahead_steps=2)
  with pytest.raises(ValueError, match="train_loss"):
    tx.update(jax.grad(mse)(params, *train), tx.init(params), params,
              outer_loss=lambda q: mse(q, *outer))


# ------------------------------------------------------ meta schedule
def test_meta_schedule_scales_per_seed_meta_lr():
  cfg = nj.TrainConfig(meta_every=2, meta_schedule="cosine",
                       meta_schedule_steps=20)  # H = 10 meta steps
  sched = meta_lr_schedule(cfg)
  np.testing.assert_allclose([float(sched(n)) for n in (0, 5, 10, 15)],
                             [1.0, 0.5, 0.0, 0.0], atol=1e-6)
  warm = meta_lr_schedule(cfg.__class__(
      meta_every=1, meta_schedule="warmup-cosine", meta_schedule_steps=100))
  assert float(warm(0)) == 0.0 and float(warm(5)) == pytest.approx(1.0)
  assert float(warm(100)) == pytest.approx(0.0, abs=1e-7)
  assert meta_lr_schedule(nj.TrainConfig()) is None
  # per-seed meta_lr in one vmapped program: the update is meta_lr times
  # the schedule times Adam's direction
  phi = {"w": jnp.asarray([0.5, -1.0, 2.0])}
  grads = {"w": jnp.asarray([0.1, -0.2, 0.3])}

  def steps(meta_lr):
    hp = dict(meta_lr=meta_lr, meta_wd=jnp.float32(0), b1=jnp.float32(0.9),
              b2=jnp.float32(0.98))
    tx = meta_optimizer(hp, cfg)
    st, out = tx.init(phi), []
    for _ in range(12):
      u, st = tx.update(grads, st, phi)
      out.append(u["w"])
    return jnp.stack(out)

  u = jax.vmap(steps)(jnp.asarray([1e-3, 1e-2], jnp.float32))
  np.testing.assert_allclose(u[1], 10 * u[0], rtol=1e-5)
  # constant gradient: Adam's direction is -sign(g); scaled by the schedule
  for n in (0, 5, 10, 11):
    np.testing.assert_allclose(u[0, n], -1e-3 * float(sched(n)) * np.sign(
        grads["w"]), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("kw,match", [
    (dict(amp_inputs="rich"), "amp_method='dense'"),
    (dict(meta_schedule="cosine"), "meta_schedule_steps"),
    (dict(meta_schedule_steps=100), "meta_schedule_steps"),
    (dict(lookahead_steps=0), "lookahead_steps"),
])
def test_bad_options_raise(kw, match):
  with pytest.raises(ValueError, match=match):
    nj.TrainConfig(**kw).validate()


# --------------------------------------------------- metrics, trainer, CLI
def test_trainer_reports_the_amplifier_learning_metrics(tiny_config):
  """Default recipe, tiny size: at initialisation the amplifier is at its
  start (distance 0, no meta step yet: NaN), not plain rescaling; after
  meta steps it has moved, and the stored meta-step values are
  consistent."""
  tr = nj.Trainer(tiny_config())
  state, data = tr.init([0, 1], hparams={"meta_lr": [1e-3, 1e-2]})
  ev = tr.evaluate(state, data)
  np.testing.assert_array_equal(ev["amp/dist_init"], 0)
  np.testing.assert_array_equal(ev["amp/param_change"], 0)
  assert np.all(np.isnan(ev["meta/grad_norm"]))
  assert np.all((ev["amp/dist_const"] > 0) & (ev["amp/dist_const"] <= 2))
  state, out = tr.train_steps(state, data, 4)  # meta steps after 2 and 4
  ev = tr.evaluate(state, data)
  for k in ("amp/dist_init", "amp/param_change", "meta/grad_norm"):
    assert np.all(np.isfinite(ev[k]) & (ev[k] > 0)), k
  np.testing.assert_allclose(ev["meta/outer_before"], out["outer_loss"][-1])
  np.testing.assert_allclose(ev["meta/improvement"],
                             ev["meta/outer_before"] - ev["meta/outer_after"])
  # a 10x meta learning rate moves the amplifier further
  assert ev["amp/param_change"][1] > 3 * ev["amp/param_change"][0]


def test_options_run_from_the_command_line(capsys, tmp_path):
  """Rich inputs, a 2-step look-ahead and a warm-up cosine meta schedule
  from the command line, to a run folder with the new metrics and the
  amplifier-learning plot."""
  out = str(tmp_path / "rich")
  argv = ["train", "--task", "a+b", "--p", "11", "--dim", "16", "--heads",
          "2", "--depth", "1", "--amp-hidden", "8,8", "--batch-size", "32",
          "--meta-every", "2", "--methods", "neuralgrok", "--seeds", "1",
          "--steps", "4", "--eval-every", "2", "--amp-inputs", "rich",
          "--amp-method", "dense", "--lookahead-steps", "2",
          "--meta-schedule", "warmup-cosine", "--meta-schedule-steps", "40",
          "--no-progress", "--no-plots", "--out", out]
  try:
    rc = cli.main(argv)
  except SystemExit as e:
    rc = e.code
  err = capsys.readouterr().err
  assert rc == 0, err
  ng = json.load(open(os.path.join(out, "config.json")))["configs"][
      "neuralgrok"]
  assert (ng["amp_inputs"], ng["lookahead_steps"], ng["meta_schedule"],
          ng["meta_schedule_steps"]) == ("rich", 2, "warmup-cosine", 40)
  rows = read_metrics(out)
  assert [r["step"] for r in rows] == [2, 4]
  for r in rows:
    for k in ("amp/dist_init", "amp/dist_const", "meta/improvement",
              "meta/grad_norm"):
      assert r[k] is not None and np.isfinite(r[k]), (k, r)
  # warm-up: the first meta step has meta learning rate 0, the second not
  assert rows[0]["amp/param_change"] == 0 < rows[1]["amp/param_change"]
  written = [os.path.basename(p) for p in plots.plot_run(out)]
  assert "amplifier_learning.png" in written
  assert "amplifier.png" not in written  # no 1-D score function to draw
  assert cli.main(["amplifier", out]) == 0
  assert "4-8-8-1 with a per-tensor embedding" in capsys.readouterr().out


def test_checkpoints_from_before_the_new_state_fields_restore(tmp_path,
                                                             toy_problem):
  """A NeuralGrok state saved in its first form (five fields) restores into
  today's template: the same values, the new fields NaN."""
  from ngrok_jax._src.storage.checkpoint import (Checkpointer,
                                                 _NeuralGrokStateV1)
  pb = toy_problem(jnp.float32)
  params = pb.params
  phi = pb.amp.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  tx = nj.neuralgrok(optax.adam(1e-2), pb.amp.apply, phi, meta_every=2)
  new = tx.init(params)
  old = _NeuralGrokStateV1(*new[:5])._replace(outer_loss=jnp.float32(1.5))
  with Checkpointer(str(tmp_path / "ck")) as ck:
    ck.save(7, {"params": params, "opt": old}, {"step": 7})
    ck.wait()
    state, meta = ck.restore(7, {"params": params, "opt": new})
  assert isinstance(state["opt"], nj.NeuralGrokState) and meta["step"] == 7
  assert float(state["opt"].outer_loss) == 1.5
  jax.tree.map(np.testing.assert_array_equal,
               state["opt"].amplifier_params, phi)
  assert all(np.all(np.isnan(l)) for l in jax.tree.leaves(
      (state["opt"].amplifier_init, state["opt"].meta_grad_norm,
       state["opt"].outer_loss_after)))
