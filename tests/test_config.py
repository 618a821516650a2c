"""The configuration resolves once: :meth:`ngrok_jax.TrainConfig.resolve`
fills in every method default (the values training uses), validates once,
and a run folder's ``config.json`` records every effective value (no
``null`` standing for a default), read back unchanged; folders written
before (with nulls) load with the same values their runs used."""
import dataclasses
import json
import os
import typing

import numpy as np
import pytest

import ngrok_jax as nj
from ngrok_jax._src.running import runner
from ngrok_jax._src.storage import spec as spec_lib
from ngrok_jax._src.training import config as config_lib
from ngrok_jax._src.training import trainer as trainer_lib
from ngrok_jax._src.training.config import (DEFAULTED, HPARAMS, METHODS,
                                            OFF_WHEN_NONE, TrainConfig)
from ngrok_jax._src.training.methods import hparams_of
from run_folders import TINY

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "fixtures")
#: The run spec's own fields whose null is a setting (off), not a default.
SPEC_OFF_WHEN_NONE = ("checkpoint_every", "amplifier", "stop_after")


def _nulls(d, where=""):
  """The paths of every null in a JSON value."""
  if d is None:
    return [where]
  if isinstance(d, dict):
    return [p for k, v in d.items() for p in _nulls(v, f"{where}.{k}")]
  if isinstance(d, list):
    return [p for i, v in enumerate(d) for p in _nulls(v, f"{where}[{i}]")]
  return []


def _allowed_null(path):
  parts = path.strip(".").split(".")
  if len(parts) == 1:
    return parts[0] in SPEC_OFF_WHEN_NONE
  return parts[0] == "configs" and len(parts) == 3 and (
      parts[2] in OFF_WHEN_NONE)


def test_every_optional_field_is_a_default_or_a_setting_of_its_own():
  """A new ``Optional`` field must say what its None means: a default
  (filled in by resolve) or a setting (off)."""
  hints = typing.get_type_hints(TrainConfig)
  optional = {f.name for f in dataclasses.fields(TrainConfig)
              if type(None) in typing.get_args(hints[f.name])}
  assert optional == set(DEFAULTED) | set(OFF_WHEN_NONE)
  assert not set(DEFAULTED) & set(OFF_WHEN_NONE)


@pytest.mark.parametrize("method", METHODS)
def test_resolve_fills_in_exactly_the_values_training_uses(method):
  for given in ({}, {"lr": 3e-3, "wd": 0.25}, {"clip": 2.0, "lamb": 1.5,
                                               "train_on_outer": False}):
    user = TrainConfig(**TINY, method=method, **given)
    cfg = user.resolve()
    assert cfg.resolved and not user.resolved
    assert cfg.hparams() == user.hparams()
    assert {k: getattr(cfg, k) for k in HPARAMS} == user.hparams()
    assert all(type(getattr(cfg, k)) is float for k in HPARAMS)
    assert cfg.pools_outer == user.pools_outer == cfg.train_on_outer
    for k, v in hparams_of(cfg, 2).items():
      np.testing.assert_array_equal(v, hparams_of(user, 2)[k])
    assert cfg.resolve() == cfg and cfg.with_defaults() is cfg
    for k, v in given.items():
      assert getattr(cfg, k) == v
  cfg = TrainConfig(method=method, lr=2e-3, wd=0.5).resolve()
  assert cfg.meta_wd == 0.5 and cfg.lookahead_lr == 2e-3  # the model's


def test_a_spec_of_unresolved_configs_is_refused():
  spec = runner.make_spec(TINY, "adam", 1, 10, 10)
  bad = dataclasses.replace(spec, configs={"adam": TrainConfig(**TINY,
                                                               method="adam")})
  with pytest.raises(ValueError, match="adam.*defaults left as None"):
    bad.validate()


def test_no_null_standing_for_a_default_reaches_config_json():
  """Every method's config.json: the only nulls are settings of their own
  (off), never a default; every field of DEFAULTED holds its value."""
  for m in METHODS:
    kw = dict(amplifier=os.path.join(FIXTURES, "cross_task_v1")) if (
        nj.TrainConfig(method=m).record.needs_trained_amplifier) else {}
    spec = runner.make_spec(TINY, m, 2, 10, 10, **kw)
    d = json.loads(json.dumps(spec.to_dict()))
    bad = [p for p in _nulls(d) if not _allowed_null(p)]
    assert not bad, (m, bad)
    for k in DEFAULTED:
      assert d["configs"][m][k] is not None, (m, k)


def test_a_run_folder_reads_back_the_exact_configuration(tmp_path,
                                                         monkeypatch):
  """A run's config.json, read back, is the configuration every method's
  trainer got and whose hyperparameters its seeds carried; config.json
  round-trips unchanged; each config was validated once (today's code
  validated it three times: spec, Trainer, init)."""
  used, carried, checks = {}, {}, []
  init = trainer_lib.Trainer.__init__

  def spy_init(self, config, *a, **k):
    init(self, config, *a, **k)
    used[config.method] = self.config
  monkeypatch.setattr(trainer_lib.Trainer, "__init__", spy_init)
  check = config_lib.check_hparam
  monkeypatch.setattr(config_lib, "check_hparam",
                      lambda n, v: (checks.append(n), check(n, v)))

  def hook(chunk):
    carried[chunk.method] = {k: np.asarray(v) for k, v in
                             chunk.state.seeds.hparams.items()}
  out = str(tmp_path / "run")
  methods = ["adamw", "grokfast-ma", "neuralgrok"]
  runner.run(dict(TINY, lr=2e-3), methods, 2, 2, 2, out_dir=out,
             hparams={"wd": [0.0, 0.5]}, progress=False, plots=False,
             report=lambda s: None, hooks=[hook])
  assert len(checks) == len(methods) * len(HPARAMS)  # one validation each
  with open(os.path.join(out, "config.json")) as f:
    raw = json.load(f)
  spec = spec_lib.load_spec(out)
  assert spec.to_dict() == raw  # read back unchanged
  for m in methods:
    cfg = spec.configs[m]
    assert cfg.resolved and cfg == used[m]
    assert {k: getattr(cfg, k) for k in HPARAMS} == cfg.hparams()
    want = hparams_of(cfg, 2, spec.hparams)
    assert sorted(want) == sorted(carried[m])
    for k in want:
      np.testing.assert_array_equal(carried[m][k], want[k], err_msg=(m, k))
  assert spec.configs["adamw"].wd == 1.0 and spec.configs["adamw"].clip == \
      float("inf")
  assert spec.configs["grokfast-ma"].lamb == 5.0
  ng = spec.configs["neuralgrok"]
  assert (ng.clip, ng.train_on_outer, ng.lookahead_lr) == (1.0, False, 2e-3)
  # a resume reads it back: the same spec, nothing to refuse
  assert spec_lib.check_resume(spec, out, True) == []


@pytest.mark.parametrize("folder", ["run_pre_layout", "cross_task_v1"])
def test_old_folders_with_nulls_load_with_the_values_their_runs_used(folder):
  path = os.path.join(FIXTURES, folder)
  name = "config.json" if folder == "run_pre_layout" else "cross_task.json"
  with open(os.path.join(path, name)) as f:
    raw = json.load(f)
  raw_cfg = (raw["configs"]["neuralgrok"] if "configs" in raw
             else raw["config"])
  assert any(raw_cfg[k] is None for k in DEFAULTED)  # written with nulls
  old = TrainConfig.from_dict(raw_cfg)  # as that run read it
  cfg = spec_lib.load_spec(path).configs["neuralgrok"]
  assert cfg.resolved and cfg == old.resolve()
  assert cfg.hparams() == old.hparams() and cfg.pools_outer == old.pools_outer
