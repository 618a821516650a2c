"""The newer grokking methods and diagnostics against NumPy computations of
their formulas: ⊥Grad, the weight-norm projection, StableMax, Muon's
parameter labels, softmax collapse and the embedding's Fourier spectrum."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj
from ngrok_jax._src.training import methods
from ngrok_jax._src.optim import registry
from ngrok_jax._src.training.config import TrainConfig


def _tree(seed=0):
  r = np.random.default_rng(seed)
  return {"a": r.normal(size=(4, 6)).astype(np.float32),
          "b": r.normal(size=(7,)).astype(np.float32),
          "z": np.zeros((3,), np.float32)}


def test_orthogonalize_matches_numpy_formula():
  w, g = _tree(0), _tree(1)
  g["z"] = np.array([0.3, -1.0, 2.0], np.float32)  # weights 0: unchanged
  out, _ = nj.orthogonalize_gradients().update(
      jax.tree.map(jnp.asarray, g), (), jax.tree.map(jnp.asarray, w))
  for k in w:
    wf, gf = w[k].astype(np.float64).ravel(), g[k].astype(np.float64).ravel()
    perp = gf - wf @ gf / (wf @ wf + 1e-30) * wf
    want = perp * np.linalg.norm(gf) / (np.linalg.norm(perp) + 1e-30)
    np.testing.assert_allclose(np.asarray(out[k]).ravel(), want, rtol=2e-5,
                               atol=1e-6)
    if k != "z":  # orthogonal to the weights, the gradient's norm kept
      assert abs(np.asarray(out[k]).ravel() @ wf) < 1e-4 * np.linalg.norm(wf)
      assert not np.allclose(np.asarray(out[k]), g[k], atol=1e-3)
  np.testing.assert_allclose(out["z"], g["z"])


def test_orthogonalize_parallel_gradient_gives_zero_not_noise():
  w = jnp.asarray([[1.0, -2.0, 0.5]])
  out, _ = nj.orthogonalize_gradients().update(
      {"w": 3.0 * w, "s": jnp.asarray(0.7)},
      (), {"w": w, "s": jnp.asarray(2.0)})
  np.testing.assert_array_equal(out["w"], 0.0)
  np.testing.assert_array_equal(out["s"], 0.0)
  with pytest.raises(ValueError, match="needs params"):
    nj.orthogonalize_gradients().update({"w": w}, ())


def test_project_weight_norm_matches_numpy_formula():
  w, u = _tree(2), jax.tree.map(lambda x: 0.1 * x, _tree(3))
  tx = nj.project_weight_norm(5.0)
  out, _ = tx.update(jax.tree.map(jnp.asarray, u), tx.init(w),
                     jax.tree.map(jnp.asarray, w))
  new = {k: w[k].astype(np.float64) + u[k] for k in w}
  norm = math.sqrt(sum(np.sum(v ** 2) for v in new.values()))
  for k in w:
    np.testing.assert_allclose(out[k], 5.0 * new[k] / norm - w[k],
                               rtol=1e-5, atol=1e-6)
  after = optax.apply_updates(w, out)
  np.testing.assert_allclose(optax.tree.norm(after), 5.0, rtol=1e-6)
  with pytest.raises(ValueError, match="norm must be > 0"):
    nj.project_weight_norm(0.0)


def _np_log_stablemax(x):
  s = np.where(x >= 0, x + 1.0, 1.0 / (1.0 - np.minimum(x, 0)))
  return np.log(s) - np.log(np.sum(s, axis=-1, keepdims=True))


def test_stablemax_matches_numpy_formula():
  r = np.random.default_rng(4)
  x = np.concatenate([r.normal(scale=3, size=(5, 11)),
                      r.normal(scale=1e4, size=(2, 11))]).astype(np.float32)
  got = np.asarray(nj.log_stablemax(jnp.asarray(x)))
  np.testing.assert_allclose(got, _np_log_stablemax(x.astype(np.float64)),
                             rtol=1e-5, atol=1e-5)
  labels = r.integers(0, 11, size=7)
  w = np.array([1, 1, 0, 1, 1, 0, 1], np.float32)
  ce = nj.stablemax_cross_entropy(jnp.asarray(x), jnp.asarray(labels),
                                  jnp.asarray(w))
  per = -_np_log_stablemax(x.astype(np.float64))[np.arange(7), labels]
  np.testing.assert_allclose(ce, np.sum(w * per) / w.sum(), rtol=1e-5)
  # huge logits: finite loss and gradient (the exp-free normaliser)
  big = jnp.asarray([[1e30, -1e30, 3.0]], jnp.float32)
  gr = jax.grad(lambda z: nj.stablemax_cross_entropy(z, jnp.asarray([2])))(
      big)
  assert np.all(np.isfinite(gr)) and np.isfinite(
      nj.stablemax_cross_entropy(big, jnp.asarray([2])))


def test_softmax_collapse_counts_one_hot_rows():
  logits = jnp.asarray([[0.0, 200.0, 0.0],    # softmax one-hot in float32
                        [0.0, 1.0, 0.5],
                        [100.0, 0.0, 0.0],    # one-hot
                        [20.0, 0.0, 0.0]])    # 1 - 2e-9: rounds to 1 too
  exact = np.exp(np.float64(20.0))
  assert np.float32(exact / (exact + 2)) == 1.0  # the float32 rounding
  np.testing.assert_allclose(nj.softmax_collapse(logits), 3 / 4)
  # StableMax's probabilities do not collapse at these margins
  np.testing.assert_allclose(nj.softmax_collapse(logits, "stablemax"), 0.0)


def test_fourier_spectrum_matches_numpy_dft():
  p, d = 13, 6
  r = np.random.default_rng(5)
  emb = r.normal(size=(p + 3, d)).astype(np.float32)  # + operator tokens
  a = np.arange(p)
  dft = np.exp(-2j * np.pi * np.outer(np.arange(p), a) / p) @ emb[:p]
  power = np.sum(np.abs(dft) ** 2, axis=1)  # k = 0 .. p-1
  want = np.array([power[k] + power[p - k] for k in range(1, p // 2 + 1)])
  want /= want.sum()
  got = np.asarray(nj.fourier_spectrum(jnp.asarray(emb), p))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert 4 <= int(nj.key_frequencies(jnp.asarray(got))) <= 6
  # an embedding made of two frequencies: two key frequencies
  pure = np.stack([np.cos(2 * np.pi * 3 * a / p), np.sin(2 * np.pi * 3 * a / p),
                   np.cos(2 * np.pi * 5 * a / p), 0 * a + 0.3], 1)
  share = np.asarray(nj.fourier_spectrum(jnp.asarray(pure), p))
  np.testing.assert_allclose(share[[2, 4]], [2 / 3, 1 / 3], atol=1e-5)
  assert int(nj.key_frequencies(jnp.asarray(share))) == 2
  # an even modulus: k = p/2 is counted once.  Parseval: cos(pi a) = +-1
  # carries energy 8 over 8 tokens, cos(2 pi a / 8) carries 4
  even = np.cos(np.pi * np.arange(8))[:, None] + np.cos(
      2 * np.pi * np.arange(8) / 8)[:, None]
  share = np.asarray(nj.fourier_spectrum(jnp.asarray(even), 8))
  np.testing.assert_allclose(share, [1 / 3, 0, 0, 2 / 3], atol=1e-6)


def _params(cfg):
  model = methods.model_of(cfg)
  task = methods.task_of(cfg)
  return model.init(jax.random.key(0),
                    jnp.zeros((1, task.seq_len), jnp.int32))


def test_muon_labels_only_hidden_matrices():
  cfg = TrainConfig(task="a+b", p=11, depth=2, dim=16, heads=2,
                    method="muon")
  params = _params(cfg)
  spec = registry.muon_dimension_numbers(params)
  flat = {jax.tree_util.keystr(k): v for k, v in
          jax.tree_util.tree_flatten_with_path(spec, is_leaf=lambda x: (
              x is None or isinstance(x, optax.contrib.MuonDimensionNumbers))
          )[0]}
  muon = sorted(k for k, v in flat.items() if v is not None)
  assert all(v == optax.contrib.MuonDimensionNumbers(0, 1)
             for k, v in flat.items() if v is not None)
  assert muon == sorted(
      f"['params']['block_{i}']{m}['kernel']" for i in range(2)
      for m in ("['attn']['proj']", "['attn']['qkv']", "['fc']", "['out']"))
  for k, v in flat.items():
    if any(n in k for n in ("tok_emb", "pos_emb", "head", "bias", "scale")):
      assert v is None, k


def test_muon_method_orthogonalises_hidden_matrices_only():
  cfg = TrainConfig(task="a+b", p=11, depth=1, dim=16, heads=2,
                    method="muon", warmup_steps=0, lr=1.0,
                    wd=0.0).validate()
  params = _params(cfg)
  hp = {k: jnp.asarray(v) for k, v in cfg.hparams().items()}
  tx = methods.optimizer(cfg, hp)
  g = jax.tree.map(lambda x: jnp.asarray(
      np.random.default_rng(x.size).normal(size=x.shape), jnp.float32),
      params)
  upd, _ = tx.update(g, tx.init(params), params)
  sv = lambda x: np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
  qkv = sv(upd["params"]["block_0"]["attn"]["qkv"]["kernel"])
  head = sv(upd["params"]["head"]["kernel"])
  # Newton-Schulz: singular values of a Muon update close to one another;
  # the head's (AdamW: sign-like, not orthogonalised) spread much wider
  assert qkv.max() / qkv.min() < 2.0
  assert head.max() / head.min() > 3 * (qkv.max() / qkv.min())


def test_new_methods_from_the_command_line(tmp_path, capsys):
  """``ngrok-jax train --methods muon,adamw --loss stablemax
  --fix-weight-norm R``: both methods train, log the diagnostics and their
  StableMax loss, and keep their weights at norm R.  (Muon builds its own
  optimizer, AdamW the default chain that every transform-only method
  such as OrthoGrad shares; test_cli trains every method from the command
  line.)"""
  import json
  from ngrok_jax._src.cli import cli
  out = str(tmp_path / "run")
  rc = cli.main(["train", "--task", "a+b", "--p", "11", "--depth", "1",
                 "--dim", "16", "--heads", "2", "--batch-size", "32",
                 "--methods", "muon,adamw", "--loss", "stablemax",
                 "--fix-weight-norm", "12", "--seeds", "2", "--steps", "4",
                 "--eval-every", "2", "--out", out, "--no-progress",
                 "--no-plots"])
  assert rc in (0, None), capsys.readouterr()
  with open(f"{out}/metrics.jsonl") as f:
    rows = [json.loads(l) for l in f]
  assert sorted({r["method"] for r in rows}) == ["adamw", "muon"]
  assert len(rows) == 2 * 2 * 2
  for r in rows:
    assert math.isfinite(r["train/loss"]) and r["diverged_at"] == -1
    assert r["weights/norm"] == pytest.approx(12.0, rel=1e-5)
    assert {"train/softmax_collapse", "fourier/key_freqs", "fourier/share_5",
            "weights_norm/tok_emb", "weights_norm/block_0"} <= set(r)
    assert "fourier/share_6" not in r  # p=11: k = 1 .. 5
    assert sum(r[f"fourier/share_{k}"] for k in range(1, 6)) == pytest.approx(
        1.0, rel=1e-5)
  with open(f"{out}/config.json") as f:
    configs = json.load(f)["configs"]
  assert {m: (c["loss"], c["fix_weight_norm"]) for m, c in configs.items()
          } == {m: ("stablemax", 12.0) for m in ("muon", "adamw")}


def test_logged_loss_is_the_configured_loss():
  cfg = TrainConfig(task="a+b", p=11, depth=1, dim=16, heads=2,
                    method="adam", loss="stablemax").validate()
  tr = nj.Trainer(cfg)
  st, data = tr.init([0])
  ev = tr.evaluate(st, data)
  logits = methods.model_of(cfg).apply(
      jax.tree.map(lambda x: x[0], st.seeds.params),
      data.inputs[data.train[0]])
  np.testing.assert_allclose(
      ev["train/loss"][0], nj.stablemax_cross_entropy(
          logits, data.labels[data.train[0]]), rtol=1e-5)
  assert not np.isclose(ev["train/loss"][0], nj.cross_entropy(
      logits, data.labels[data.train[0]]), rtol=1e-3)


def test_config_checks_new_fields():
  with pytest.raises(ValueError, match="unknown loss"):
    TrainConfig(loss="hinge").validate()
  with pytest.raises(ValueError, match="fix_weight_norm"):
    TrainConfig(fix_weight_norm=-1.0).validate()
  assert TrainConfig(method="muon").hparams()["wd"] == 1.0
  assert TrainConfig(method="orthograd").hparams()["wd"] == 0.0
