"""Golden trace: this library computes what the authors' PyTorch code computes.

The fixture ``tests/golden/reference_a7490be.npz`` was produced by the
reference implementation of NeuralGrok (Zhou et al. 2025, arXiv 2504.17243):
repository Blackzxy/NeuralOptGrok, commit a7490be (branch ``neuralgrad``,
``src/run.py`` through ``src/train.py``), run in float64 on a CPU by
``tests/golden/generate.py``.  Regenerate it with (torch is needed only there,
never by this test)::

    git -C <NeuralOptGrok clone> archive a7490be src | tar -x -C /tmp/ngref
    NEURALOPTGROK_SRC=/tmp/ngref/src python tests/golden/generate.py

The two recorded runs are ``a+b mod 37``, depth 1, d 16, 4 heads, 24 steps
(12 epochs of a 512-example batch and a short one): NeuralGrok (amplifier
1-16-16-1, T=4, meta steps after steps 4, 8, ..., 24) and the reference's
baseline (Adam with the same weight decay, unclipped, 50% of the data).
Here, the reference's initial weights and batches are loaded into this
library's model and :meth:`ngrok_jax.Trainer.batch_step` is applied step by
step in float64; everything else (c, T, weight decay, clipping, meta-step
placement, warm-up, optimizers) comes from the ``paper-add`` preset and the
library's defaults, so a change to any of them fails here:

* initialisation changed back to Flax's, or the configuration's ``init`` not
  reaching the model: ``test_initialisation_matches_reference`` (per-tensor
  std, exact zeros and ones against the reference's statistics, of the
  weights ``Trainer(TrainConfig).init`` gives a user's ``paper-add`` run);
* a token layout or vocabulary: ``test_task_layouts_match_reference``
  (every example row, in order) and the weight shapes in the trace;
* the meta-step placement: ``test_neuralgrok_trace`` (the outer loss and the
  amplifier after the first meta step, then every loss after step 4);
* the amplifier's c: ``test_neuralgrok_trace`` (the clipped gradient norm of
  every step is 0.2 * sqrt(17) in the reference, and every loss after step 1).

At d 16 and depth 1 the amplified norm, 0.2 * sqrt(17) = 0.82, stays below
the clip at 1, so these traces cannot see the clip.  The clip (depth 2: 29
tensors, 0.2 * sqrt(29) = 1.08), the rescaling ablation, Adam with coupled
decay, the epoch batching and the evaluation are traced through a user's
configuration in ``tests/test_golden_public.py``.
"""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj
from ngrok_jax._src.training.presets import get_preset

FIXTURE = os.path.join(os.path.dirname(__file__), "golden",
                       "reference_a7490be.npz")
# This library's task names for the reference's.
TASK_NAMES = {"a+b": "a+b", "a-b": "a-b", "axb": "a*b", "axa-b": "a*a-b",
              "axc+bxd-e": "a*c+b*d-e"}
RTOL = 1e-8  # float64 on both sides; observed agreement is ~1e-12


@pytest.fixture(scope="module")
def ref():
  with np.load(FIXTURE) as z:
    return {k: z[k] for k in z.files}


def _names(depth):
  """(our parameter path, the reference's state_dict name, transposed?)."""
  out = [(("tok_emb", "embedding"), "token_embeddings.weight", False),
         (("pos_emb",), "position_embeddings.weight", False),
         (("ln_f", "scale"), "ln_f.weight", False),
         (("ln_f", "bias"), "ln_f.bias", False),
         (("head", "kernel"), "head.weight", True)]
  for i in range(depth):
    t, b = f"layers.{i}.", f"block_{i}"
    out += [((b, "ln1", "scale"), t + "ln_1.weight", False),
            ((b, "ln1", "bias"), t + "ln_1.bias", False),
            ((b, "ln2", "scale"), t + "ln_2.weight", False),
            ((b, "ln2", "bias"), t + "ln_2.bias", False),
            ((b, "attn", "qkv", "kernel"), t + "attn.in_proj_weight", True),
            ((b, "attn", "qkv", "bias"), t + "attn.in_proj_bias", False),
            ((b, "attn", "proj", "kernel"), t + "attn.out_proj.weight", True),
            ((b, "attn", "proj", "bias"), t + "attn.out_proj.bias", False),
            ((b, "fc", "kernel"), t + "mlp.0.weight", True),
            ((b, "fc", "bias"), t + "mlp.0.bias", False),
            ((b, "out", "kernel"), t + "mlp.2.weight", True),
            ((b, "out", "bias"), t + "mlp.2.bias", False)]
  return out


def _torch_to_flax(ref, prefix, depth):
  """The reference's state_dict (``prefix`` + torch name) as our params."""
  params = {}
  for path, name, transpose in _names(depth):
    v = jnp.asarray(ref[prefix + name])
    if transpose:
      v = v.T
    if name == "position_embeddings.weight":
      # the reference's table has one row per token *including* the
      # answer; the model never reads the last row (see ngrok_jax._src.core.model)
      v = v[:-1]
    node = params
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return {"params": params}


def _amp_to_flax(ref, prefix, n_layers, index=None):
  out = {}
  for i in range(n_layers):
    w, b = ref[f"{prefix}network.{2 * i}.weight"], ref[f"{prefix}network.{2 * i}.bias"]
    if index is not None:
      w, b = w[index], b[index]
    out[f"kernel_{i}"], out[f"bias_{i}"] = jnp.asarray(w).T, jnp.asarray(b)
  return {"params": out}


def _config(method, ref_prefix):
  """The paper-add recipe at the fixture's size (sizes only are changed)."""
  pre = get_preset("paper-add")
  cfg = dict(pre["config"])
  cfg.update(pre["method_config"].get(method, {}))
  cfg.update(method=method, p=37, depth=1, dim=16, heads=4, amp_hidden=(16, 16))
  return nj.TrainConfig(**cfg)


def _batches(ref, prefix):
  rows, sizes = ref[prefix + "batches"], ref[prefix + "batch_sizes"]
  bmax = int(sizes.max())
  start = 0
  for n in sizes:
    r = rows[start:start + n]
    start += n
    pad = np.zeros((bmax - n, r.shape[1]), r.dtype)
    r = np.concatenate([r, pad])
    w = (np.arange(bmax) < n).astype(np.float64)
    yield jnp.asarray(r[:, :-1]), jnp.asarray(r[:, -1]), jnp.asarray(w)


def _assert_tree_close(ours, ref_tree, rtol, atol, what):
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours),
                          jax.tree.leaves(ref_tree)):
    a, b = np.asarray(a), np.asarray(b)
    if jax.tree_util.keystr(path).endswith("['qkv']['bias']"):
      # The attention *key* bias (entries d..2d) has a gradient that is zero
      # in exact arithmetic (softmax is shift invariant), so Adam normalises
      # float64 rounding noise there: both sides stay within lr of 0 per
      # step, with arbitrary signs.  It never changes an output.
      d = a.shape[0] // 3
      assert np.all(np.abs(a[d:2 * d]) < 24 * 1e-3), what
      assert np.all(np.abs(b[d:2 * d]) < 24 * 1e-3), what
      a, b = np.delete(a, np.s_[d:2 * d]), np.delete(b, np.s_[d:2 * d])
    np.testing.assert_allclose(a, b, rtol=rtol,
                               atol=atol, err_msg=f"{what} "
                               f"{jax.tree_util.keystr(path)}")


def _run_trace(ref, method, prefix):
  """Steps the reference's batches through our step; returns what it saw."""
  cfg = _config(method, prefix)
  tr = nj.Trainer(cfg)
  params = _torch_to_flax(ref, prefix + "init/", cfg.depth)
  amp = (_amp_to_flax(ref, prefix + "amp_init/", len(cfg.amp_hidden) + 1)
         if tr.has_meta else None)
  s = tr.seed_state(params, amp)
  hp = s.hparams
  outer = ref[prefix + "outer_rows"]
  ox, oy = jnp.asarray(outer[:, :-1]), jnp.asarray(outer[:, -1])
  if outer.shape[0] == 0:  # the baseline has no outer split
    ox, oy = ox.reshape(0, 4), oy
  step = jax.jit(tr.batch_step)

  @jax.jit
  def grad_norm(s, x, y, w):
    # what the reference logs: the norm after the method's transform and
    # the clip, before the optimizer step
    g = jax.grad(tr.loss_fn)(s.params, x, y, w)
    g = tr.transform_gradient(s, g)
    g, _ = optax.clip_by_global_norm(hp["clip"]).update(g, None)
    return optax.tree.norm(g)

  seen = dict(loss=[], grad_norm=[], outer_loss=[], amp_after_meta=[],
              meta_steps=[], states=[])
  for i, (x, y, w) in enumerate(_batches(ref, prefix)):
    seen["grad_norm"].append(float(grad_norm(s, x, y, w)))
    s, out = step(s, x, y, w, ox, oy, i)
    seen["loss"].append(float(out["loss"]))
    if np.isfinite(float(out["outer_loss"])):
      seen["meta_steps"].append(i + 1)
      seen["outer_loss"].append(float(out["outer_loss"]))
      seen["amp_after_meta"].append(s.amp_params)
    seen["states"].append(s)
  return tr, s, seen


def test_neuralgrok_trace(ref):
  with jax.enable_x64(True):
    tr, s, seen = _run_trace(ref, "neuralgrok", "ng_")
    # every step's clipped, amplified gradient norm (c = 0.2: 0.2 * sqrt(17))
    np.testing.assert_allclose(seen["grad_norm"], ref["ng_grad_norm"],
                               rtol=RTOL)
    # the meta steps run where the reference runs them, with its outer loss
    assert seen["meta_steps"] == ref["ng_meta_steps"].tolist()
    np.testing.assert_allclose(seen["outer_loss"], ref["ng_outer_loss"],
                               rtol=RTOL)
    for k, amp in enumerate(seen["amp_after_meta"]):
      _assert_tree_close(amp, _amp_to_flax(ref, "ng_amp_after_meta/", 3, k),
                         1e-7, 1e-12, f"amplifier after meta step {k + 1}")
    # the training loss of every step
    np.testing.assert_allclose(seen["loss"], ref["ng_loss"], rtol=RTOL)
    _assert_tree_close(s.params, _torch_to_flax(ref, "ng_final/", 1),
                       1e-6, 1e-8, "final weights")
    _assert_tree_close(s.amp_params, _amp_to_flax(ref, "ng_amp_final/", 3),
                       1e-7, 1e-12, "final amplifier")


def test_baseline_trace(ref):
  with jax.enable_x64(True):
    tr, s, seen = _run_trace(ref, "adam", "base_")
    # unclipped raw gradient norms (the reference's baseline has no clip)
    np.testing.assert_allclose(seen["grad_norm"], ref["base_grad_norm"],
                               rtol=RTOL)
    assert seen["meta_steps"] == []
    np.testing.assert_allclose(seen["loss"], ref["base_loss"], rtol=RTOL)
    _assert_tree_close(s.params, _torch_to_flax(ref, "base_final/", 1),
                       1e-6, 1e-8, "final weights")
    # per-epoch test loss and accuracy, computed as the reference does (the
    # mean over its test batches of each batch's mean)
    rows, sizes = ref["base_test_rows"], ref["base_test_batch_sizes"]
    for epoch in range(len(ref["base_epoch_test_loss"])):
      params = seen["states"][2 * epoch + 1].params
      losses, accs, start = [], [], 0
      for n in sizes:
        r = rows[start:start + n]
        start += n
        logits = tr.model.apply(params, jnp.asarray(r[:, :-1]))
        losses.append(float(nj.cross_entropy(logits, jnp.asarray(r[:, -1]))))
        accs.append(float(nj.accuracy(logits, jnp.asarray(r[:, -1]))))
      np.testing.assert_allclose(np.mean(losses),
                                 ref["base_epoch_test_loss"][epoch], rtol=RTOL)
      np.testing.assert_allclose(np.mean(accs),
                                 ref["base_epoch_test_acc"][epoch], atol=1e-12)


def test_baselines_train_on_half_the_data(ref):
  # the reference's baseline trains on floor(0.5 n) examples, NeuralGrok on
  # floor(0.49 n) with floor(0.01 n) outer examples; so do ours
  n = 37 * 36
  assert ref["base_inner_rows"].shape[0] == n // 2
  assert ref["ng_inner_rows"].shape[0] == int(0.49 * n)
  assert ref["ng_outer_rows"].shape[0] == int(0.01 * n)
  for method, n_train in (("adam", n // 2), ("neuralgrok", int(0.49 * n))):
    tr = nj.Trainer(_config(method, None))
    _, data = tr.init([0])
    assert data.train.shape == (1, n_train), method
    assert data.test.shape == (1, n - n_train - (0 if method == "adam" else
                                                  int(0.01 * n))), method


def test_task_layouts_match_reference(ref):
  for ref_name, name in TASK_NAMES.items():
    rows = ref[f"layout/{ref_name}"]
    p = 3 if name == "a*c+b*d-e" else 5
    t = nj.make_task(name, p)
    ours = np.concatenate([np.asarray(t.inputs), np.asarray(t.labels)[:, None]],
                          axis=1)
    np.testing.assert_array_equal(ours, rows, err_msg=name)
    assert t.seq_len == int(ref[f"layout_seq_len/{ref_name}"]) - 1
    # vocabulary: the reference's README (p+2, p+3 for a*a-b, p+4 for the
    # five-operand task) is every token the rows use
    assert t.vocab_size == int(rows[:, :-1].max()) + 1, name


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def test_initialisation_matches_reference(ref):
  """Per-tensor statistics of a paper-size model at init vs the reference's
  (PyTorch defaults): the fractions of exact zeros and ones, and the
  standard deviation (4 seeds pooled, so it is estimated to a few %).

  The weights are a user's run's: ``Trainer(TrainConfig).init`` of the
  ``paper-add`` preset (a+b mod 97, vocabulary p + 2), so the configuration's
  ``init`` must reach the model; ``init="flax"`` must then give Flax's
  statistics instead (the model's own default is not what is tested)."""
  pre = get_preset("paper-add")
  cfg = nj.TrainConfig(**pre["config"])
  state, _ = nj.Trainer(cfg).init([0, 1, 2, 3])
  params = state.seeds.params["params"]
  names = _names(2)
  assert len(names) == len(jax.tree.leaves(params))
  for path, name, _ in names:
    mean, std, lo, hi, numel, frac0, frac1 = ref["initstats/" + name]
    vals = np.asarray(_get(params, path)).ravel()  # 4 seeds pooled
    assert np.isclose(np.mean(vals == 0), frac0, atol=0.01), (name, "zeros")
    assert np.isclose(np.mean(vals == 1), frac1, atol=0.01), (name, "ones")
    if std > 0:
      tol = 0.05 + 3.0 / np.sqrt(min(vals.size, 4 * numel))
      assert abs(np.std(vals) / std - 1) < tol, (name, np.std(vals), std)
      # uniform initialisers: the same bound
      assert np.max(np.abs(vals)) <= max(abs(lo), abs(hi)) * 1.5 + 1e-6 or (
          name.endswith("embeddings.weight")), (name, "bound")
  # the configuration decides: Flax's embeddings are N(0, 0.02), not N(0, 1)
  flax_state, _ = nj.Trainer(dataclasses.replace(cfg, init="flax")).init([0])
  emb = np.asarray(flax_state.seeds.params["params"]["tok_emb"]["embedding"])
  assert abs(np.std(emb) / 0.02 - 1) < 0.2, np.std(emb)
  # the amplifier a user's NeuralGrok run starts from (1-128-128-1)
  assert cfg.method == "neuralgrok" and cfg.amp_hidden == (128, 128)
  phi = jax.tree.map(lambda a: a[0], state.seeds.amp_params)["params"]
  for i in range(3):
    for ours, theirs in ((f"kernel_{i}", f"network.{2 * i}.weight"),
                         (f"bias_{i}", f"network.{2 * i}.bias")):
      _, std, lo, hi, numel, frac0, _ = ref["initstats_amp/" + theirs]
      vals = np.asarray(phi[ours]).ravel()
      if numel < 2:
        assert abs(vals[0]) <= max(abs(lo), abs(hi), 1 / np.sqrt(128)), ours
        continue
      tol = 0.05 + 3.0 / np.sqrt(vals.size)
      assert abs(np.std(vals) / std - 1) < tol, (ours, np.std(vals), std)
