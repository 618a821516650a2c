"""ngrok_jax.registry: one record per method, read by the config, the
training step, the evaluation, the presets and experiments.tune."""
import ast
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


# --------------------------------------- method names live in the registry
#: The registry module, the one place a method's name is written.
REGISTRY = os.path.join("ngrok_jax", "_src", "optim", "registry.py")
#: String constants equal to a method's name that do not name a method,
#: ``{(module, value): why}``.
NOT_METHODS = {
    (os.path.join("ngrok_jax", "_src", "optim", f), v):
        "a learned rule's placement or its other leaves' optimizer"
    for f in ("learned_rule.py", "rule_files.py") for v in ("muon", "adamw")}
NOT_METHODS[(os.path.join("ngrok_jax", "_src", "optim", "neuralgrok.py"),
             "neuralgrok")] = "the transformation's name in its error message"


def method_name_constants(source, names):
  """``[(line, value)]``: the string constants of ``source`` (parsed, not
  matched by a regex) equal to one of ``names``.  Docstrings (prose may
  name a method) and ``__all__`` entries (the function ``neuralgrok``)
  are not counted."""
  tree = ast.parse(source)
  skip = set()
  for node in ast.walk(tree):
    body = getattr(node, "body", None)
    if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                          ast.AsyncFunctionDef)) and body and
        isinstance(body[0], ast.Expr) and
        isinstance(body[0].value, ast.Constant)):
      skip.add(id(body[0].value))
    if isinstance(node, ast.Assign) and any(
        getattr(t, "id", "") == "__all__" for t in node.targets):
      skip.update(id(n) for n in ast.walk(node.value))
  return [(n.lineno, n.value) for n in ast.walk(tree)
          if isinstance(n, ast.Constant) and isinstance(n.value, str) and
          n.value in names and id(n) not in skip]


def test_the_name_scanner_sees_constants_not_prose():
  src = ('"""adam in a docstring."""\n__all__ = ["adam"]\n'
         'def f(m):\n  """adam."""\n  return m == "adam" or m in ("muon",)'
         ' or m == "adam-like" or f"x{m}" == "egd"\n')
  assert sorted(method_name_constants(src, {"adam", "muon", "egd"})) == [
      (5, "adam"), (5, "egd"), (5, "muon")]


def test_method_names_appear_in_no_module_outside_the_registry():
  """Every module of ngrok_jax/ but the registry: no string constant is a
  method's name (the modules read the records' properties and roles)."""
  names = set(registry.method_names())
  hits = []
  for path in sorted(glob.glob(os.path.join(ROOT, "ngrok_jax", "**", "*.py"),
                               recursive=True)):
    rel = os.path.relpath(path, ROOT)
    if rel == REGISTRY:
      continue
    with open(path, encoding="utf-8") as f:
      found = method_name_constants(f.read(), names)
    hits += [f"{rel}:{line}: {v!r}" for line, v in found
             if (rel, v) not in NOT_METHODS]
  assert not hits, "\n".join(hits)


# ------------------------------------------- the docs' table of the methods
TRAINING_PAGE = os.path.join(ROOT, "docs", "training.md")
TABLE_START = "<!-- methods-table: generated from the records -->\n"
TABLE_END = "\n<!-- /methods-table -->"


def docs_with_method_table(text: str) -> str:
  """docs/training.md with its method table generated from the records."""
  from ngrok_jax._src.cli.train_args import method_table
  head, _, rest = text.partition(TABLE_START)
  _, _, tail = rest.partition(TABLE_END)
  assert rest and tail, "docs/training.md lost its methods-table markers"
  return head + TABLE_START + method_table() + TABLE_END + tail


def test_the_docs_method_table_is_generated_from_the_records():
  with open(TRAINING_PAGE, encoding="utf-8") as f:
    text = f.read()
  assert text == docs_with_method_table(text), (
      "docs/training.md's method table is stale: "
      "python tests/test_registry.py --write")


# --------------------------------------- a new method: one record, one test
def test_a_method_added_as_one_record_reaches_cli_docs_and_tune(capsys):
  """Lion (optax.lion, decoupled weight decay) as one record, its own
  defaults (wd 0.1) and grid: the configuration's choices, ``train
  --help``'s method list, the docs' table and ``experiments.tune``'s grids
  follow with no other edit; the library's own records are unchanged."""
  import optax
  from ngrok_jax._src.cli import cli
  from ngrok_jax._src.cli.train_args import method_table

  lion = registry.Method(
      "lion", "Lion (Chen et al. 2023), decoupled weight decay",
      transform=lambda cfg, hp, parts: optax.identity(),
      optimizer=lambda cfg, hp, parts, adam: registry.with_projection(
          cfg, optax.lion(registry.warmup_lr(cfg, hp),
                          weight_decay=hp["wd"])),
      defaults={"wd": 0.1}, grid={"lr": (3e-4, 1e-3), "wd": (0.1, 1.0)},
      coupled_decay=False)
  before = registry.method_names()
  registry.register(lion)
  try:
    assert nj.METHODS == before + ("lion",) and "lion" in config.METHODS
    cfg = nj.TrainConfig(method="lion").validate()
    assert cfg.record is lion and cfg.hparams()["wd"] == 0.1
    with pytest.raises(SystemExit):
      cli.main(["train", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert ("muon, egd, learned-rule, neuralgrok, neuralgrok-frozen, lion, "
            "or your own optax optimizer as module:factory") in helptext
    row = [l for l in method_table().splitlines() if l.startswith("| `lion`")]
    assert row == ["| `lion` | Lion (Chen et al. 2023), decoupled weight "
                   "decay | decoupled, 0.1 | off | lr 0.0003 / 0.001; wd "
                   "0.1 / 1 |"]
    assert tune.default_grid("lion") == {"lr": (3e-4, 1e-3),
                                         "wd": (0.1, 1.0)}
    assert tune.method_names_of(["adamw", "lion"]) == ["adamw", "lion"]
    with pytest.raises(ValueError, match="one of the library's own"):
      registry.register(dataclasses_replace(lion, name="adam"))
  finally:
    registry.unregister("lion")
  assert registry.method_names() == before
  with pytest.raises(ValueError, match="unknown method 'lion'"):
    nj.TrainConfig(method="lion").validate()


def dataclasses_replace(rec, **kw):
  import dataclasses
  return dataclasses.replace(rec, **kw)


if __name__ == "__main__":
  import sys
  if sys.argv[1:] != ["--write"]:
    sys.exit("usage: python tests/test_registry.py --write")
  with open(TRAINING_PAGE, encoding="utf-8") as f:
    page = docs_with_method_table(f.read())
  with open(TRAINING_PAGE, "w", encoding="utf-8") as f:
    f.write(page)
