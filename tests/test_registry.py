"""ngrok_jax.registry: one record per method, read by the config, the
training step, the evaluation, the presets and experiments.tune."""
import glob
import math
import os
import re

import pytest

import ngrok_jax as nj
from experiments import tune
from ngrok_jax._src.training import config, presets
from ngrok_jax._src.optim import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_choices_and_constants_come_from_the_records():
  names = registry.method_names()
  assert nj.METHODS == config.METHODS == names
  assert set(config.AMPLIFIER_METHODS) == {
      m for m in names if registry.get_method(m).uses_amplifier}
  assert set(config.CLIPPED_METHODS) == {
      m for m in names if registry.get_method(m).clipped}
  assert set(config.DECOUPLED_METHODS) == {
      m for m in names if not registry.get_method(m).coupled_decay}
  with pytest.raises(ValueError, match="unknown method 'sgd'; valid"):
    registry.get_method("sgd")


def test_hparam_defaults_follow_the_records(tiny_config):
  for rec in registry.RECORDS:
    hp = tiny_config(method=rec.name).hparams()
    assert hp["wd"] == rec.default("wd")
    assert hp["lamb"] == rec.default("lamb")
    assert hp["clip"] == (1.0 if rec.clipped else math.inf)
    # explicit values win over the record's defaults
    over = tiny_config(method=rec.name, wd=0.25, clip=2.0).hparams()
    assert (over["wd"], over["clip"]) == (0.25, 2.0)
  assert registry.get_method("adamw").default("wd") == 1.0
  assert registry.get_method("grokfast-ma").default("lamb") == 5.0


def test_properties_drive_outer_split_and_meta_checks(tiny_config):
  for rec in registry.RECORDS:
    cfg = tiny_config(method=rec.name)
    assert cfg.record is rec
    assert cfg.pools_outer == (not rec.needs_outer_batch)
    if rec.needs_outer_batch:
      with pytest.raises(ValueError, match="meta_every"):
        tiny_config(method=rec.name, meta_every=0).validate()
    else:
      tiny_config(method=rec.name, meta_every=0).validate()
  ng = registry.get_method("neuralgrok")
  assert ng.update_args == registry.META_UPDATE_ARGS and ng.learns_amplifier
  frozen = registry.get_method("neuralgrok-frozen")
  assert frozen.needs_trained_amplifier and not frozen.needs_outer_batch


def test_presets_and_tune_read_the_records():
  paper = presets.get_preset("paper-add")["method_config"]
  for rec in registry.RECORDS:
    if rec.published:
      assert paper[rec.name] == dict(rec.published)
  quick = presets.get_preset("quick")
  # the main job is a fair demo: NeuralGrok, its rescaling ablation and
  # Adam, each at the reference's coupled wd (the paper-size baseline's)
  assert quick["methods"] == ["neuralgrok", "rescale", "adam"]
  assert {m: quick["method_config"][m] for m in quick["methods"]} == {
      m: {"wd": presets.get_preset("paper-add")["config"]["wd"]}
      for m in quick["methods"]}
  assert set(quick["method_config"]) == {
      r.name for r in registry.RECORDS if r.coupled_decay and not r.published}
  assert tune.DEFAULT_METHODS == tuple(
      r.name for r in registry.RECORDS if r.tunable)
  assert "neuralgrok-frozen" not in tune.DEFAULT_METHODS
  for m in tune.DEFAULT_METHODS:
    assert tune.default_grid(m) == dict(registry.get_method(m).grid)
  with pytest.raises(ValueError, match="no tuning grid"):
    tune.default_grid("neuralgrok-frozen")


# A method compared with one of the method names, or a prefix test on it.
COMPARE = re.compile(r"""method\s*(==|!=|(not\s+)?in)\s*(.*)""")
QUOTED = re.compile(r"""["']([\w-]+)["']""")


def _name_tests(line):
  if re.search(r"method\.startswith\(", line):
    return True
  m = COMPARE.search(line)
  return bool(m) and any(q in registry.method_names()
                         for q in QUOTED.findall(m.group(3)))


def test_name_test_pattern():
  assert _name_tests('  if cfg.method == "neuralgrok":')
  assert _name_tests("if m.method in ('adamw', 'muon'):")
  assert _name_tests('elif method.startswith("grokfast"):')
  assert not _name_tests('    if self.method == "dense":')
  assert not _name_tests('  if cfg.record.needs_outer_batch:')


def test_no_module_outside_the_registry_matches_method_names():
  files = [f for f in glob.glob(os.path.join(ROOT, "ngrok_jax", "**", "*.py"),
                     recursive=True) +
           glob.glob(os.path.join(ROOT, "experiments", "*.py"))
           if os.path.basename(f) != "registry.py"]
  hits = []
  for path in files:
    with open(path) as f:
      for i, line in enumerate(f, 1):
        if _name_tests(line):
          hits.append(f"{os.path.relpath(path, ROOT)}:{i}: {line.strip()}")
  assert not hits, "\n".join(hits)


def test_the_records_say_which_config_fields_only_some_methods_read():
  """``options``: TrainConfig fields, each read by some methods only (the
  command line refuses one that no chosen method reads); the amplifier's
  fields belong to the amplifier methods, the meta step's to NeuralGrok."""
  import dataclasses
  from ngrok_jax._src.training.config import TrainConfig
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  for r in registry.RECORDS:
    assert set(r.options) <= fields, (r.name, set(r.options) - fields)
  by = {r.name: set(r.options) for r in registry.RECORDS}
  assert {"amp_hidden", "c"} <= by["neuralgrok-frozen"] and "c" in by[
      "rescale"] and "meta_lr" not in by["neuralgrok-frozen"]
  assert by["grokfast-ma"] == {"window", "lamb"} and by["adam"] == set()
  assert {"meta_every", "meta_lr", "lookahead"} <= by["neuralgrok"]
  every = set().union(*by.values())
  assert not every & {"lr", "wd", "clip", "task", "p", "depth", "dim"}
