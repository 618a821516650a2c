"""A user's own optax optimizer, from a module outside the package
(tests/user_opt/lion_module.py: ``optax.lion``, decoupled weight decay),
run as a method: ``ngrok-jax train --methods module:factory`` (its run
folder records where the method came from; ``--resume`` imports it again),
``experiments.tune`` with a tiny grid, ``ngrok_jax.register_method``; and
the one-line errors (exit 2) before any byte is written."""
import hashlib
import json
import os
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ngrok_jax as nj
from experiments import _common as C
from experiments import tune
from ngrok_jax import registry
from ngrok_jax._src.training import methods as methods_lib
from ngrok_jax._src.storage.spec import load_spec
from run_folders import TINY_MODEL_FLAGS, cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LION = "tests.user_opt.lion_module:lion"
LION_FILE = os.path.join(ROOT, "tests", "user_opt", "lion_module.py")
TINY = TINY_MODEL_FLAGS + ["--seeds", "2", "--steps", "20", "--eval-every",
                           "10", "--no-progress", "--no-plots"]


def _sha(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _forget_users_methods(before=()):
  for name in registry.method_names():
    if name not in before and not any(r.name == name
                                      for r in registry.RECORDS):
      registry.unregister(name)


@pytest.fixture(autouse=True)
def _clean_registry():
  """Every test starts and ends with the library's methods only."""
  _forget_users_methods()
  yield
  _forget_users_methods()


@pytest.fixture(scope="module")
def lion_run(tmp_path_factory):
  """A tiny ``ngrok-jax train`` of adam and the user's lion."""
  out = str(tmp_path_factory.mktemp("user") / "run")

  class Cap:  # cli_main's capsys, for a module-scoped fixture
    def readouterr(self):
      return "", ""
  rc, _, _ = cli_main(["train"] + TINY + ["--methods", f"adam,{LION}",
                                          "--out", out], Cap())
  _forget_users_methods()
  assert rc == 0
  return out


def _rows(folder):
  with open(os.path.join(folder, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f]
  return sorted(rows, key=lambda r: (r["method"], r["seed"], r["step"]))


def test_train_runs_the_users_optimizer_and_records_where_it_came_from(
    lion_run):
  with open(os.path.join(lion_run, "config.json")) as f:
    config = json.load(f)
  assert config["methods"] == ["adam", "lion"]
  assert config["method_sources"] == {"lion": {
      "source": LION, "file": LION_FILE, "sha256": _sha(LION_FILE)}}
  rows = [r for r in _rows(lion_run) if r["method"] == "lion"]
  assert [(r["seed"], r["step"]) for r in rows] == [(0, 10), (0, 20),
                                                    (1, 10), (1, 20)]
  adam = [r for r in _rows(lion_run) if r["method"] == "adam"]
  for a, b in zip(adam, rows):  # trained, and not as adam
    assert np.isfinite(b["train/loss"]) and b["train/loss"] != a["train/loss"]
  with open(os.path.join(lion_run, "summary.json")) as f:
    assert set(json.load(f)["methods"]) == {"adam", "lion"}


def test_resume_imports_the_users_method_again(lion_run, capsys):
  assert "lion" not in nj.METHODS
  spec = load_spec(lion_run)  # imports and registers it
  assert registry.get_method("lion").origin["source"] == LION
  assert spec.method_sources["lion"]["sha256"] == _sha(LION_FILE)
  _forget_users_methods()
  rc, out, err = cli_main(["train", "--resume", lion_run, "--steps", "30",
                           "--force", "--no-progress", "--no-plots"], capsys)
  assert rc == 0, err
  steps = [r["step"] for r in _rows(lion_run) if r["method"] == "lion"
           and r["seed"] == 0]
  assert steps == [10, 20, 30]


def test_a_folder_whose_module_is_gone(lion_run, tmp_path, capsys):
  """--resume: one line, exit 2, nothing written; its results still read
  (``ngrok-jax report``: no optimizer needed)."""
  gone = str(tmp_path / "gone")
  shutil.copytree(lion_run, gone)
  path = os.path.join(gone, "config.json")
  with open(path) as f:
    config = json.load(f)
  config["method_sources"]["lion"].update(
      source="tests.user_opt.gone_module:lion",
      file=os.path.join(ROOT, "tests", "user_opt", "gone_module.py"))
  with open(path, "w") as f:
    json.dump(config, f)
  before = {n: os.path.getmtime(os.path.join(d, n))
            for d, _, fs in os.walk(gone) for n in fs}
  rc, _, err = cli_main(["train", "--resume", gone, "--steps", "30",
                         "--force", "--no-progress"], capsys)
  assert rc == 2
  assert len(err.strip().splitlines()) == 1, err
  assert "uses method 'lion' from tests.user_opt.gone_module:lion" in err
  assert "cannot import 'tests.user_opt.gone_module'" in err
  assert before == {n: os.path.getmtime(os.path.join(d, n))
                    for d, _, fs in os.walk(gone) for n in fs}
  rc, out, err = cli_main(["report", gone, "--no-plots"], capsys)
  assert rc == 0, err
  assert [l.split("|")[2].strip() for l in out.splitlines()
          if l.startswith("| gone")] == ["adam", "lion"]
  assert "lion" not in nj.METHODS


def test_a_changed_source_is_a_difference_on_resume(lion_run, tmp_path,
                                                    capsys):
  copy = str(tmp_path / "copy")
  shutil.copytree(lion_run, copy)
  path = os.path.join(copy, "config.json")
  with open(path) as f:
    config = json.load(f)
  config["method_sources"]["lion"]["sha256"] = "0" * 64
  with open(path, "w") as f:
    json.dump(config, f)
  rc, _, err = cli_main(["train", "--resume", copy, "--no-progress"], capsys)
  assert rc == 2 and "differs from the checkpointed run" in err
  assert "method_sources" in err


@pytest.mark.parametrize("source, says", [
    ("tests.user_opt.no_such_module:lion", "cannot import "
     "'tests.user_opt.no_such_module' (ModuleNotFoundError"),
    ("tests.user_opt.lion_module:missing", "has no attribute 'missing'"),
    ("tests.user_opt.lion_module:NOT_CALLABLE", "is not callable"),
    ("tests.user_opt.lion_module:not_a_transformation",
     "returned float, not an optax.GradientTransformation"),
    ("tests.user_opt.lion_module:", "a user's method is module:factory"),
])
def test_a_bad_users_method_is_one_line_before_any_write(source, says,
                                                         tmp_path, capsys):
  out = str(tmp_path / "run")
  rc, _, err = cli_main(["train"] + TINY + ["--methods", f"adam,{source}",
                                            "--out", out], capsys)
  assert rc == 2 and says in err, err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert not os.path.exists(out)
  assert "lion" not in nj.METHODS


def test_the_library_applies_clip_warmup_and_projection_outside(tiny_config):
  """optax.adamw through register_method, with a clip, a warm-up and the
  weight-norm projection, takes the steps of the library's own adamw (the
  clip, warm-up and projection come from the library, not the factory)."""
  def my_adamw(learning_rate, weight_decay, b1, b2, eps):
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps,
                       weight_decay=weight_decay)
  nj.register_method("my-adamw", my_adamw)
  kw = dict(clip=0.05, warmup_steps=3, fix_weight_norm=2.0, wd=0.3, b2=0.95,
            eps=0.1, lr=0.1)  # eps 0.1: the clip shows through Adam
  params = {"a": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
            "b": jnp.linspace(0.5, 1.5, 4)}

  def trajectory(method, **fields):
    cfg = tiny_config(method=method, **{**kw, **fields}).validate()
    tx = methods_lib.optimizer(cfg, cfg.hparams())
    p, state, out = params, tx.init(params), []
    for k in range(5):
      g = jax.tree.map(lambda x: jnp.sin(x * (k + 1)), p)
      u, state = tx.update(g, state, p)
      p = optax.apply_updates(p, u)
      out.append(p)
    return out

  mine = trajectory("my-adamw")
  for a, b in zip(trajectory("adamw"), mine):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  # each of the three changes the steps: the library applies it
  for fields in (dict(clip=float("inf")), dict(warmup_steps=0),
                 dict(fix_weight_norm=None)):
    other = trajectory("my-adamw", **fields)[-1]["a"]
    assert np.abs(other - mine[-1]["a"]).max() > 1e-4, fields


def test_register_method_refuses_the_librarys_names_and_bad_grids():
  from tests.user_opt.lion_module import lion
  with pytest.raises(ValueError, match="one of the library's own"):
    nj.register_method("adam", lion)
  with pytest.raises(ValueError, match="grid of method 'x'"):
    nj.register_method("x", lion, grid={"lamb": (1.0,)})
  rec = nj.register_method("x", lion, wd=0.1)
  assert rec.grid == {"lr": (3e-4, 1e-3), "wd": (0.1, 1.0)}  # lion.grid
  assert rec.origin["source"] == LION and rec.default("wd") == 0.1
  assert nj.TrainConfig(method="x").hparams()["wd"] == 0.1
  assert "x" in nj.METHODS  # the live list of names
  nj.register_method("x", lion, grid={"lr": (1e-3,)})  # replaced
  assert registry.get_method("x").grid == {"lr": (1e-3,)}



def test_runner_takes_module_factory_as_the_command_line_does(tiny_fields):
  """``runner.run(methods=...)``'s spec (make_spec): the same string."""
  from ngrok_jax.spec import make_spec
  spec = make_spec(tiny_fields, f"adam,{LION}", seeds=1, steps=10,
                   eval_every=10, method_overrides={LION: {"lr": 3e-4}})
  assert spec.methods == ["adam", "lion"]
  assert spec.configs["lion"].lr == 3e-4
  assert spec.method_sources == {"lion": registry.get_method("lion").origin}
  assert "method_sources" not in make_spec(tiny_fields, "adam", seeds=1,
                                           steps=10,
                                           eval_every=10).to_dict()


def test_tune_tunes_the_users_optimizer(tmp_path):
  """experiments.tune on a tiny grid of module:factory: the grid folder and
  the held-out folder record the method's source."""
  args = types.SimpleNamespace(quick=True, p=11, steps=20, eval_every=10,
                               seeds=None, stop_after=None, no_progress=True,
                               no_plots=True, widen=0)
  setup = C.task_setup("a+b", args)
  setup["config"].update(dim=16, heads=2, depth=1, batch_size=32)
  out = str(tmp_path / "tune")
  assert tune.method_names_of([LION]) == ["lion"]
  assert tune.default_grid("lion") == {"lr": (3e-4, 1e-3), "wd": (0.1, 1.0)}
  result = tune.tune(setup, "a+b", [LION],
                     {LION: {"lr": (1e-3,), "wd": (0.1, 1.0)}}, 1, 1, out,
                     args)
  r = result["methods"]["lion"]
  assert r["grid"] == {"lr": [1e-3], "wd": [0.1, 1.0]}
  assert sorted(c["index"] for c in r["ranked"]) == [0, 1]
  assert r["chosen"]["wd"] == r["ranked"][0]["cell"]["wd"]
  for d in (os.path.join(out, "grid", "lion"), os.path.join(out, "heldout")):
    with open(os.path.join(d, "config.json")) as f:
      config = json.load(f)
    assert config["method_sources"]["lion"]["source"] == LION
  with open(os.path.join(out, "grid", "lion", "config.json")) as f:
    assert json.load(f)["hparams"]["wd"] == [0.1, 1.0]
  with pytest.raises(ValueError, match="unknown or untunable method"):
    tune.method_names_of(["neuralgrok-frozen"])
