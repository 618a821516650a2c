"""Smoke test: ``python -m experiments.benchmark --quick`` writes valid
records (its ``main``, in-process)."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHATS = {"adam_step", "inner_step", "meta_step", "amortised_step", "compile"}


def test_quick_benchmark_writes_json_records(tmp_path, capsys):
  """In-process (a subprocess would pay the JAX import once more; the
  command line is the same ``main``)."""
  from experiments import benchmark
  out = tmp_path / "bench.json"
  benchmark.main(["--quick", "--configs", "a+b", "--seeds", "1",
                  "--repeats", "1", "--steps", "3", "--json", str(out)])
  assert "| config | S |" in capsys.readouterr().out  # the table
  records = json.loads(out.read_text())
  assert isinstance(records, list) and records
  for r in records:
    assert {"config", "seeds", "what", "seconds", "device"} <= set(r), r
    assert r["config"] in ("a+b", "a*c+b*d-e")
    assert isinstance(r["seeds"], int) and r["seeds"] >= 1
    assert isinstance(r["device"], str) and r["device"]
  timed = {r["what"]: r for r in records if r["seconds"] is not None}
  assert WHATS <= set(timed), sorted(timed)
  for what in WHATS - {"meta_step"}:  # meta_step is a difference of medians
    assert timed[what]["seconds"] > 0, timed[what]
  assert timed["amortised_step"]["peak_bytes"] > 0


def test_amp_chunk_equals_dense_and_bounds_memory():
  """The memory option: same values and gradients, O(chunk*width) temps."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from ngrok_jax._src.optim.amplifier import Amplifier

  x = jax.random.normal(jax.random.PRNGKey(1), (1000,)) * 1e-2
  full, chunked = Amplifier((16, 8), "dense"), Amplifier((16, 8), "dense",
                                                         chunk=128)
  phi = full.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
  np.testing.assert_allclose(chunked.apply(phi, x), full.apply(phi, x),
                             rtol=1e-6, atol=1e-7)
  loss = lambda amp: (lambda p: jnp.sum(jnp.sin(amp.apply(p, x)) * x))
  g_full = jax.grad(loss(full))(phi)
  g_chunk = jax.grad(loss(chunked))(phi)
  for a, b in zip(jax.tree.leaves(g_chunk), jax.tree.leaves(g_full)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

  # compile-only memory analysis: 200k components, width 256
  big = jax.ShapeDtypeStruct((200_000,), jnp.float32)
  wide = Amplifier((256,), "dense")
  phi = wide.init(jax.random.PRNGKey(0), jnp.zeros((1,)))

  def temp(amp):
    f = jax.jit(jax.grad(lambda p, v: jnp.sum(amp.apply(p, v) * v)))
    m = f.lower(phi, big).compile().memory_analysis()
    if m is None:  # backend without memory analysis
      return None
    return m.temp_size_in_bytes
  t_full = temp(wide)
  t_chunk = temp(Amplifier((256,), "dense", chunk=4096))
  if t_full is not None:
    assert t_full > 200_000 * 256 * 4  # at least one components x width
    assert t_chunk < t_full / 10, (t_chunk, t_full)


def test_amp_chunk_config_is_validated():
  import pytest
  from ngrok_jax._src.training.train import TrainConfig
  TrainConfig(amp_chunk=None).validate()
  TrainConfig(amp_method="dense", amp_chunk=4096).validate()
  for bad in (0, -1, 2.5, True):
    with pytest.raises(ValueError, match="amp_chunk"):
      TrainConfig(amp_chunk=bad).validate()


def test_markdown_tables_have_matching_separator_rows():
  """Every table's separator row has as many cells as its header (a
  mismatch keeps GitHub from rendering the table)."""
  import glob
  import re
  sep = re.compile(r"\|(\s*:?-+:?\s*\|)+")
  ncells = lambda l: len(re.split(r"(?<!\\)\|", l.strip().strip("|")))
  files = [os.path.join(ROOT, f) for f in ("README.md", "BENCHMARK.md",
                                           "RESULTS.md")]
  files += glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                     recursive=True)  # docs/archive/ too
  bad, seen = [], 0
  for path in files:
    with open(path) as f:
      lines = f.read().splitlines()
    for i in range(1, len(lines)):
      if sep.fullmatch(lines[i].strip()) and lines[i - 1].lstrip().startswith(
          "|"):
        seen += 1
        if ncells(lines[i]) != ncells(lines[i - 1]):
          bad.append(f"{os.path.basename(path)}:{i + 1}")
  assert seen > 5 and not bad, bad


STUB_RUN = '''
import argparse, time
parser = argparse.ArgumentParser()
for a in ("--task_type", "--p", "--n_layers", "--dim", "--n_heads", "--lr",
          "--weight_decay", "--batch_size", "--seed", "--device", "--budget",
          "--neural_hidden_dims", "--inner_loop_steps"):
    parser.add_argument(a)
parser.add_argument("--neuralgrok", action="store_true")
def train(args, inner_loader, outer_loader, test_loader, model, **kw):
    for _ in range(int(args.budget) // len(inner_loader)):
        for batch in inner_loader:
            time.sleep(0.02 if args.neuralgrok else 0.01)
def run(args):
    train(args, [0, 1, 2, 3], None, None, None)
'''


class FakeProgram:
  """Stands in for ``experiments.bench_common.Program`` (whose compiled
  programs, NeuralGrok's included, are exercised by
  test_quick_benchmark_writes_json_records and, at the tiny paper-add size,
  by tests/test_device_check.py): records what it is built with and takes
  5 ms per NeuralGrok step, 2 ms per Adam step, per seed."""
  built = []

  def __init__(self, cfg, num_seeds, steps, seed_group=None):
    self.cfg, self.steps, self.seed_group = cfg, steps, seed_group
    self.seconds = (5e-3 if cfg.method == "neuralgrok" else 2e-3) * num_seeds
    FakeProgram.built.append((cfg, num_seeds, steps, seed_group))

  def run_once(self):
    return self.seconds

  def time(self, repeats, warmup=1):
    return [self.run_once() for _ in range(warmup + repeats)][warmup:]


def test_reference_side_by_side(tmp_path, monkeypatch, capsys):
  """--reference: the library's NeuralGrok/Adam ratio at the paper-add
  recipe and a reference (here a stand-in with the reference's entry
  point ``run.run``, in a subprocess as the authors' code would be) timed
  per seed-step, side by side.  In-process, the library's compiled programs
  replaced by FakeProgram: this checks the wiring (the preset's config,
  the programs built, the records and ratios), not the timings."""
  from experiments import bench_common, benchmark
  from ngrok_jax._src.training.presets import get_preset
  # reference_bench builds its programs through bench_common.Program
  monkeypatch.setattr(bench_common, "Program", FakeProgram)
  monkeypatch.setattr(benchmark, "Program", FakeProgram)
  FakeProgram.built = []
  src = tmp_path / "src"
  src.mkdir()
  (src / "run.py").write_text(STUB_RUN)
  out = tmp_path / "ref.json"
  benchmark.main(
      ["--reference", "--quick", "--no-steps", "--repeats", "1",
       "--reference-seeds", "2", "--reference-src", str(src),
       "--reference-python", sys.executable, "--reference-steps", "12",
       "--json", str(out)])
  stdout = capsys.readouterr().out
  assert "library S=1: NeuralGrok amortised 5.0 ms/step" in stdout
  assert "NeuralGrok/Adam = 2.50 (target <= 1.5: NOT met)" in stdout
  assert "reference neuralgrok: " in stdout
  assert "faster per seed-step (goal >= 10x" in stdout
  # the programs: the paper-add preset (quick size), its T, 2T steps each
  pre = get_preset("paper-add")
  T = pre["config"]["meta_every"]
  built = {(c.method, S): (c, steps, g) for c, S, steps, g in FakeProgram.built}
  assert set(built) == {(m, S) for m in ("neuralgrok", "adam") for S in (1, 2)}
  for (m, S), (c, steps, g) in built.items():
    assert steps == 2 * T and g is None
    assert (c.task, c.p, c.depth, c.dim) == (pre["config"]["task"], 23, 1, 32)
    assert c.meta_every == T and c.c == pre["config"]["c"]
    assert c.lr == {**pre["config"], **pre["method_config"].get(m, {})}["lr"]
  assert built[("neuralgrok", 1)][0].meta_placement == "after"
  recs = {(r["what"], r["seeds"]): r for r in json.loads(out.read_text())}
  assert {("library_neuralgrok", 1), ("library_neuralgrok", 2),
          ("library_adam", 1), ("library_adam", 2), ("reference_neuralgrok", 1),
          ("reference_adam", 1)} <= set(recs)
  for m, t in (("neuralgrok", 5e-3), ("adam", 2e-3)):
    assert recs[(f"library_{m}", 2)]["seconds"] == pytest.approx(2 * t)
    assert recs[(f"library_{m}", 2)]["s_per_seed_step"] == pytest.approx(t)
  ref = recs[("reference_neuralgrok", 1)]
  assert ref["meta_every"] == 4 and ref["c"] == 0.2  # the paper-add preset
  assert "--inner_loop_steps 4" in ref["argv"] and "--neuralgrok" in ref["argv"]
  assert "--neuralgrok" not in recs[("reference_adam", 1)]["argv"]
  assert ref["steps"] == 12 and ref["warmup_steps"] == 4
  # the stand-in sleeps 20 ms per NeuralGrok step, 10 ms per Adam step
  assert 0.019 < ref["s_per_step"] < 0.2, ref
  assert 0.009 < recs[("reference_adam", 1)]["s_per_step"] < 0.2
  assert ref["ratio_to_library"] == pytest.approx(ref["s_per_step"] / 5e-3)
  assert recs[("reference_adam", 1)]["ratio_to_library"] == pytest.approx(
      recs[("reference_adam", 1)]["s_per_step"] / 2e-3)


def test_profile_path_runs(tmp_path, capsys):
  """``--profile`` at the quick size: every piece of one seed's step is
  timed, including the meta objective's look-ahead (an optax chain: its
  update needs the chain's init state; ``None`` crashed with optax 0.2.8)."""
  from experiments import benchmark
  out = tmp_path / "profile.json"
  benchmark.main(["--quick", "--configs", "a+b", "--profile", "--no-steps",
                  "--repeats", "1", "--json", str(out)])
  assert "profile a+b meta_grad:" in capsys.readouterr().out
  records = json.loads(out.read_text())
  profile = {r["what"]: r for r in records}
  for what in ("batch_sampling", "transformer_fwd_bwd", "amplify_total",
               "inner_update_total", "update_with_meta_step",
               "amplifier_scores_grad", "meta_grad", "outer_loss_fwd"):
    assert profile[f"profile/{what}"]["seconds"] > 0, what
    assert len(profile[f"profile/{what}"]["all_seconds"]) == 1


def test_benchmark_times_the_paper_presets():
  """The step-time configurations are today's defaults: the paper-add and
  paper-poly presets (T 4 and T 1, c 0.2), run with the reference's
  placement (BENCHMARK.md's tables were made with them)."""
  from experiments import benchmark
  from ngrok_jax import TrainConfig
  from ngrok_jax.presets import get_preset
  for name, preset in (("a+b", "paper-add"), ("a*c+b*d-e", "paper-poly")):
    assert benchmark.CONFIGS[name] == dict(get_preset(preset)["config"])
  assert benchmark.CONFIGS["a+b"]["meta_every"] == 4
  cfg = TrainConfig(**{**benchmark.CONFIGS["a+b"], "method": "neuralgrok"})
  assert cfg.validate().meta_placement == "after"
  assert benchmark.QUICK_CONFIGS["a+b"]["meta_every"] == 4
