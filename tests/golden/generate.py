"""Generate the golden trace of the authors' PyTorch reference (NeuralGrok).

Runs the reference code of "NeuralGrok" (arXiv 2504.17243), repository
Blackzxy/NeuralOptGrok at commit a7490be (branch neuralgrad; src/dataset.py,
model.py, train.py, run.py), in float64 on the CPU, through its own entry point
``run.run(args)``, and writes what it computes to two fixtures, each an
``.npz`` (the arrays; np.savez_compressed) and a ``.json`` (commit, command,
configs, key list):

  tests/golden/reference_a7490be         depth 1, d 16: NeuralGrok and the
                                          Adam baseline; task layouts; the
                                          initialisation statistics
  tests/golden/reference_a7490be_public  depth 2, d 8 (29 tensors, so the
                                          clip at 1 acts: 0.2 * sqrt(29) > 1):
                                          NeuralGrok, the rescaling ablation,
                                          Adam with coupled decay 0.01; every
                                          batch's subset indices per epoch

The rescaling ablation (g' = c g / ||g|| per tensor, clipped) has no flag in
the reference: it is the reference's NeuralGrok inner path with the
amplifier's output layer set to zero (constant scores, so the softmax over a
tensor is uniform and c * (g/n) / ||g/n|| = c g / ||g||), no meta step (T is
above the budget) and the baseline's split (``p_outer=0``, 50% training data,
as this library trains methods without a meta step).  Those three settings
are the only changes, all made from outside the reference's code.

The reference modules are imported, never copied.  The functions they look up
at call time (``run.train``, ``train.amp_update``, ``train.eval_model``,
``train.F``) are wrapped to observe, not change, the computation; ``wandb``,
``tqdm`` and ``matplotlib`` are replaced by inert stubs (the environment need
not have them).  torch is used only here, never by the test suite.

Regenerate (with a checkout of the reference, e.g.
``git -C <repo> archive a7490be src | tar -x -C /tmp/ngref``):

  NEURALOPTGROK_SRC=/tmp/ngref/src /tmp/torchenv/bin/python tests/golden/generate.py [NAME ...]

NAME: the fixtures to write (default: both).  torch 2.13.0 (CPU build,
``pip install torch==2.13.0 numpy``) regenerates them to ~1e-16 (the key
biases of attention, whose exact gradient is 0, to ~1e-4).
"""
import contextlib
import hashlib
import importlib.machinery
import io
import json
import os
import sys
import types

import numpy as np

COMMIT = "a7490be2bccf9ba1690283378915e622b932cb8e"
BLOBS = {  # git blob ids of the reference files at COMMIT
    "dataset.py": "e796ca936bf503082d9d8210a9267dcb1eb5e4fb",
    "model.py": "33456d44ae97f6eb71fcbc8c52fcb173e91f1914",
    "run.py": "8d4e1516d7efc4036425fa35eb55220bde9f2edd",
    "train.py": "72e6894d4941f28078f324f1b3927989d01c7f4e",
}
COMMAND = ("NEURALOPTGROK_SRC=/tmp/ngref/src /tmp/torchenv/bin/python "
           "tests/golden/generate.py")
SETUP = ["git -C <NeuralOptGrok clone> archive a7490be src | tar -x -C /tmp/ngref",
         "python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install "
         "torch==2.13.0 numpy"]
HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = ("--task_type a+b --p 37 --n_layers 1 --dim 16 --n_heads 4 --lr 1e-3 "
          "--weight_decay 1e-3 --seed 0 --device cpu --budget 24").split()
RUNS = {  # prefix -> (argv, expected steps, expected 1-indexed meta steps)
    "ng_": (COMMON + ["--neuralgrok", "--neural_hidden_dims", "16,16",
                      "--inner_loop_steps", "4"], 24, [4, 8, 12, 16, 20, 24]),
    "base_": (COMMON, 24, []),
}
PUBLIC = ("--task_type a+b --p 37 --n_layers 2 --dim 8 --n_heads 4 --lr 1e-3 "
          "--seed 0 --device cpu --budget 16").split()
PUBLIC_RUNS = {  # prefix -> (argv, steps, meta steps, variant)
    "clip_": (PUBLIC + ["--weight_decay", "1e-3", "--neuralgrok",
                        "--neural_hidden_dims", "8,8", "--inner_loop_steps",
                        "4"], 16, [4, 8, 12, 16], None),
    "rescale_": (PUBLIC + ["--weight_decay", "1e-3", "--neuralgrok",
                           "--neural_hidden_dims", "8,8",
                           "--inner_loop_steps", "1000"], 16, [], "rescale"),
    "coupled_": (PUBLIC + ["--weight_decay", "1e-2"], 16, [], None),
}
VARIANTS = {
    "rescale": "the rescaling ablation: the amplifier's output layer "
               "(network.<last>) set to 0 after its construction (uniform "
               "softmax: G(g) = c g / ||g|| per tensor), no meta step "
               "(--inner_loop_steps above --budget), get_dataloader called "
               "with p_outer=0 (the baseline's 50% split)",
}
CONVENTIONS = {
    "rows": "int64 (n, L+1) token rows as the reference's DataLoader yields them"
            " (batch-major; answer last); model input = row[:-1], L = seq_len - 1",
    "<p>batches": "every inner batch in step order, concatenated; split by"
                  " <p>batch_sizes (the epoch's last batch is short)",
    "<p>loss": "step training loss (first 'inner' F.cross_entropy of the step)",
    "<p>grad_norm": "wandb 'grad_norm': global norm of param.grad after the"
                    " amplifier and clipping, before the optimizer step",
    "<p>weight_norm": "wandb 'weight_norm': global norm of the weights used in"
                      " the step's forward pass (before its update)",
    "<p>meta_steps": "1-indexed steps after whose optimizer step amp_update ran",
    "<p>outer_loss": "amp_update's return value",
    "<p>meta_copy_loss": "look-ahead copy's loss on the step's inner batch"
                         " (weights after that step's update)",
    "<p>amp_after_meta/<name>": "amplifier state right after each amp_update",
    "<p>epoch_*": "wandb per-epoch values (means over batches, equal weights)",
    "<p>inner_rows/outer_rows/test_rows": "random_split subsets in subset order",
    "initstats*": "[mean, std(ddof=0), min, max, numel, frac==0, frac==1]",
    "<p>preclip_norm": "the value clip_grad_norm_ returns: the global norm"
                       " of the amplified gradient before the clip at 1",
    "<p>batch_index": "public fixture: each inner batch's rows as positions"
                      " in <p>inner_rows (the DataLoader's subset indices),"
                      " in step order; split by <p>batch_sizes",
    "<p>batch_epoch": "the epoch (0-indexed DataLoader pass) of each batch",
}
LAYOUT = [("a+b", 5), ("a-b", 5), ("axb", 5), ("axa-b", 5), ("axc+bxd-e", 3)]


def source_dir():
  src = os.environ.get("NEURALOPTGROK_SRC", "")
  for name, blob in BLOBS.items():
    path = os.path.join(src, name)
    data = open(path, "rb").read() if os.path.isfile(path) else b""
    if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != blob:
      print(f"generate.py: NEURALOPTGROK_SRC={src!r} must be the reference's"
            f" src/ at commit {COMMIT[:7]} ({name} missing or different)",
            file=sys.stderr)
      sys.exit(2)
  return src


def install_stubs():
  """Inert wandb/tqdm/matplotlib modules; wandb records what is logged."""
  wandb = types.ModuleType("wandb")
  wandb.logs = []
  wandb.init = lambda **kw: None
  wandb.log = lambda d, commit=None: wandb.logs.append(dict(d))
  tqdm = types.ModuleType("tqdm")
  tqdm.tqdm = lambda it, *a, **kw: it
  mpl, plt = types.ModuleType("matplotlib"), types.ModuleType("matplotlib.pyplot")
  mpl.pyplot = plt
  for mod in (wandb, tqdm, mpl, plt):  # torch._dynamo find_spec()s them
    mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    sys.modules[mod.__name__] = mod
  return wandb


def state(module):
  return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def subset_rows(loader):
  """A DataLoader's Subset rows, in subset (= unshuffled loader) order."""
  sub = loader.dataset
  return sub.dataset.data[:, list(sub.indices)].T.numpy().copy()


class Recorder:
  """Iterable over a loader that stores every batch it yields, per pass."""

  def __init__(self, loader, trace):
    self.loader, self.trace, self.passes = loader, trace, []

  def __len__(self):
    return len(self.loader)

  def __iter__(self):
    self.passes.append([])
    for batch in self.loader:
      self.passes[-1].append(batch.numpy().copy())
      if self is self.trace.inner:
        self.trace.step += 1
      yield batch


class Trace:
  """What one run of run.run records, filled in by the wrappers below."""

  def __init__(self):
    self.phase, self.step, self.ce, self.meta, self.clip = "inner", 0, [], [], []
    self.inner = self.outer = self.test = self.amp = None


def run_reference(ref, argv, wandb, variant=None):
  trace, wandb.logs[:] = Trace(), []
  orig_train, orig_amp_update, orig_eval = ref.run.train, ref.train.amp_update, ref.train.eval_model
  real_F = ref.train.F
  orig_amp, orig_loaders = ref.run.NeuralAmplifier, ref.run.get_dataloader
  torch = ref.train.torch
  orig_clip = torch.nn.utils.clip_grad_norm_

  def clip(*a, **kw):  # records the global norm it clips (its return value)
    total = orig_clip(*a, **kw)
    trace.clip.append((trace.step, total.item(), kw.get("max_norm")))
    return total

  def constant_amp(*a, **kw):
    amp = orig_amp(*a, **kw)
    with torch.no_grad():
      last = amp.network[-2]  # the output Linear (the Softmax follows it)
      last.weight.zero_()
      last.bias.zero_()
    return amp

  def baseline_split(dataset, p_train=0.5, p_outer=0.01, **kw):
    return orig_loaders(dataset, p_train=p_train, p_outer=0, **kw)

  class FProxy(types.ModuleType):
    def __getattr__(self, name):
      return getattr(real_F, name)

    def cross_entropy(self, *a, **kw):
      out = real_F.cross_entropy(*a, **kw)
      trace.ce.append((trace.phase, trace.step, out.item()))
      return out

  def in_phase(fn, phase):
    def wrapped(*a, **kw):
      trace.phase = phase
      try:
        return fn(*a, **kw)
      finally:
        trace.phase = "inner"
    return wrapped

  def amp_update(*a, **kw):
    inner_batch = kw["inner_batch"].numpy().T
    assert np.array_equal(inner_batch, trace.inner.passes[-1][-1])
    loss = in_phase(orig_amp_update, "meta")(*a, **kw)
    trace.meta.append((trace.step, loss, state(trace.amp)))
    return loss

  def train(args, inner_loader, outer_loader, test_loader, model, amp=None, **kw):
    trace.rows = {n: subset_rows(l) for n, l in
                  [("inner", inner_loader), ("outer", outer_loader), ("test", test_loader)]}
    trace.init, trace.amp = state(model), amp
    trace.amp_init = state(amp) if amp is not None else None
    trace.inner = Recorder(inner_loader, trace)
    trace.outer, trace.test = Recorder(outer_loader, trace), Recorder(test_loader, trace)
    out = orig_train(args, trace.inner, trace.outer, trace.test, model, amp, **kw)
    trace.final = state(model)
    trace.amp_final = state(amp) if amp is not None else None
    return out

  ref.run.train, ref.train.amp_update = train, amp_update
  ref.train.eval_model, ref.train.F = in_phase(orig_eval, "eval"), FProxy("F")
  torch.nn.utils.clip_grad_norm_ = clip
  if variant == "rescale":
    ref.run.NeuralAmplifier, ref.run.get_dataloader = constant_amp, baseline_split
  else:
    assert variant is None, variant
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      ref.run.run(ref.run.parser.parse_args(argv))
  finally:
    ref.run.train, ref.train.amp_update = orig_train, orig_amp_update
    ref.train.eval_model, ref.train.F = orig_eval, real_F
    ref.run.NeuralAmplifier, ref.run.get_dataloader = orig_amp, orig_loaders
    torch.nn.utils.clip_grad_norm_ = orig_clip
  return trace


def record_run(prefix, trace, logs, n_steps, meta_steps, public=False):
  out = {}
  for tag, sd in [("init", trace.init), ("final", trace.final),
                  ("amp_init", trace.amp_init), ("amp_final", trace.amp_final)]:
    out.update({f"{prefix}{tag}/{k}": v for k, v in (sd or {}).items()})
  if trace.meta:
    for k in trace.meta[0][2]:
      out[f"{prefix}amp_after_meta/{k}"] = np.stack([m[2][k] for m in trace.meta])
  batches = [b for p in trace.inner.passes for b in p]
  assert trace.step == len(batches) == n_steps, (trace.step, n_steps)
  out[f"{prefix}batch_sizes"] = np.array([len(b) for b in batches], np.int64)
  if public:  # rows as the DataLoader's subset indices (rows are distinct)
    where = {tuple(r): i for i, r in enumerate(trace.rows["inner"].tolist())}
    assert len(where) == len(trace.rows["inner"])
    out[prefix + "batch_index"] = np.array(
        [where[tuple(r)] for b in batches for r in b.tolist()], np.int64)
    out[prefix + "batch_epoch"] = np.array(
        [e for e, p in enumerate(trace.inner.passes) for _ in p], np.int64)
    assert np.array_equal(trace.rows["inner"][out[prefix + "batch_index"]],
                          np.concatenate(batches))
  else:
    out[f"{prefix}batches"] = np.concatenate(batches).astype(np.int64)
  if trace.clip:  # NeuralGrok's inner path: one clip per step, at 1
    assert [c[0] for c in trace.clip] == list(range(1, n_steps + 1))
    assert all(c[2] == 1.0 for c in trace.clip)
    out[prefix + "preclip_norm"] = np.array([c[1] for c in trace.clip])
  inner_ce = [(s, v) for ph, s, v in trace.ce if ph == "inner"]
  assert [s for s, _ in inner_ce] == list(range(1, n_steps + 1))
  out[f"{prefix}loss"] = np.array([v for _, v in inner_ce])
  steps = [d for d in logs if "grad_norm" in d]
  epochs = [d for d in logs if "test_loss" in d]
  assert [d["global_step"] for d in steps] == list(range(1, n_steps + 1))
  assert len(epochs) == len(trace.inner.passes) == len(trace.test.passes)
  for key in ("grad_norm", "weight_norm"):
    out[prefix + key] = np.array([d[key] for d in steps], np.float64)
  for key in ("test_loss", "test_acc", "train_loss", "train_acc"):
    out[f"{prefix}epoch_{key}"] = np.array([d[key] for d in epochs], np.float64)
  assert [m[0] for m in trace.meta] == meta_steps, [m[0] for m in trace.meta]
  out[prefix + "meta_steps"] = np.array(meta_steps, np.int64)
  out[prefix + "outer_loss"] = np.array([m[1] for m in trace.meta], np.float64)
  first_meta = {}
  for ph, s, v in trace.ce:
    if ph == "meta":
      first_meta.setdefault(s, v)
  out[prefix + "meta_copy_loss"] = np.array([first_meta[s] for s in meta_steps], np.float64)
  width = trace.rows["inner"].shape[1]
  for name, rec in [("outer", trace.outer), ("test", trace.test)]:
    for p in rec.passes:  # unshuffled: every pass yields the subset in order
      assert np.array_equal(np.concatenate(p or [np.zeros((0, width), np.int64)]),
                            trace.rows[name]), name
  out[prefix + "inner_rows"] = trace.rows["inner"].astype(np.int64)
  out[prefix + "outer_rows"] = trace.rows["outer"].astype(np.int64)
  out[prefix + "test_rows"] = trace.rows["test"].astype(np.int64)
  out[prefix + "test_batch_sizes"] = np.array(
      [len(b) for b in trace.test.passes[0]], np.int64)
  return out


def init_stats(module, prefix):
  stats = {}
  for k, v in module.state_dict().items():
    a = v.detach().numpy().astype(np.float64).ravel()
    stats[f"{prefix}/{k}"] = np.array([a.mean(), a.std(), a.min(), a.max(), a.size,
                                       np.mean(a == 0), np.mean(a == 1)])
  return stats


def main(names):
  src = source_dir()
  wandb = install_stubs()
  sys.dont_write_bytecode = True
  sys.path.insert(0, src)
  import torch
  torch.set_num_threads(1)
  torch.set_default_dtype(torch.float64)
  import dataset, model, train, run  # the reference modules  # noqa: E401
  ref = types.SimpleNamespace(dataset=dataset, model=model, train=train, run=run)
  for m in (dataset, model, train, run):
    assert os.path.dirname(os.path.abspath(m.__file__)) == os.path.abspath(src), m
  fixtures = {"reference_a7490be": build_main, "reference_a7490be_public": build_public}
  unknown = set(names) - set(fixtures)
  if unknown:
    print(f"generate.py: unknown fixture(s) {sorted(unknown)}; valid: "
          f"{', '.join(fixtures)}", file=sys.stderr)
    sys.exit(2)
  for name in names or list(fixtures):
    arrays, meta = fixtures[name](ref, wandb)
    write(name, arrays, meta, torch)


def build_main(ref, wandb):
  dataset, model, run = ref.dataset, ref.model, ref.run
  torch = ref.train.torch
  arrays = {}
  for task, p in LAYOUT:
    ds, seq_len = dataset.get_dataset(task, p)
    arrays[f"layout/{task}"] = ds.data.T.numpy().astype(np.int64)
    arrays[f"layout_seq_len/{task}"] = np.array(seq_len, np.int64)
    assert seq_len == ds.data.shape[0], (task, seq_len)
  torch.manual_seed(0)
  arrays.update(init_stats(model.Decoder(dim=128, num_layers=2, num_heads=4,
                                         num_tokens=99, seq_len=5), "initstats"))
  torch.manual_seed(0)
  arrays.update(init_stats(model.NeuralAmplifier(hidden_dims=[128, 128]), "initstats_amp"))
  configs = {}
  for prefix, (argv, n_steps, meta_steps) in RUNS.items():
    trace = run_reference(ref, argv, wandb)
    arrays.update(record_run(prefix, trace, wandb.logs, n_steps, meta_steps))
    configs[prefix] = {"argv": " ".join(argv), "args": vars(run.parser.parse_args(argv)),
                       "n_steps": n_steps, "meta_steps": meta_steps}
  meta = {
      "runs": configs,
      "initstats": {"decoder": dict(dim=128, num_layers=2, num_heads=4, num_tokens=99,
                                    seq_len=5, seed=0),
                    "amplifier": dict(hidden_dims=[128, 128], seed=0),
                    "columns": ["mean", "std (ddof=0)", "min", "max", "numel",
                                "fraction == 0", "fraction == 1"]},
      "layout": dict(LAYOUT),
  }
  return arrays, meta


def build_public(ref, wandb):
  arrays, configs = {}, {}
  for prefix, (argv, n_steps, meta_steps, variant) in PUBLIC_RUNS.items():
    trace = run_reference(ref, argv, wandb, variant)
    arrays.update(record_run(prefix, trace, wandb.logs, n_steps, meta_steps,
                             public=True))
    configs[prefix] = {"argv": " ".join(argv),
                       "args": vars(ref.run.parser.parse_args(argv)),
                       "n_steps": n_steps, "meta_steps": meta_steps,
                       "variant": VARIANTS.get(variant)}
  return arrays, {"runs": configs}


def write(name, arrays, meta, torch):
  out = os.path.join(HERE, name)
  assert all(a.dtype in (np.float64, np.int64) for a in arrays.values())
  np.savez_compressed(out + ".npz", **arrays)
  meta = {
      "reference": "https://github.com/Blackzxy/NeuralOptGrok",
      "commit": COMMIT, "files": BLOBS,
      "command": f"{COMMAND} {name}", "setup": SETUP,
      "torch": torch.__version__, "numpy": np.__version__,
      "python": sys.version.split()[0], "dtype": "float64 (torch default dtype)",
      **meta, "conventions": CONVENTIONS,
      "keys": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(arrays.items())},
  }
  with open(out + ".json", "w") as f:
    json.dump(meta, f, indent=1, sort_keys=False)
    f.write("\n")
  print(f"wrote {out}.npz ({os.path.getsize(out + '.npz')} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
  main(sys.argv[1:])
