"""Golden trace through the public path: a user's configuration against the
authors' PyTorch code, where the clip acts, for three methods.

The fixture ``tests/golden/reference_a7490be_public.npz`` was produced by the
reference implementation of NeuralGrok (Blackzxy/NeuralOptGrok, commit
a7490be, ``src/``), run in float64 on a CPU by ``tests/golden/generate.py``
(which imports, never copies, the reference's modules).  Regenerate it with
(torch is needed only there, never by this test)::

    git -C <NeuralOptGrok clone> archive a7490be src | tar -x -C /tmp/ngref
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    NEURALOPTGROK_SRC=/tmp/ngref/src /tmp/torchenv/bin/python \\
        tests/golden/generate.py reference_a7490be_public

Three runs of ``a+b mod 37``, depth 2, d 8, 4 heads, 16 steps (8 epochs of a
512-example batch and a short one): NeuralGrok (amplifier 1-8-8-1, T=4), the
rescaling ablation (the reference's NeuralGrok inner path with a constant
amplifier, see ``generate.py``) and Adam with coupled weight decay 0.01 (torch
``Adam(weight_decay=0.01)``).  With 29 parameter tensors the amplified
gradient's norm is 0.2 * sqrt(29) = 1.077 before the clip at 1, so the clip
acts on every step of the first two; each test checks that in the trace.

The library side is what a user's run builds: a :class:`ngrok_jax.TrainConfig`
from the ``paper-add`` preset (only the sizes, and the coupled run's weight
decay, changed), :class:`ngrok_jax.Trainer` and its ``init``,
``seed_state``, ``transform_gradient``, ``batch_step`` and ``evaluate`` and
the epoch batching :func:`ngrok_jax.train.batch_of` that ``train_steps``
uses.  Only the reference's initial weights (and amplifier) and its batches
are injected.  What breaks which test (each checked by mutating the library):

* the clip removed, or coupled decay made decoupled, or rescaling's
  normalisation changed: ``test_trace`` (every step's loss, the final
  weights; the pre-clip norm for the rescaling);
* the short last batch dropped, or batches not reshuffled per epoch:
  ``test_epoch_batching_matches_dataloader``;
* the evaluation's accuracy or loss changed: ``test_evaluation``;
* the configuration's ``init`` not reaching the model: the initialisation
  test in ``tests/test_golden.py``.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj
from ngrok_jax.presets import get_preset
from ngrok_jax.train import batch_of, evaluate
from test_golden import _amp_to_flax, _assert_tree_close, _torch_to_flax

FIXTURE = os.path.join(os.path.dirname(__file__), "golden",
                       "reference_a7490be_public.npz")
RTOL = 1e-8  # float64 on both sides
# prefix -> (method, overrides of the preset): what the user would ask for
RUNS = {"clip_": ("neuralgrok", {}),
        "rescale_": ("rescale", {}),
        "coupled_": ("adam", {"wd": 1e-2})}


@pytest.fixture(scope="module")
def ref():
  with np.load(FIXTURE) as z:
    return {k: z[k] for k in z.files}


def _config(prefix):
  """The paper-add recipe at the fixture's size (and the run's overrides)."""
  method, overrides = RUNS[prefix]
  pre = get_preset("paper-add")
  cfg = dict(pre["config"])
  cfg.update(pre["method_config"].get(method, {}))
  cfg.update(method=method, p=37, depth=2, dim=8, heads=4, amp_hidden=(8, 8))
  cfg.update(overrides)
  return nj.TrainConfig(**cfg)


def _ref_batches(ref, prefix):
  """The reference's inner batches, padded to 512 rows with a 0/1 mask."""
  rows = ref[prefix + "inner_rows"][ref[prefix + "batch_index"]]
  sizes, start = ref[prefix + "batch_sizes"], 0
  bmax = int(sizes.max())
  for n in sizes:
    r = rows[start:start + n]
    start += n
    r = np.concatenate([r, np.zeros((bmax - n, r.shape[1]), r.dtype)])
    w = (np.arange(bmax) < n).astype(np.float64)
    yield jnp.asarray(r[:, :-1]), jnp.asarray(r[:, -1]), jnp.asarray(w)


def _run(ref, prefix):
  """The user's Trainer on the reference's weights and batches (float64)."""
  cfg = _config(prefix)
  tr = nj.Trainer(cfg)
  user_state, _ = tr.init([0])
  params = _torch_to_flax(ref, prefix + "init/", cfg.depth)
  # the model the configuration builds has the reference's tensors
  ours = jax.tree.map(lambda a: a[0], user_state.seeds.params)
  assert jax.tree.structure(ours) == jax.tree.structure(params)
  assert [a.shape for a in jax.tree.leaves(ours)] == [
      a.shape for a in jax.tree.leaves(params)]
  amp = (_amp_to_flax(ref, prefix + "amp_init/", 3) if tr.has_meta else None)
  s = tr.seed_state(params, amp)
  for k, v in s.hparams.items():  # the hyperparameters a user's run carries
    np.testing.assert_allclose(float(v), user_state.seeds.hparams[k][0],
                               rtol=1e-7, err_msg=k)
  outer = ref[prefix + "outer_rows"]
  ox, oy = jnp.asarray(outer[:, :-1]), jnp.asarray(outer[:, -1])
  step = jax.jit(tr.batch_step)

  @jax.jit
  def preclip_norm(s, x, y, w):
    g = jax.grad(tr.loss_fn)(s.params, x, y, w)
    return optax.tree.norm(tr.transform_gradient(s, g))

  seen = dict(loss=[], preclip=[], outer_loss=[], meta_steps=[], states=[])
  for i, (x, y, w) in enumerate(_ref_batches(ref, prefix)):
    seen["preclip"].append(float(preclip_norm(s, x, y, w)))
    s, out = step(s, x, y, w, ox, oy, i)
    seen["loss"].append(float(out["loss"]))
    if np.isfinite(float(out["outer_loss"])):
      seen["meta_steps"].append(i + 1)
      seen["outer_loss"].append(float(out["outer_loss"]))
    seen["states"].append(s)
  return tr, s, seen


@pytest.mark.parametrize("prefix", list(RUNS))
def test_trace(ref, prefix):
  with jax.enable_x64(True):
    tr, s, seen = _run(ref, prefix)
    clipped = prefix != "coupled_"
    if clipped:
      # the clip acted, in the reference: the norm it clipped was above 1
      # (0.2 * sqrt(29) = 1.077) and the logged norm after it is 1
      pre = ref[prefix + "preclip_norm"]
      assert np.all(pre > 1.05), pre
      np.testing.assert_allclose(ref[prefix + "grad_norm"], 1.0, rtol=1e-5)
      assert tr.config.hparams()["clip"] == 1.0
      np.testing.assert_allclose(seen["preclip"], pre, rtol=RTOL)
    else:  # unclipped: the logged norm is the raw gradient's
      assert prefix + "preclip_norm" not in ref
      np.testing.assert_allclose(seen["preclip"], ref[prefix + "grad_norm"],
                                 rtol=RTOL)
    assert seen["meta_steps"] == ref[prefix + "meta_steps"].tolist()
    np.testing.assert_allclose(seen["outer_loss"], ref[prefix + "outer_loss"],
                               rtol=RTOL)
    np.testing.assert_allclose(seen["loss"], ref[prefix + "loss"], rtol=RTOL)
    _assert_tree_close(s.params, _torch_to_flax(ref, prefix + "final/", 2),
                       1e-6, 1e-8, "final weights")
    if tr.has_meta:
      _assert_tree_close(s.amp_params, _amp_to_flax(ref, prefix + "amp_final/",
                                                    3), 1e-7, 1e-12,
                         "final amplifier")
    # the per-epoch evaluation on the test split, by the library's evaluate
    _check_evaluation(ref, prefix, tr, seen["states"])


def _check_evaluation(ref, prefix, tr, states):
  """``ngrok_jax.train.evaluate`` on each of the reference's test batches
  after every epoch, averaged over the batches as the reference averages
  (equal weights), against the reference's ``eval_model``."""
  inner, outer, test = (ref[prefix + k] for k in
                        ("inner_rows", "outer_rows", "test_rows"))
  rows = np.concatenate([inner, outer, test])
  n_in, n_out = len(inner), len(outer)
  per_epoch = int(np.sum(ref[prefix + "batch_epoch"] == 0))
  datas, start = [], n_in + n_out
  for n in ref[prefix + "test_batch_sizes"]:
    test_idx = np.arange(start, start + n)[None]
    start += n
    datas.append(nj.Data(
        jnp.asarray(rows[:, :-1]), jnp.asarray(rows[:, -1]),
        jnp.arange(n_in)[None],
        jnp.arange(n_in, n_in + n_out)[None] if n_out else test_idx,
        jnp.asarray(test_idx)))
  for epoch in range(len(ref[prefix + "epoch_test_loss"])):
    s = states[(epoch + 1) * per_epoch - 1]
    state = nj.TrainState(jnp.asarray((epoch + 1) * per_epoch, jnp.int32),
                          jax.tree.map(lambda a: a[None], s))
    metrics = [evaluate(tr.config, state, d) for d in datas]
    loss = np.mean([float(m["test/loss"][0]) for m in metrics])
    acc = np.mean([float(m["test/acc"][0]) for m in metrics])
    np.testing.assert_allclose(loss, ref[prefix + "epoch_test_loss"][epoch],
                               rtol=RTOL, err_msg=f"test loss, epoch {epoch}")
    np.testing.assert_allclose(acc, ref[prefix + "epoch_test_acc"][epoch],
                               atol=1e-12, err_msg=f"test acc, epoch {epoch}")


def _epochs(sizes, epoch_of_batch, index):
  """Per epoch: the list of batches, each an array of subset indices."""
  out, start = {}, 0
  for n, e in zip(sizes, epoch_of_batch):
    out.setdefault(int(e), []).append(np.asarray(index[start:start + n]))
    start += n
  return [out[e] for e in sorted(out)]


@pytest.mark.parametrize("prefix", ["clip_", "coupled_"])
def test_epoch_batching_matches_dataloader(ref, prefix):
  """The library's epoch batches (``batch_of``, as ``train_steps`` draws
  them for a user's run) have the structure of the reference's shuffled
  DataLoader: the same training-split size, batches per epoch and batch
  sizes (the last one short), every example once per epoch, a new order
  every epoch."""
  sizes = ref[prefix + "batch_sizes"]
  theirs = _epochs(sizes, ref[prefix + "batch_epoch"],
                   ref[prefix + "batch_index"])
  n_train = len(ref[prefix + "inner_rows"])
  tr = nj.Trainer(_config(prefix))
  state, data = tr.init([0])
  train = np.asarray(data.train[0])
  assert train.size == n_train  # the split a user's run trains on
  rows = np.concatenate([np.asarray(data.inputs),
                         np.asarray(data.labels)[:, None]], axis=1)
  where = {tuple(r): i for i, r in enumerate(rows.tolist())}
  position = {int(t): i for i, t in enumerate(train)}  # subset positions
  draw = jax.jit(lambda step: batch_of(tr.config, state.seeds.key[0],
                                       data.train[0], step, data))
  ours_index, ours_sizes = [], []
  for step in range(len(sizes)):
    x, y, w = (np.asarray(a) for a in draw(step))
    n = int(w.sum())
    assert np.all(w[:n] == 1) and np.all(w[n:] == 0), step  # padding last
    got = np.concatenate([x[:n], y[:n, None]], axis=1)
    ours_index += [position[where[tuple(r)]] for r in got.tolist()]
    ours_sizes.append(n)
  np.testing.assert_array_equal(ours_sizes, sizes)
  ours = _epochs(sizes, ref[prefix + "batch_epoch"], ours_index)
  assert len(ours) == len(theirs) >= 2
  for e, (a, b) in enumerate(zip(ours, theirs)):
    assert [len(t) for t in a] == [len(t) for t in b], e
    assert len(a) == -(-n_train // 512) and len(a[-1]) < 512, e
    for batches in (a, b):  # every example exactly once in the epoch
      np.testing.assert_array_equal(np.sort(np.concatenate(batches)),
                                    np.arange(n_train), err_msg=str(e))
  for epochs in (ours, theirs):  # reshuffled: a new first batch every epoch
    firsts = [tuple(np.sort(ep[0])) for ep in epochs]
    assert len(set(firsts)) == len(firsts)
