"""Smoke test: ``python -m experiments.benchmark --quick`` writes valid
records."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHATS = {"adam_step", "inner_step", "meta_step", "amortised_step", "compile"}


def test_quick_benchmark_writes_json_records(tmp_path):
  out = tmp_path / "bench.json"
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS",
                                                        "cpu"))
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--quick", "--configs", "a+b", "--seeds", "1", "--repeats", "1",
       "--steps", "3", "--json", str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| config | S |" in proc.stdout  # the table
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
  from ngrok_jax.amplifier import Amplifier

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
  from ngrok_jax.train import TrainConfig
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
  files += glob.glob(os.path.join(ROOT, "docs", "*.md"))
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


def test_reference_side_by_side(tmp_path):
  """--reference: the library's NeuralGrok/Adam ratio at the paper-add
  recipe and a reference (here a stand-in with the reference's entry
  point ``run.run``) timed per seed-step, side by side."""
  src = tmp_path / "src"
  src.mkdir()
  (src / "run.py").write_text(STUB_RUN)
  out = tmp_path / "ref.json"
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS",
                                                        "cpu"))
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--reference",
       "--quick", "--no-steps", "--repeats", "1", "--reference-seeds", "1",
       "--reference-src", str(src), "--reference-python", sys.executable,
       "--reference-steps", "12", "--json", str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "library S=1: NeuralGrok amortised" in proc.stdout
  assert "NeuralGrok/Adam = " in proc.stdout
  assert "reference neuralgrok: " in proc.stdout
  assert "faster per seed-step (goal >= 10x" in proc.stdout
  recs = {r["what"]: r for r in json.loads(out.read_text())}
  assert {"library_neuralgrok", "library_adam", "reference_neuralgrok",
          "reference_adam"} <= set(recs)
  ref = recs["reference_neuralgrok"]
  assert ref["meta_every"] == 4 and ref["c"] == 0.2  # the paper-add preset
  assert "--inner_loop_steps 4" in ref["argv"] and "--neuralgrok" in ref["argv"]
  assert "--neuralgrok" not in recs["reference_adam"]["argv"]
  assert ref["steps"] == 12 and ref["warmup_steps"] == 4
  # the stand-in sleeps 20 ms per NeuralGrok step, 10 ms per Adam step
  assert 0.019 < ref["s_per_step"] < 0.2, ref
  assert 0.009 < recs["reference_adam"]["s_per_step"] < 0.2
  lib = recs["library_neuralgrok"]["s_per_seed_step"]
  assert ref["ratio_to_library"] == pytest.approx(ref["s_per_step"] / lib)
