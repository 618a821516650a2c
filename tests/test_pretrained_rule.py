"""Shipped learned rules: experiments/export_rule.py turns a meta-training
folder into package files, ngrok_jax.pretrained_rule loads them as a frozen
optax transformation that trains a user's own model, and the shipped
default rule is complete."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax
from ngrok_jax._src.optim import learned_rule, pretrained
from run_folders import users_mlp


def _train(tx, params, loss, steps):
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s
  for _ in range(steps):
    params, state = step(params, state)
  return float(loss(params))


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory):
  """A tiny meta-training folder (3 outer steps)."""
  from experiments import meta_train
  out = tmp_path_factory.mktemp("meta") / "run"
  meta_train.run(meta_train.parser().parse_args([
      "--out", str(out), "--primes", "11", "--dim", "16", "--heads", "2",
      "--batch-size", "16", "--meta-batch", "16", "--hidden", "4",
      "--particles", "2", "--truncation", "2", "--horizon", "4",
      "--outer-steps", "3", "--no-progress", "--no-plots"]))
  return str(out)


@pytest.mark.slow  # a meta-training compilation: 30 s and more on 2 cores
def test_export_rule_writes_loadable_package_files(meta_run, tmp_path):
  from experiments import export_rule
  dest = str(tmp_path / "rules")
  export_rule.main([meta_run, "--name", "tiny-1", "--dest", dest])
  assert pretrained.rule_names(dest) == ("tiny-1",)
  info = pretrained.rule_info("tiny-1", dest)
  assert info["cost"]["outer_steps"] == 3
  assert info["cost"]["s_per_outer_step"] > 0
  assert info["cost"]["total_wall_s"] >= info["cost"]["first_step_s"]
  assert info["command"].startswith("python -m experiments.meta_train --out")
  assert "--outer-steps 3" in info["command"]
  assert info["meta_config"]["hidden"] == "4"
  # the exported parameters are the run's
  theta, cfg = pretrained.load_pretrained("tiny-1", dest)
  run_theta, run_cfg = learned_rule.load_rule(meta_run)
  assert cfg == run_cfg and cfg.hidden == (4,)
  for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(run_theta)):
    np.testing.assert_array_equal(a, b)
  # an exact command given on the command line is kept
  export_rule.export(meta_run, "tiny-2", dest, command="python -m x --y 1")
  assert pretrained.rule_info("tiny-2", dest)["command"] == "python -m x --y 1"
  with pytest.raises(ValueError, match="no learned rule 'nope'.*tiny-1"):
    pretrained.pretrained_rule("nope", folder=dest)
  with pytest.raises(ValueError, match="rule name"):
    pretrained.write_rule_files(dest, "a/b", theta, cfg, {})
  with pytest.raises(SystemExit):
    export_rule.main([str(tmp_path), "--name", "x", "--dest", dest])


def test_default_rule_trains_a_users_mlp():
  assert pretrained.DEFAULT_RULE in pretrained.rule_names()
  info = pretrained.rule_info()
  assert info["name"] == pretrained.DEFAULT_RULE
  for k in ("s_per_outer_step", "total_wall_s", "outer_steps"):
    assert info["cost"][k] > 0
  assert info["command"].startswith("python -m experiments.meta_train")
  tx = ngrok_jax.pretrained_rule()
  assert isinstance(tx, optax.GradientTransformation)
  params, loss = users_mlp()
  start = float(loss(params))
  end = _train(tx, params, loss, 300)
  assert end < 0.2 * start, (start, end)
  # a larger learning rate moves the parameters further in one step
  g = jax.grad(loss)(params)
  norms = []
  for lr in (1e-3, 1e-2):
    t = ngrok_jax.pretrained_rule(lr=lr)
    u, _ = t.update(g, t.init(params), params)
    norms.append(float(optax.tree.norm(u)))
    for leaf in jax.tree.leaves(u):  # bounded: RMS <= 2 lr per tensor
      assert float(jnp.sqrt(jnp.mean(jnp.square(leaf)))) <= 2 * lr + 1e-7
  assert norms[1] > 5 * norms[0]
  # the loaded parameters are copies: editing them changes nothing cached
  theta, _ = pretrained.load_pretrained()
  jax.tree.leaves(theta)[0][...] = 1e3
  theta2, _ = pretrained.load_pretrained()
  assert not np.any(jax.tree.leaves(theta2)[0] == 1e3)


def test_shipped_rule_json_is_complete():
  with open(pretrained.RULES_DIR + f"/{pretrained.DEFAULT_RULE}.json") as f:
    info = json.load(f)
  assert set(info) >= {"name", "config", "command", "meta_config", "cost"}
  assert pretrained.config_from_dict(info["config"]) == (
      pretrained.load_pretrained()[1])


def _one_update(tx, params, loss):
  u, _ = tx.update(jax.grad(loss)(params), tx.init(params), params)
  return jax.tree.leaves(u)


def test_a_rule_folder_is_a_rule_anywhere_a_name_is(tmp_path):
  """resolve_rule / pretrained_rule / the method learned-rule (its config's
  ``rule``) take a folder of save_rule's files as they take a shipped name:
  the shipped rule saved to a folder gives the same updates, another rule in
  a folder gives other updates (the method must not ignore ``rule``), and an
  absent rule is a one-line ValueError of the config's validation."""
  from ngrok_jax import TrainConfig
  from ngrok_jax._src.training import methods
  theta, cfg = pretrained.load_pretrained()
  same, other = str(tmp_path / "same"), str(tmp_path / "other")
  learned_rule.save_rule(same, cfg, theta)
  learned_rule.save_rule(other, cfg, jax.tree.map(lambda x: 0.5 * x, theta))
  t2, c2 = pretrained.resolve_rule(same)
  assert c2 == cfg
  assert all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(theta), jax.tree.leaves(t2)))
  params, loss = users_mlp()
  base = _one_update(ngrok_jax.pretrained_rule(lr=1e-2), params, loss)
  for folder, equal in ((same, True), (other, False)):
    got = _one_update(ngrok_jax.pretrained_rule(folder, lr=1e-2), params,
                      loss)
    assert all(np.allclose(a, b) for a, b in zip(base, got)) == equal

  def method_update(rule):
    c = TrainConfig(method="learned-rule", rule=rule,
                    warmup_steps=0).validate()  # (step 0: lr 0 in warm-up)
    tx = methods.optimizer(c, c.hparams())
    return _one_update(tx, params, loss)
  ref = method_update(pretrained.DEFAULT_RULE)
  for folder, equal in ((same, True), (other, False)):
    got = method_update(folder)
    assert all(np.allclose(a, b) for a, b in zip(ref, got)) == equal
  for bad in ("nope", str(tmp_path)):
    with pytest.raises(ValueError, match="no learned rule") as e:
      TrainConfig(method="learned-rule", rule=bad).validate()
    assert "\n" not in str(e.value)
  TrainConfig(method="adamw", rule="nope").validate()  # only learned-rule's


def test_tune_rule_flag_needs_the_learned_rule_and_a_rule(monkeypatch,
                                                          tmp_path):
  """experiments/tune.py --rule: refused, before any byte is written,
  without --methods learned-rule or for a rule that does not exist."""
  import sys
  from experiments import tune
  out = tmp_path / "t"
  for argv, msg in ((["--methods", "adamw", "--rule", "arith-pes-cpu"],
                     "add --methods learned-rule"),
                    (["--methods", "learned-rule", "--rule",
                      str(tmp_path / "none")], "no learned rule")):
    monkeypatch.setattr(sys, "argv", ["tune", "--quick", "--task", "a/b",
                                      "--out", str(out)] + argv)
    with pytest.raises(ValueError, match=msg):
      tune.main()
    assert not out.exists()


def test_random_rules_sit_at_the_runs_distance_from_its_start(tmp_path):
  """experiments/random_rules.py: the control rules start where the
  meta-training run started (the seed's draw) and lie exactly as far from
  it as the run's final rule, in different directions; an existing --out
  is refused before anything is written."""
  from experiments import random_rules as rr
  cfg = learned_rule.RuleConfig(hidden=(4,))
  run = tmp_path / "run"
  start = learned_rule.init_rule(cfg, jax.random.split(
      jax.random.PRNGKey(5), 3)[0])  # meta_train's draw: seed 5, one prime
  final = jax.tree.map(lambda x: x + 0.1 * jnp.sin(jnp.arange(x.size)
                                                   ).reshape(x.shape), start)
  learned_rule.save_rule(str(run), cfg, final)
  (run / "meta_config.json").write_text(json.dumps({"seed": 5,
                                                    "primes": "11"}))
  s, f, _ = rr.initial_rule(str(run))
  assert rr.distance(s, start) == 0.0 and rr.distance(f, final) == 0.0
  d = rr.distance(final, start)
  out = tmp_path / "ctl"
  rr.main([str(run), "--count", "3", "--out", str(out)])
  rules = [learned_rule.load_rule(str(out / f"rand{i}"))[0] for i in range(3)]
  for t in rules:
    assert abs(rr.distance(t, start) - d) < 1e-5 * d
  assert min(rr.distance(a, b) for i, a in enumerate(rules)
             for b in rules[i + 1:]) > 0.1 * d
  assert json.loads((out / "random_rules.json").read_text())["distance"] == d
  with pytest.raises(ValueError, match="exists"):
    rr.main([str(run), "--count", "1", "--out", str(out)])


def _rule_folder(tmp_path, name, edit_config=None, edit_theta=None):
  """A folder of save_rule's files for a small rule, then edited."""
  cfg = learned_rule.RuleConfig(hidden=(4,))
  theta = learned_rule.init_rule(cfg, jax.random.PRNGKey(0))
  folder = str(tmp_path / name)
  if edit_theta is not None:
    theta = edit_theta(jax.tree.map(np.array, theta))
  learned_rule.save_rule(folder, cfg, theta)
  if edit_config is not None:
    path = f"{folder}/rule_config.json"
    with open(path) as f:
      raw = json.load(f)
    with open(path, "w") as f:
      json.dump(edit_config(raw), f)
  return folder


def _set(**kv):
  return lambda raw: dict(raw, **kv)


def _nan_first_kernel(theta):
  theta["layers"][0][0][0, 0] = np.nan
  return theta


#: (edit of the config, edit of the weights, the file, the field in the
#: message): each a rule folder that must not load.
BAD_RULES = {
    "nan_weight": (None, _nan_first_kernel, "rule.msgpack",
                   "weight layers/0/0 holds non-finite"),
    "lr_inf": (_set(lr=float("inf")), None, "rule_config.json",
               "field 'lr' must be a finite number > 0"),
    "lr_negative": (_set(lr=-1e-3), None, "rule_config.json", "field 'lr'"),
    "lr_string": (_set(lr="3e-3"), None, "rule_config.json", "field 'lr'"),
    "empty": (lambda raw: {}, None, "rule_config.json",
              "must be a JSON object with the fields"),
    "unknown_key": (_set(lrr=1e-3), None, "rule_config.json",
                    "unknown field 'lrr'"),
    "missing_key": (lambda raw: {k: v for k, v in raw.items() if k != "eps"},
                    None, "rule_config.json", "field 'eps' missing"),
    "decays_misfit": (_set(decays=[0.5, 0.9, 0.99, 0.999]), None,
                      "rule.msgpack", "(fields decays and time_scales)"),
    "hidden_misfit": (_set(hidden=[5]), None, "rule.msgpack",
                      "weight layers/0/0 has shape [12, 4], but"),
    "c_inf": (_set(c=float("inf")), None, "rule_config.json", "field 'c'"),
}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_a_rule_folder_is_checked_on_load(case, tmp_path):
  """Protects a run from a rule file that would train with NaN weights, an
  infinite lr, defaults it did not ask for, or crash mid-run in a JAX
  traceback: load_rule and resolve_rule (so pretrained_rule and the
  learned-rule method) refuse it with one line naming the file and the
  field."""
  edit_config, edit_theta, file, field = BAD_RULES[case]
  folder = _rule_folder(tmp_path, case, edit_config, edit_theta)
  for load in (learned_rule.load_rule, pretrained.resolve_rule,
               ngrok_jax.pretrained_rule):
    with pytest.raises(ValueError) as e:
      load(folder)
    msg = str(e.value)
    assert "\n" not in msg and f"{folder}/{file}" in msg and field in msg, (
        load, msg)


def test_a_bad_rule_is_refused_by_the_command_line_and_pretrained_lr(
    tmp_path, capsys):
  """Protects a user's --rule run: the command line exits 2, before the
  run folder exists, with the loader's one line; and pretrained_rule's lr
  must be finite and > 0 too."""
  from ngrok_jax._src.cli import cli
  folder = _rule_folder(tmp_path, "bad", _set(lr=float("inf")))
  out = tmp_path / "run"
  assert cli.main(["train", "--methods", "learned-rule", "--rule", folder,
                   "--steps", "2", "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert any(f"{folder}/rule_config.json" in l and "field 'lr'" in l
             for l in err), err
  assert not out.exists()
  for lr in (float("inf"), float("nan"), 0.0, -1.0):
    with pytest.raises(ValueError, match="field 'lr' must be a finite"):
      ngrok_jax.pretrained_rule(lr=lr)
