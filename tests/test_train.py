
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj
from ngrok_jax._src.training import seed_step
from ngrok_jax._src.training import train as train_lib

#: Steps per ``train_steps`` call of the tiny runs here: the evaluation
#: interval of test_cli's tiny runs, so that one, two and two grouped seeds
#: of NeuralGrok compile one program each for the whole suite (the
#: persistent compilation cache of conftest.py).
CHUNK = 10


@pytest.mark.parametrize("lookahead", ["sgd", "inner"])
def test_meta_gradient_nonzero_and_matches_finite_differences(lookahead,
                                                             tiny_config):
  """The trainer's transformation, from a trained state (Adam with history),
  takes the meta step that finite differences of the objective give."""
  # the trained state (shared program); lookahead built below
  cfg = tiny_config()
  tr = nj.Trainer(cfg)
  state, data = tr.init([0])
  state, _ = tr.train_steps(state, data, CHUNK)  # Adam state with history
  with jax.enable_x64(True):
    s = jax.tree.map(lambda x: x[0], state.seeds)
    s = jax.tree.map(lambda x: x.astype(jnp.float64)
                     if jnp.issubdtype(x.dtype, jnp.floating) else x, s)
    hp = dict(s.hparams, eps_root=jnp.float64(1e-12))  # Adam is differentiated
    tr_idx, out_idx = data.train[0], data.outer[0]
    x, y = data.inputs[tr_idx[:32]], data.labels[tr_idx[:32]]
    g = jax.jit(jax.grad(tr.loss_fn))(s.params, x, y)
    ox, oy = data.inputs[out_idx], data.labels[out_idx]
    adam = nj.coupled_adam(hp["lr"], hp["wd"], hp["b1"], hp["b2"], hp["eps"],
                           hp["eps_root"], cfg.warmup_steps, hp["clip"])
    la = "inner" if lookahead == "inner" else optax.sgd(hp["lookahead_lr"])
    phi = s.amp_params
    tx = nj.neuralgrok(adam, tr.amplifier.apply, phi, meta_every=1,
                       c=hp["c"], lookahead=la, placement="before",
                       meta_optimizer=optax.sgd(1.0))
    st = tx.init(s.params)._replace(inner_state=s.opt_state.inner_state)
    _, st2 = jax.jit(lambda st: tx.update(
        g, st, s.params, outer_loss=lambda p: tr.loss_fn(p, ox, oy)))(st)
    mg = jax.tree.map(lambda a, b: a - b, phi, nj.amplifier_params(st2))

    @jax.jit
    def f(ph):  # the objective, written from the parts
      ga = nj.amplify(g, lambda v: tr.amplifier.apply(ph, v), hp["c"])
      if lookahead == "inner":
        upd, _ = adam.update(ga, s.opt_state.inner_state, s.params)
      else:
        upd = jax.tree.map(lambda u: -hp["lookahead_lr"] * u, ga)
      return tr.loss_fn(optax.apply_updates(s.params, upd), ox, oy)

    norm = np.sqrt(sum(float(jnp.sum(l ** 2)) for l in jax.tree.leaves(mg)))
    assert norm > 0
    rng = np.random.default_rng(0)
    for _ in range(3):
      v = jax.tree.map(lambda l: jnp.asarray(rng.normal(size=l.shape)), phi)
      h = 1e-6
      fp = f(jax.tree.map(lambda a, b: a + h * b, phi, v))
      fm = f(jax.tree.map(lambda a, b: a - h * b, phi, v))
      fd = (fp - fm) / (2 * h)
      an = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(mg),
                                              jax.tree.leaves(v)))
      np.testing.assert_allclose(float(an), float(fd), rtol=1e-4,
                                 atol=1e-9)


@pytest.mark.parametrize("placement,meta_steps", [
    ("after", [2, 5]),    # reference: after 1-indexed steps T, 2T
    ("before", [0, 3]),   # before 0-indexed steps 0, T
])
def test_meta_step_changes_amplifier_every_T_steps_only(placement, meta_steps,
                                                        tiny_config):
  tr = nj.Trainer(tiny_config(meta_every=3, meta_placement=placement))
  state, data = tr.init([0])
  phis = [jax.tree.map(np.asarray, state.seeds.amp_params)]
  outer = []
  for _ in range(6):
    state, out = tr.train_steps(state, data, 1)
    outer.append(float(out["outer_loss"][0, 0]))
    phis.append(jax.tree.map(np.asarray, state.seeds.amp_params))
  for step in range(6):
    changed = any(not np.array_equal(a, b) for a, b in
                  zip(jax.tree.leaves(phis[step]),
                      jax.tree.leaves(phis[step + 1])))
    assert changed == (step in meta_steps), step
    assert np.isfinite(outer[step]) == (step in meta_steps), step


@pytest.mark.parametrize("method", ["neuralgrok", "grokfast-ma"])
def test_vmapped_seeds_equal_separate_runs(method, tiny_config):
  cfg = tiny_config(method=method, window=3)
  tr = nj.Trainer(cfg)
  seeds = [3, 7]
  state, data = tr.init(seeds)
  state, out = tr.train_steps(state, data, CHUNK)
  ev = tr.evaluate(state, data)
  for i, sd in enumerate(seeds):
    st1, d1 = tr.init([sd])
    st1, out1 = tr.train_steps(st1, d1, CHUNK)
    ev1 = tr.evaluate(st1, d1)
    np.testing.assert_allclose(out["loss"][:, i], out1["loss"][:, 0],
                               rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(ev["test/loss"][i], ev1["test/loss"][0],
                               rtol=2e-5)
    # Parameters agree to float noise, except the attention key bias: its
    # gradient is mathematically zero (softmax is shift invariant), so its
    # update is normalised rounding noise, which vmap's different reduction
    # order changes.  The model's outputs do not depend on it.
    flat = jax.tree_util.tree_leaves_with_path((state.seeds.params,
                                                state.seeds.amp_params))
    flat1 = jax.tree.leaves((st1.seeds.params, st1.seeds.amp_params))
    for (path, a), b in zip(flat, flat1):
      if "qkv" in jax.tree_util.keystr(path) and "bias" in jax.tree_util.keystr(path):
        continue
      np.testing.assert_allclose(a[i], b[0], rtol=1e-4, atol=1e-5)


def test_no_recompilation_for_new_state_or_hyperparameters(tiny_config):
  # fresh jit objects: their cache sizes count this test's programs only
  # (another test may have run this config with another number of seeds)
  train_lib.programs.cache_clear()
  tr = nj.Trainer(tiny_config())
  state, data = tr.init([0, 1], hparams={"lr": [1e-3, 2e-3]})
  state, _ = tr.train_steps(state, data, CHUNK)
  progs = train_lib.programs(tr.config)
  steps, evaluate = progs.train_steps, progs.evaluate
  n = steps._cache_size()
  state, _ = tr.train_steps(state, data, CHUNK)
  state2, data2 = tr.init([5, 6], hparams={"lr": [3e-3, 1e-2], "c": 2.0,
                                           "meta_lr": 1e-3})
  state2, _ = tr.train_steps(state2, data2, CHUNK)
  # an equal config in a new Trainer shares the compiled programs
  tr2 = nj.Trainer(tiny_config())
  assert train_lib.programs(tr2.config) is progs
  state2, _ = tr2.train_steps(state2, data2, CHUNK)
  tr.evaluate(state2, data2)
  m = evaluate._cache_size()
  tr2.evaluate(state2, data2)
  assert steps._cache_size() == n == 1
  assert evaluate._cache_size() == m == 1


def test_the_training_step_is_the_one_clock_of_the_meta_steps(tiny_config):
  """The step decides the meta steps and is the optimizer state's count:
  after an update skipped for a non-finite gradient (finite loss: the seed
  goes on) the count is still the step (before: one behind, so the
  transformation's own clock would take its meta steps one update later
  than the trainer), and a state whose count is not the step (started
  mid-run) takes the step's meta step and takes up its count."""
  tr = nj.Trainer(tiny_config(meta_every=2))  # "after": meta at 1, 3, 5, ...
  state, data = tr.init([0])
  s = jax.tree.map(lambda x: x[0], state.seeds)
  ox, oy = data.inputs[data.outer[0]], data.labels[data.outer[0]]
  step = jax.jit(tr.batch_step)
  amp = lambda st: jax.tree.leaves(st.amp_params)
  # step 0: two equal rows with opposite huge weights (their losses cancel
  # exactly) through shrunk activations (the layer norms' backward passes
  # amplify): a finite loss, a non-finite gradient
  x, y, w = tr.batch_of(s.key, data.train[0], 0, data)
  x, y = x.at[1].set(x[0]), y.at[1].set(y[0])
  w = jnp.zeros_like(w).at[0].set(1e36).at[1].set(-1e36)
  small = lambda path, l: l * 1e-4 if any(
      n in jax.tree_util.keystr(path) for n in ("emb", "proj", "out")) else l
  s = s._replace(params=jax.tree_util.tree_map_with_path(small, s.params))
  s1, out = step(s, x, y, w, ox, oy, 0)
  assert np.isfinite(float(out["loss"])) and int(s1.diverged_at) == -1
  jax.tree.map(np.testing.assert_array_equal, s1.params, s.params)  # skipped
  assert int(s1.opt_state.count) == 1
  # step 1: a meta step, decided by the step and by the count alike
  x, y, w = tr.batch_of(s1.key, data.train[0], 1, data)
  s2, out = step(s1, x, y, w, ox, oy, 1)
  assert np.isfinite(float(out["outer_loss"]))
  assert any(not np.array_equal(a, b) for a, b in zip(amp(s1), amp(s2)))
  assert int(s2.opt_state.count) == 2
  assert bool(nj.is_meta_step(int(s2.opt_state.count), 2)) == bool(
      nj.is_meta_step(2, 2))
  # a fresh state (count 0) at step 3: the step's meta step, count 4
  s0 = tr.seed_state(s2.params, key=s2.key)
  s4, out = step(s0, x, y, w, ox, oy, 3)
  assert np.isfinite(float(out["outer_loss"])) and int(
      s4.opt_state.count) == 4
  assert any(not np.array_equal(a, b) for a, b in zip(amp(s0), amp(s4)))


def test_hyperparameter_sweep_changes_results_per_seed(tiny_config):
  tr = nj.Trainer(tiny_config(method="rescale", split_seed=0))
  state, data = tr.init([0, 1], hparams={"lr": [1e-3, 1e-3]})
  s2, d2 = tr.init([0, 1], hparams={"lr": [1e-3, 1e-2]})
  state, o1 = tr.train_steps(state, data, 15)
  s2, o2 = tr.train_steps(s2, d2, 15)
  np.testing.assert_allclose(o1["loss"][:, 0], o2["loss"][:, 0], rtol=1e-6)
  assert not np.allclose(o1["loss"][:, 1], o2["loss"][:, 1])


def test_divergent_seed_is_frozen_and_others_continue(tiny_config):
  tr = nj.Trainer(tiny_config(method="adam", clip=float("inf")))
  state, data = tr.init([0, 1], hparams={"lr": [1e-3, 1e30]})
  state, out = tr.train_steps(state, data, 30)
  ev = tr.evaluate(state, data)
  div = np.asarray(ev["diverged_at"])
  assert div[0] == -1 and div[1] >= 0
  assert all(np.all(np.isfinite(l[0])) for l in
             jax.tree.leaves(state.seeds.params))
  ref, rdata = tr.init([0], hparams={"lr": [1e-3]})
  ref, rout = tr.train_steps(ref, rdata, 30)
  np.testing.assert_allclose(out["loss"][:, 0], rout["loss"][:, 0], rtol=1e-5)


def test_evaluate_reports_metrics_for_all_seeds(tiny_config):
  tr = nj.Trainer(tiny_config())
  state, data = tr.init([0, 1])
  ev = tr.evaluate(state, data)
  for k in ("train/acc", "test/acc", "outer/loss", "grad/age",
            "grad/age_transformed", "weights/norm", "weights/entropy",
            "grad/norm", "grad_norm/block_0"):
    assert ev[k].shape == (2,), k
    assert np.all(np.isfinite(ev[k])), k
  # the amplifier's output has norm c per tensor, unlike the raw gradient
  assert not np.allclose(ev["grad/age"], ev["grad/age_transformed"])


def test_frozen_amplifier_method_uses_given_params(tiny_config):
  tr = nj.Trainer(tiny_config())
  phi = tr.init_amplifier(3)
  fz = nj.Trainer(tiny_config(method="neuralgrok-frozen"))
  state, data = fz.init([0], amp_params=phi)
  state, _ = fz.train_steps(state, data, 4)
  for a, b in zip(jax.tree.leaves(phi), jax.tree.leaves(state.seeds.amp_params)):
    np.testing.assert_array_equal(a, b[0])
  with pytest.raises(ValueError, match="needs amp_params"):
    fz.init([0])
  with pytest.raises(ValueError, match="do not match"):
    fz.init([0], amp_params=nj.Trainer(
        tiny_config(amp_hidden=(4,))).init_amplifier())


def test_a_few_hundred_steps_four_seeds_learns():
  cfg = nj.TrainConfig(task="a+b", p=11, dim=32, heads=2, depth=1,
                       amp_hidden=(16,), batch_size=64, meta_every=3,
                       lr=3e-3, wd=1e-3)
  tr = nj.Trainer(cfg)
  state, data = tr.init([0, 1, 2, 3])
  ev0 = tr.evaluate(state, data)
  state, out = tr.train_steps(state, data, 200)
  ev = tr.evaluate(state, data)
  assert np.all(ev["train/loss"] < ev0["train/loss"] * 0.5)
  assert np.all(ev["train/acc"] > 0.9)


@pytest.mark.parametrize("kw,match", [
    (dict(method="sgd"), "unknown method .*valid: adam"),
    (dict(task="a^b"), "unknown task .*valid:"),
    (dict(lookahead="adam"), "valid: sgd, inner"),
    (dict(lookahead="inner"), "eps_root"),
    (dict(lr=-1.0), "lr must be > 0"),
    (dict(b2=1.0), "b2 must be in"),
    (dict(dim=30, heads=4), "must divide"),
    (dict(batch_size=0), "batch_size"),
    (dict(meta_every=0), "meta_every"),
    (dict(amp_hidden=()), "amp_hidden"),
    (dict(fractions=(0.9, 0.2, 0.1)), "sum"),
    (dict(task="a/b", p=10), "prime"),
])
def test_bad_config_raises(kw, match, tiny_config):
  with pytest.raises(ValueError, match=match):
    nj.Trainer(tiny_config(**kw))


def test_bad_init_arguments(tiny_config):
  tr = nj.Trainer(tiny_config())
  with pytest.raises(ValueError, match="non-empty"):
    tr.init([])
  with pytest.raises(ValueError, match="distinct"):
    tr.init([1, 1])
  with pytest.raises(ValueError, match="one per seed"):
    tr.init([0, 1], hparams={"lr": [1e-3, 1e-3, 1e-3]})
  with pytest.raises(ValueError, match="unknown hyperparameter"):
    tr.init([0], hparams={"learning_rate": 1e-3})


def test_mismatched_state_and_data_are_rejected(tiny_config):
  tr = nj.Trainer(tiny_config(method="adam"))
  state, _ = tr.init([0, 1])
  _, data3 = tr.init([0, 1, 2])
  with pytest.raises(AssertionError):
    tr.train_steps(state, data3, 1)
  with pytest.raises(ValueError, match="num_steps"):
    tr.train_steps(state, data3, 0)


def test_epoch_batches_cover_the_training_split_once_per_epoch(tiny_config):
  # 59 examples: 16*3 + 11
  tr = nj.Trainer(tiny_config(method="adam", batch_size=16))
  _, data = tr.init([0])
  train = np.asarray(data.train[0])
  key = jax.random.PRNGKey(3)
  batch = jax.jit(lambda step: seed_step.batch_of(
      tr.config, key, data.train[0], step, data))
  per_epoch = -(-train.size // 16)
  epochs = []
  for e in range(2):
    seen = []
    for k in range(per_epoch):
      x, y, w = (np.asarray(a) for a in batch(e * per_epoch + k))
      n = int(w.sum())
      assert n == (16 if k < per_epoch - 1 else train.size - 16 * k)
      assert (w[:n] == 1).all() and (w[n:] == 0).all()
      rows = {tuple(r) for r in np.asarray(data.inputs)[train]}
      assert all(tuple(r) in rows for r in x[:n])
      seen += [tuple(r) for r in x[:n]]
    assert len(seen) == train.size and len(set(seen)) == train.size
    epochs.append(seen)
  assert epochs[0] != epochs[1]  # reshuffled every epoch


def test_masked_batch_loss_equals_the_short_batch_loss(tiny_config):
  tr = nj.Trainer(tiny_config(method="adam"))
  state, data = tr.init([0])
  params = jax.tree.map(lambda x: x[0], state.seeds.params)
  x, y = data.inputs[:10], data.labels[:10]
  pad_x = jnp.concatenate([x, jnp.zeros_like(x[:6])])
  pad_y = jnp.concatenate([y, jnp.zeros_like(y[:6])])
  w = (jnp.arange(16) < 10).astype(jnp.float32)
  np.testing.assert_allclose(tr.loss_fn(params, pad_x, pad_y, w),
                             tr.loss_fn(params, x, y), rtol=1e-6)


def test_method_defaults_follow_the_reference(tiny_config):
  hp = {m: tiny_config(method=m).hparams() for m in nj.METHODS}
  for m in ("neuralgrok", "neuralgrok-frozen", "rescale"):
    assert hp[m]["clip"] == 1.0
  for m in ("adam", "adamw", "grokfast-ema", "grokfast-ma"):
    assert hp[m]["clip"] == float("inf")
  assert hp["neuralgrok"]["c"] == 0.2
  assert hp["neuralgrok"]["lookahead_lr"] == hp["neuralgrok"]["lr"]
  assert tiny_config(method="neuralgrok",
                     lr=3e-3).hparams()["lookahead_lr"] == 3e-3
  cfg = tiny_config()
  assert (cfg.init, cfg.batching, cfg.meta_placement) == (
      "torch", "epoch", "after")
  # only NeuralGrok keeps the outer split out of its training data
  sizes = {m: nj.Trainer(tiny_config(method=m)).init([0])[1].train.shape[1]
           for m in ("neuralgrok", "adam", "rescale")}
  n = 11 * 10
  assert sizes == {"neuralgrok": int(0.49 * n), "adam": n // 2,
                   "rescale": n // 2}
  with pytest.raises(ValueError, match="outer"):
    tiny_config(method="neuralgrok", train_on_outer=True).validate()
  with pytest.raises(ValueError, match="meta_placement"):
    tiny_config(meta_placement="middle").validate()
  with pytest.raises(ValueError, match="batching"):
    tiny_config(batching="random").validate()
  with pytest.raises(ValueError, match="init"):
    tiny_config(init="jax").validate()


def test_seed_groups_give_the_same_results_as_one_vmap(tiny_config):
  cfg = tiny_config(meta_every=2)
  runs = {}
  for group in (None, 1):
    state, data = train_lib.init(cfg, [0, 1])
    state, out = train_lib.train_steps(cfg, state, data, num_steps=CHUNK,
                                      seed_group=group)
    runs[group] = (state, out, train_lib.evaluate(cfg, state, data))
  assert train_lib.group_size(4, 3) == 2 and train_lib.group_size(4, 1) == 1
  ref_state, ref_out, ref_ev = runs[None]
  for group in (1,):
    state, out, ev = runs[group]
    assert int(state.step) == CHUNK
    np.testing.assert_allclose(out["loss"], ref_out["loss"], rtol=1e-5)
    np.testing.assert_allclose(out["outer_loss"], ref_out["outer_loss"],
                               rtol=1e-5)
    np.testing.assert_allclose(ev["test/loss"], ref_ev["test/loss"],
                               rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.seeds.amp_params),
                    jax.tree.leaves(ref_state.seeds.amp_params)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="seed_group"):
    nj.Trainer(cfg, seed_group=0)
  assert nj.Trainer(cfg, seed_group="auto").seed_group == (
      train_lib.CPU_SEED_GROUP if jax.default_backend() == "cpu" else None)


def test_compiled_programs_of_old_configs_are_freed(tiny_config):
  """Module-level programs must not keep every config's executables alive:
  each holds thousands of memory mappings (a long sweep or test session
  would hit the kernel's map limit and crash in the compiler)."""
  import gc
  import weakref
  first = train_lib.programs(tiny_config(meta_every=7))
  ref = weakref.ref(first.train_steps)
  del first
  for t in range(8, 8 + train_lib.programs.cache_info().maxsize):
    train_lib.programs(tiny_config(meta_every=t))
  gc.collect()
  assert ref() is None
