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
the epoch batching :func:`ngrok_jax._src.training.seed_step.batch_of` that ``train_steps``
uses.  Only the reference's initial weights (and amplifier) and its batches
are injected.  What breaks which test (each checked by mutating the library):

* the clip removed, or coupled decay made decoupled, or rescaling's
  normalisation changed: ``test_trace`` (every step's loss, the final
  weights; the pre-clip norm for the rescaling);
* the short last batch dropped, batches not reshuffled per epoch, or
  ``train_steps`` training on other batches than ``batch_of``'s:
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
from ngrok_jax._src.training.presets import get_preset
from ngrok_jax._src.training.seed_step import batch_of
from ngrok_jax._src.training.train import evaluate
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
  params = _torch_to_flax(ref, prefix + "init/", cfg.depth)
  # the model the configuration builds has the reference's tensors
  ours = jax.eval_shape(tr.model.init, jax.random.PRNGKey(0),
                        jnp.zeros((1, tr.task.seq_len), jnp.int32))
  assert jax.tree.structure(ours) == jax.tree.structure(params)
  assert [a.shape for a in jax.tree.leaves(ours)] == [
      a.shape for a in jax.tree.leaves(params)]
  amp = (_amp_to_flax(ref, prefix + "amp_init/", 3) if tr.has_meta else None)
  s = tr.seed_state(params, amp)  # the config's hyperparameters
  outer = ref[prefix + "outer_rows"]
  ox, oy = jnp.asarray(outer[:, :-1]), jnp.asarray(outer[:, -1])
  step = jax.jit(tr.batch_step)

  @jax.jit
  def preclip_norm(s, x, y, w):
    g = jax.grad(tr.loss_fn)(s.params, x, y, w)
    return optax.tree.norm(tr.transform_gradient(s, g))

  seen = dict(loss=[], preclip=[], outer_loss=[], meta_steps=[], states=[])
  for i, (x, y, w) in enumerate(_ref_batches(ref, prefix)):
    if not tr.has_meta:  # NeuralGrok's (compiled separately) is 0.2 sqrt(29)
      seen["preclip"].append(float(preclip_norm(s, x, y, w)))
    s, out = step(s, x, y, w, ox, oy, i)
    seen["loss"].append(float(out["loss"]))
    if np.isfinite(float(out["outer_loss"])):
      seen["meta_steps"].append(i + 1)
      seen["outer_loss"].append(float(out["outer_loss"]))
    seen["states"].append(s)
  return tr, s, seen


@pytest.fixture(scope="module")
def traces(ref):
  """prefix -> the library's trace (computed once per module)."""
  cache = {}

  def get(prefix):
    if prefix not in cache:
      with jax.enable_x64(True):
        cache[prefix] = _run(ref, prefix)
    return cache[prefix]
  return get


@pytest.mark.parametrize("prefix", list(RUNS))
def test_trace(ref, traces, prefix):
  tr, s, seen = traces(prefix)
  with jax.enable_x64(True):
    if prefix != "coupled_":
      # the clip acted, in the reference: the norm it clipped was above 1
      # (0.2 * sqrt(29) = 1.077) and the logged norm after it is 1
      pre = ref[prefix + "preclip_norm"]
      assert np.all(pre > 1.05), pre
      np.testing.assert_allclose(ref[prefix + "grad_norm"], 1.0, rtol=1e-5)
      assert tr.config.hparams()["clip"] == 1.0
      if seen["preclip"]:  # rescaling: the library's clip sees the same
        np.testing.assert_allclose(seen["preclip"], pre, rtol=RTOL)
    else:  # unclipped, coupled decay: the logged norm is the raw gradient's
      assert prefix + "preclip_norm" not in ref
      assert tr.config.hparams()["clip"] == float("inf")
      assert tr.config.hparams()["wd"] == 1e-2
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


def test_evaluation(ref, traces):
  """``ngrok_jax.train.evaluate`` (a user's run's evaluation) on the traced
  weights after every epoch, on each of the reference's test batches and
  averaged over them as the reference averages (equal weights), against the
  reference's ``eval_model``: the test loss and accuracy (Adam with coupled
  decay; the evaluation does not depend on the method)."""
  prefix = "coupled_"
  tr, _, seen = traces(prefix)
  inner, test = ref[prefix + "inner_rows"], ref[prefix + "test_rows"]
  assert len(ref[prefix + "outer_rows"]) == 0  # the baseline's split
  # the reference's two test batches, 512 examples and the short rest, as
  # the library's test and outer splits: one program evaluates both
  first, second = ref[prefix + "test_batch_sizes"]
  assert first == 512 and first + second == len(test)
  rows = np.concatenate([inner, test])
  n = len(inner)
  data = nj.Data(jnp.asarray(rows[:, :-1]), jnp.asarray(rows[:, -1]),
                 jnp.arange(n)[None], jnp.arange(n + first, len(rows))[None],
                 jnp.arange(n, n + first)[None])
  per_epoch = int(np.sum(ref[prefix + "batch_epoch"] == 0))
  with jax.enable_x64(True):
    for epoch in range(len(ref[prefix + "epoch_test_loss"])):
      s = seen["states"][(epoch + 1) * per_epoch - 1]
      state = nj.TrainState(jnp.asarray((epoch + 1) * per_epoch, jnp.int32),
                            jax.tree.map(lambda a: a[None], s))
      m = evaluate(tr.config, state, data)
      # the reference's eval_model: the mean of the batches' means
      loss = (float(m["test/loss"][0]) + float(m["outer/loss"][0])) / 2
      acc = (float(m["test/acc"][0]) + float(m["outer/acc"][0])) / 2
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
  if prefix == "coupled_":
    # these are the batches a user's train_steps trains on: its losses over
    # an epoch boundary are batch_step's on them
    ox, oy = data.inputs[data.outer[0]], data.labels[data.outer[0]]
    s, step = jax.tree.map(lambda a: a[0], state.seeds), jax.jit(tr.batch_step)
    losses = []
    for i in range(3):
      s, out = step(s, *draw(i), ox, oy, i)
      losses.append(float(out["loss"]))
    _, out = tr.train_steps(state, data, 3)
    np.testing.assert_allclose(np.asarray(out["loss"])[:, 0], losses,
                               rtol=1e-5)
