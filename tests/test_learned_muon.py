"""The learned rule's orthogonalised harness (``placement="muon"``): at
initialisation it is Muon, it orthogonalises only the matrices Muon does,
its learned part acts, and its output stays bounded whatever the rule."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ngrok_jax import TrainConfig
from ngrok_jax._src.core.model import Transformer
from ngrok_jax._src.optim import learned_rule as lr_
from ngrok_jax._src.optim.registry import muon_dimension_numbers
from ngrok_jax._src.training import methods
from run_folders import users_mlp


def _transformer_problem():
  """The library's transformer on a toy batch of a+b mod 7."""
  model = Transformer(vocab_size=9, seq_len=4, dim=16, heads=2, depth=1)
  a, b = np.meshgrid(np.arange(7), np.arange(7))
  tokens = np.stack([a.ravel(), np.full(49, 7), b.ravel(), np.full(49, 8)], 1)
  labels = jnp.asarray((a.ravel() + b.ravel()) % 7)
  tokens = jnp.asarray(tokens)
  params = model.init(jax.random.PRNGKey(0), tokens[:1])

  def loss(p):
    logits = model.apply(p, tokens)
    return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           labels).mean()
  return params, loss


def _paired_updates(tx, ref, params, loss, steps):
  """``steps`` jitted steps along ``ref``'s trajectory: both transforms see
  the same gradients and parameters (each keeps its own state), so their
  updates differ only by their own arithmetic (a free trajectory would
  also amplify rounding through components whose gradient is pure noise,
  such as the attention keys' bias)."""
  @jax.jit
  def step(p, s, r):
    g = jax.grad(loss)(p)
    u, s = tx.update(g, s, p)
    v, r = ref.update(g, r, p)
    return optax.apply_updates(p, v), s, r, u, v
  s, r, ours, refs = tx.init(params), ref.init(params), [], []
  for _ in range(steps):
    params, s, r, u, v = step(params, s, r)
    ours.append(u)
    refs.append(v)
  return ours, refs


def _assert_close(us, vs, rtol=2e-5):
  for u, v in zip(us, vs):
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
      scale = float(jnp.max(jnp.abs(b))) + 1e-30
      assert float(jnp.max(jnp.abs(a - b))) <= rtol * scale, (a, b)


def test_the_initial_rule_is_optax_muon_on_a_users_model():
  """A user's model (every 2-D leaf orthogonalised, as optax's default):
  5 steps of the zero-initialised rule equal optax.contrib.muon's with the
  same lr, wd, b2 and consistent_rms, to float rounding."""
  params, loss = users_mlp()
  cfg = lr_.muon_config(lr=1e-2, wd=0.5)
  theta = lr_.init_rule(cfg, jax.random.PRNGKey(1))
  _assert_close(*_paired_updates(
      lr_.frozen_rule(theta, config=cfg), optax.contrib.muon(
          1e-2, weight_decay=0.5, adam_weight_decay=0.5, adam_b2=0.98,
          consistent_rms=0.2), params, loss, 5))


def test_the_initial_rule_is_the_muon_method_on_the_transformer(tmp_path):
  """The method learned-rule with a zero-initialised muon-placement rule
  folder is the method muon (warm-up, clip, weight decay and all) on the
  library's transformer, over 5 steps: the rule at initialisation is
  tuned Muon at the same cell."""
  params, loss = _transformer_problem()
  folder = str(tmp_path / "rule")
  cfg = lr_.muon_config(lr=3e-3, wd=0.0, hidden=(8,))
  lr_.save_rule(folder, cfg, lr_.init_rule(cfg, jax.random.PRNGKey(2)))
  txs = []
  for kw in (dict(method="muon"), dict(method="learned-rule", rule=folder)):
    c = TrainConfig(lr=1e-2, wd=1.0, warmup_steps=3, **kw).validate()
    txs.append(methods.optimizer(c, c.hparams()))
  _assert_close(*_paired_updates(txs[1], txs[0], params, loss, 5))
  # the rule's own weight decay does not add to the method's
  cfg2 = lr_.muon_config(lr=3e-3, wd=5.0, hidden=(8,))
  lr_.save_rule(folder, cfg2, lr_.init_rule(cfg2, jax.random.PRNGKey(2)))
  c = TrainConfig(lr=1e-2, wd=1.0, warmup_steps=3, method="learned-rule",
                  rule=folder).validate()
  _assert_close(*_paired_updates(methods.optimizer(c, c.hparams()), txs[0],
                                 params, loss, 5))


def _random_rule(cfg, scale, seed=4):
  theta = lr_.init_rule(cfg, jax.random.PRNGKey(seed))
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), 8)
  leaves, tdef = jax.tree.flatten(theta)
  return jax.tree.unflatten(tdef, [
      scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _flat_spectrum(u) -> bool:
  """The upper half of the singular values within [0.6, 1.5] of their
  median: Newton-Schulz's band (the gradient's near-null directions stay
  small, so the lower half is not checked)."""
  s = np.linalg.svd(np.asarray(u, np.float64), compute_uv=False)
  s = s / np.median(s)
  top = s[: (len(s) + 1) // 2]
  return bool(top.min() >= 0.6 and top.max() <= 1.5)


def test_orthogonalisation_touches_only_the_hidden_matrices():
  """With a trained-looking (random) rule on the transformer: the leaves
  muon_dimension_numbers leaves out (embeddings, head, biases, norms) get
  exactly AdamW's update; the hidden matrices' updates differ from the
  zero rule's (the learned part acts) and are orthogonal up to the
  Newton-Schulz band (:func:`_flat_spectrum`), where AdamW's are not."""
  params, loss = _transformer_problem()
  cfg = lr_.muon_config(lr=1e-2, wd=0.0, hidden=(8,))
  zero = lr_.init_rule(cfg, jax.random.PRNGKey(0))
  rand = _random_rule(cfg, 0.5)
  adamw = optax.adamw(1e-2, b2=0.98, weight_decay=0.0, nesterov=True)
  g = jax.grad(loss)(params)
  u_rand, _ = lr_.frozen_rule(rand, config=cfg,
                              dimension_numbers=muon_dimension_numbers
                              ).update(g, lr_.init_rule_state(cfg, params),
                                       params)
  u_zero, _ = lr_.frozen_rule(zero, config=cfg,
                              dimension_numbers=muon_dimension_numbers
                              ).update(g, lr_.init_rule_state(cfg, params),
                                       params)
  u_adam, _ = adamw.update(g, adamw.init(params), params)
  dims = jax.tree.leaves(muon_dimension_numbers(params),
                         is_leaf=lambda x: x is None or isinstance(
                             x, optax.contrib.MuonDimensionNumbers))
  hidden = 0
  for dim, r, z, a in zip(dims, jax.tree.leaves(u_rand),
                          jax.tree.leaves(u_zero), jax.tree.leaves(u_adam)):
    if dim is None:
      np.testing.assert_allclose(r, a, rtol=1e-6, atol=1e-12)
      continue
    hidden += 1
    assert r.ndim == 2
    assert not np.allclose(r, z, rtol=1e-3)
    assert _flat_spectrum(r), np.linalg.svd(np.asarray(r), compute_uv=False)
    assert not _flat_spectrum(a)  # AdamW's is not: the check can fail
  assert hidden == 4  # qkv, proj, fc, out of the one block


def test_updates_stay_bounded_whatever_the_rule():
  """Rules with huge weights (others learned or AdamW): every update is
  finite; on an orthogonalised matrix its RMS is at most 2 lr (the
  per-tensor factor < 2 times Newton-Schulz's singular values < 1.3 times
  consistent_rms 0.2 times sqrt(max fan) / sqrt(max fan)), weight decay 0."""
  params, loss = _transformer_problem()
  g = jax.grad(loss)(params)
  dims = jax.tree.leaves(muon_dimension_numbers(params),
                         is_leaf=lambda x: x is None or isinstance(
                             x, optax.contrib.MuonDimensionNumbers))
  for others in lr_.OTHERS:
    cfg = lr_.muon_config(lr=1e-2, wd=0.0, hidden=(8,), others=others)
    for scale in (10.0, 1000.0):
      tx = lr_.frozen_rule(_random_rule(cfg, scale), config=cfg,
                           dimension_numbers=muon_dimension_numbers)
      u, _ = tx.update(g, tx.init(params), params)
      for dim, leaf in zip(dims, jax.tree.leaves(u)):
        assert bool(jnp.all(jnp.isfinite(leaf)))
        if dim is not None:
          assert float(jnp.sqrt(jnp.mean(jnp.square(leaf)))) <= 2 * 1e-2


def test_meta_train_builds_the_muon_harness_from_its_flags():
  """experiments.meta_train --placement muon --lr --wd: the rule config is
  muon_config at that cell (default wd 1, the muon method's); --wd with
  another placement is refused (it would be ignored)."""
  from experiments import meta_train
  args = meta_train.parser().parse_args(
      ["--out", "x", "--placement", "muon", "--lr", "1e-2", "--hidden", "8"])
  rule = meta_train.configs(args)["rule"]
  assert rule == lr_.muon_config(lr=1e-2, wd=1.0, hidden=(8,))
  args = meta_train.parser().parse_args(
      ["--out", "x", "--placement", "muon", "--wd", "0.3"])
  assert meta_train.configs(args)["rule"].wd == 0.3
  args = meta_train.parser().parse_args(["--out", "x", "--wd", "0.3"])
  import pytest
  with pytest.raises(ValueError, match="--wd"):
    meta_train.configs(args)


def test_meta_train_muon_rule_with_probes_starts_at_muon(tmp_path):
  """A tiny meta-training of the muon placement with probes: a probe row
  at outer step 0 (the starting rule) and after each probed outer step,
  each with one steps-to-95% entry per task and seed (the learning curve
  against the starting point); the saved rule's config is muon_config's."""
  from experiments import meta_train
  from ngrok_jax._src.analysis.results import read_metrics
  out = tmp_path / "mt"
  args = meta_train.parser().parse_args(
      ["--out", str(out), "--primes", "11", "--dim", "16", "--heads", "2",
       "--batch-size", "16", "--meta-batch", "16", "--hidden", "4",
       "--particles", "8", "--truncation", "3", "--horizon", "6",
       "--outer-steps", "2", "--checkpoint-every", "2", "--no-progress",
       "--no-plots", "--placement", "muon", "--lr", "1e-2", "--probe-every",
       "2", "--probe-steps", "8", "--probe-seeds", "2"])
  meta_train.run(args)
  probes = [r for r in read_metrics(str(out / "metrics.jsonl"))
            if "probe_steps_to_95" in r]
  assert [r["outer_step"] for r in probes] == [0, 2]
  assert all(len(r["probe_steps_to_95"]) == 4 * 2 for r in probes)
  _, cfg = lr_.load_rule(str(out))
  assert cfg == lr_.muon_config(lr=1e-2, wd=1.0, hidden=(4,))


@pytest.mark.slow
def test_bench_meta_step_times_both_and_writes_the_ratio(tmp_path):
  """experiments/bench_meta_step at a tiny size: seed-step and each
  placement's particle-step timed in alternation, ratios in the record."""
  import json
  from experiments import bench_meta_step
  out = tmp_path / "b.json"
  assert bench_meta_step.main(
      ["--p", "11", "--dim", "16", "--batch-size", "16", "--seeds", "2",
       "--particles", "8", "--steps", "3", "--hidden", "2", "--repeats", "2",
       "--json", str(out)]) == 0
  rec = json.loads(out.read_text())
  assert set(rec["ratio"]) == {"particle_step[muon]", "particle_step[update]"}
  assert all(len(v) == 2 and min(v) > 0 for v in rec["seconds"].values())
  assert bench_meta_step.main(["--particles", "7"]) == 2


def test_meta_train_accumulate_averages_outer_steps_before_an_update(
    tmp_path):
  """--accumulate 2: theta stays at its start after the first outer step
  and moves after the second (one meta update on the mean of two
  estimates), as Adam on that mean would move it; --accumulate 0 is a
  one-line error before any write."""
  from experiments import meta_train
  base = ["--primes", "11", "--dim", "16", "--heads", "2", "--batch-size",
          "16", "--meta-batch", "16", "--hidden", "4", "--particles", "4",
          "--truncation", "3", "--horizon", "6", "--checkpoint-every", "1",
          "--no-progress", "--no-plots", "--accumulate", "2"]
  out = str(tmp_path / "acc")
  argv = lambda n: base + ["--out", out, "--outer-steps", str(n)]
  start = meta_train.init_state(
      meta_train.parser().parse_args(argv(1)),
      meta_train.configs(meta_train.parser().parse_args(argv(1))))["theta"]
  one = meta_train.run(meta_train.parser().parse_args(argv(1)))["state"]
  for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(one["theta"])):
    np.testing.assert_array_equal(a, b)
  two = meta_train.run(meta_train.parser().parse_args(argv(2)))["state"]
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(start), jax.tree.leaves(two["theta"])))
  with pytest.raises(ValueError, match="--accumulate"):
    meta_train.configs(meta_train.parser().parse_args(
        base[:-1] + ["0", "--out", str(tmp_path / "bad")]))
  assert not (tmp_path / "bad").exists()
