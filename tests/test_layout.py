"""The package layout. From the source (no import): the import graph of
``ngrok_jax`` has no cycle, the private package ``ngrok_jax._src`` is in
layers and no layer imports a later one, the public modules at the top are
facades (imports and ``__all__`` only), no module uses a private name
(``_name``) of another module, and no module is over :data:`MAX_LINES`
lines, in ``ngrok_jax/`` and ``experiments/``; ``experiments/`` imports
nothing of ``ngrok_jax._src``. By import: every public object has exactly
one public path. docs/layout.md is this graph, current.

``python tests/test_layout.py --write`` rewrites docs/layout.md.
"""
import ast
import os
import sys
from typing import Dict, List, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("ngrok_jax", "experiments")
#: The most lines a module may have: a guard against runaway files, not a
#: module boundary (modules follow concepts; the run spec, storage/spec.py,
#: is about 650 lines).
MAX_LINES = 700
#: The layers of ``ngrok_jax._src``, lowest first: a module imports modules
#: of its own layer and of the layers before it, never of a later one.
LAYERS = ("core", "optim", "training", "storage", "analysis", "running",
          "cli")
SRC = "ngrok_jax._src"
LAYOUT_PAGE = os.path.join(ROOT, "docs", "layout.md")


def _modules(package: str) -> Dict[str, str]:
  """{dotted module name: path} of every module under ``package``."""
  out = {}
  for d, dirs, files in os.walk(os.path.join(ROOT, package)):
    dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__pycache__")))
    for f in sorted(files):
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].split(os.sep)
        if rel[-1] == "__init__":
          rel = rel[:-1]
        out[".".join(rel)] = os.path.join(d, f)
  return out


def _resolve(name: str, modules) -> str:
  """The longest prefix of ``name`` that is a module of ours ('' if none)."""
  parts = name.split(".")
  for k in range(len(parts), 0, -1):
    if ".".join(parts[:k]) in modules:
      return ".".join(parts[:k])
  return ""


def _private(name: str) -> bool:
  return name.startswith("_") and not name.startswith("__")


def scan(module: str, source: str, modules) -> Tuple[Set[str], List[str]]:
  """(the modules of ours that ``module`` imports, anywhere in the file;
  the private names of other modules it imports or reads)."""
  tree = ast.parse(source)
  deps, bad = set(), []
  aliases = {}  # local name -> our module it is bound to
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        target = _resolve(a.name, modules)
        if target:
          deps.add(target)
          if a.asname:
            aliases[a.asname] = target
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      base = _resolve(node.module, modules)
      if not base:
        continue
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        if sub in modules:  # ``from pkg import module``
          deps.add(sub)
          aliases[a.asname or a.name] = sub
        else:
          deps.add(base)
          if a.name != "*" and _private(a.name) and base != module:
            bad.append(f"{module} imports {base}.{a.name} "
                       f"(line {node.lineno})")
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and _private(node.attr)
        and f"{aliases[node.value.id]}.{node.attr}" not in modules
        and aliases[node.value.id] != module):
      bad.append(f"{module} uses {aliases[node.value.id]}.{node.attr} "
                 f"(line {node.lineno})")
  deps.discard(module)
  return deps, bad


def import_graph(package: str):
  modules = _modules(package)
  graph, bad = {}, []
  for m, path in modules.items():
    with open(path, encoding="utf-8") as f:
      graph[m], b = scan(m, f.read(), modules)
    bad += b
  return graph, bad


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
  """One cycle of ``graph`` (a list of nodes, first == last), or []."""
  state, stack = {}, []

  def visit(n):
    state[n] = 1
    stack.append(n)
    for d in sorted(graph.get(n, ())):
      if state.get(d) == 1:
        return stack[stack.index(d):] + [d]
      if d not in state:
        c = visit(d)
        if c:
          return c
    stack.pop()
    state[n] = 2
    return []

  for n in sorted(graph):
    if n not in state:
      c = visit(n)
      if c:
        return c
  return []


def _package_graph():
  """The ngrok_jax graph without the package ``__init__``: it imports the
  public names, so every edge into it would be a cycle by construction;
  its own imports are checked by importing it."""
  graph, _ = import_graph("ngrok_jax")
  return {m: d - {"ngrok_jax"} for m, d in graph.items() if m != "ngrok_jax"}


def layer_of(module: str) -> str:
  """The layer of a module of ``ngrok_jax._src`` ('' for any other)."""
  parts = module.split(".")
  if module.startswith(SRC + ".") and len(parts) > 3:
    return parts[2]
  return ""


def src_graph() -> Dict[str, Set[str]]:
  """{module of a layer: the modules of ours it imports}."""
  graph, _ = import_graph("ngrok_jax")
  return {m: d for m, d in graph.items() if layer_of(m)}


def facades() -> List[str]:
  """The public modules: the package and the modules at its top."""
  return sorted(m for m in _modules("ngrok_jax")
                if m.count(".") <= 1 and not m.startswith(SRC)
                and m != "ngrok_jax.__main__")


def layer_violations(graph) -> List[str]:
  bad = []
  for m, deps in sorted(graph.items()):
    rank = LAYERS.index(layer_of(m)) if layer_of(m) in LAYERS else -1
    if rank < 0:
      bad.append(f"{m}: not in a layer of {LAYERS}")
    for d in sorted(deps):
      dl = layer_of(d)
      if not dl:
        bad.append(f"{m} imports {d}, outside the layers")
      elif dl in LAYERS and LAYERS.index(dl) > rank:
        bad.append(f"{m} ({layer_of(m)}) imports {d} ({dl}), a later layer")
  return bad


def facade_problems(module: str, source: str) -> List[str]:
  """What in a facade is not a docstring, an import from the private
  package or ``__all__`` (``__version__`` in the package)."""
  bad = []
  for i, n in enumerate(ast.parse(source).body):
    if i == 0 and isinstance(n, ast.Expr) and isinstance(n.value,
                                                         ast.Constant):
      continue
    if isinstance(n, ast.ImportFrom) and (n.module or "").startswith(
        SRC + "."):
      continue
    if isinstance(n, ast.Assign) and len(n.targets) == 1:
      name = getattr(n.targets[0], "id", "")
      if name == "__all__" or (name == "__version__" and
                               module == "ngrok_jax"):
        continue
    bad.append(f"{module}: line {n.lineno} is not an import or __all__")
  return bad


def test_import_graph_has_no_cycle():
  assert find_cycle(_package_graph()) == []


def test_no_layer_imports_a_later_one():
  graph = src_graph()
  assert graph, "no module in ngrok_jax/_src"
  assert layer_violations(graph) == []
  on_disk = sorted(d for d in os.listdir(os.path.join(ROOT, "ngrok_jax",
                                                      "_src"))
                   if os.path.isdir(os.path.join(ROOT, "ngrok_jax", "_src",
                                                 d)) and d != "__pycache__")
  assert on_disk == sorted(LAYERS)
  # and nothing in _src but the layers
  assert [f for f in os.listdir(os.path.join(ROOT, "ngrok_jax", "_src"))
          if f.endswith(".py")] == ["__init__.py"]


def test_facades_are_imports_and_all_only():
  mods = _modules("ngrok_jax")
  bad = []
  for m in facades():
    with open(mods[m], encoding="utf-8") as f:
      bad += facade_problems(m, f.read())
  assert bad == []


def test_every_public_object_has_one_public_path():
  import importlib
  import types
  paths, bad = {}, []
  for m in facades():
    mod = importlib.import_module(m)
    names = list(mod.__all__)
    if len(set(names)) != len(names):
      bad.append(f"{m}.__all__ repeats a name")
    exposed = {n for n, v in vars(mod).items()
               if not n.startswith("_") and not isinstance(v,
                                                           types.ModuleType)}
    if exposed != set(names):
      bad.append(f"{m}: public names outside __all__: "
                 f"{sorted(exposed - set(names))}, missing: "
                 f"{sorted(set(names) - exposed)}")
    for n in names:
      obj = getattr(mod, n)
      if isinstance(obj, (bool, int, float, str, bytes, type(None))):
        key = ("value", n, repr(obj))  # scalars have no identity
      else:
        key = ("object", id(obj))
      paths.setdefault(key, []).append(f"{m}.{n}")
  bad += [" and ".join(p) for p in paths.values() if len(p) > 1]
  assert bad == []


def test_no_module_uses_a_private_name_of_another():
  bad = []
  for p in PACKAGES:
    bad += import_graph(p)[1]
  assert bad == []


def private_package_uses(source: str) -> List[str]:
  """The private parts of ``ngrok_jax`` (``ngrok_jax._src...``, a ``_name``)
  that ``source`` imports, and any mention of ``ngrok_jax._src`` in it."""
  bad = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      full = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      full = [f"{node.module}.{a.name}" for a in node.names]
    else:
      continue
    bad += [f"line {node.lineno}: {f}" for f in full
            if f.split(".")[0] == "ngrok_jax"
            and any(_private(p) for p in f.split("."))]
  if not bad and SRC in source:
    bad.append(f"mentions {SRC}")
  return bad


def test_experiments_use_only_public_names_of_the_package():
  assert private_package_uses("from ngrok_jax._src.core import x\n"
                              "from ngrok_jax import _src\n"
                              "import ngrok_jax.train as t\n") == [
      "line 1: ngrok_jax._src.core.x", "line 2: ngrok_jax._src"]
  assert private_package_uses(f"m = '{SRC}.core.fileio'\n") == [
      f"mentions {SRC}"]
  bad = {}
  for m, path in _modules("experiments").items():
    with open(path, encoding="utf-8") as f:
      found = private_package_uses(f.read())
    if found:
      bad[m] = found
  assert bad == {}


def test_no_module_is_over_the_line_limit():
  long = {}
  for p in PACKAGES:
    for m, path in _modules(p).items():
      with open(path, encoding="utf-8") as f:
        n = sum(1 for _ in f)
      if n > MAX_LINES:
        long[m] = n
  assert long == {}


def test_the_checks_see_a_violation():
  """The scanner itself: a cycle, private uses, a layer inversion and a
  facade with code are found."""
  mods = {"p": "", "p.a": "", "p.b": ""}
  deps, bad = scan("p.a", "from p.b import _x\nfrom p import b as bb\n"
                   "def f():\n  import p.b\n  return bb._y\n", mods)
  assert deps == {"p.b"}
  assert len(bad) == 2
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c",
                                                               "a"]
  low, high = f"{SRC}.{LAYERS[0]}.x", f"{SRC}.{LAYERS[1]}.y"
  assert layer_violations({low: {high}, high: {low}}) == [
      f"{low} ({LAYERS[0]}) imports {high} ({LAYERS[1]}), a later layer"]
  assert layer_violations({low: {"ngrok_jax.train"}}) == [
      f"{low} imports ngrok_jax.train, outside the layers"]
  assert len(facade_problems("ngrok_jax.f", '"""d"""\nimport os\nx = 1\n'
                             f"from {SRC}.core.tasks import make_task\n"
                             "__all__ = ['make_task']\n")) == 2


def _doc(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    d = ast.get_docstring(ast.parse(f.read())) or ""
  return " ".join(d.split("\n\n")[0].split())


def layout_markdown() -> str:
  """docs/layout.md: the layers, their modules and imports, and the public
  modules, all read from the source."""
  mods = _modules("ngrok_jax")
  graph = src_graph()
  short = lambda m: m.rpartition(".")[2]
  out = ["# Package layout", "",
         "Generated by `python tests/test_layout.py --write` from the "
         "source; `tests/test_layout.py` checks that this page is current "
         "and that the rules below hold.", "",
         "## Public modules", "",
         "Every public name has exactly one public path: `ngrok_jax.<name>` "
         "(`import ngrok_jax as nj`) or one of the modules below. These "
         "modules are facades: imports from `ngrok_jax._src` and "
         "`__all__`, nothing else. Everything under `ngrok_jax._src` is "
         "private and may change.", "",
         "| module | names |", "|---|---|"]
  for m in facades():
    with open(mods[m], encoding="utf-8") as f:
      tree = ast.parse(f.read())
    names = [ast.literal_eval(n.value) for n in tree.body
             if isinstance(n, ast.Assign)
             and getattr(n.targets[0], "id", "") == "__all__"][0]
    out.append(f"| `{m}` | " + ", ".join(f"`{n}`" for n in names) + " |")
  out += ["", "## Layers", "",
          "`ngrok_jax/_src/<layer>/`, lowest first. A module imports "
          "modules of its own layer and of earlier layers only, never a "
          "later layer, a facade or the package.", "",
          "| # | layer | what | modules | imports layers |",
          "|---|---|---|---|---|"]
  for i, layer in enumerate(LAYERS):
    members = sorted(m for m in graph if layer_of(m) == layer)
    uses = sorted({layer_of(d) for m in members for d in graph[m]} - {layer},
                  key=LAYERS.index)
    doc = _doc(mods[f"{SRC}.{layer}"]).split(": ", 1)[-1].rstrip(".")
    out.append(f"| {i + 1} | `{layer}` | {doc} | " +
               ", ".join(f"`{short(m)}`" for m in members) + " | " +
               (", ".join(f"`{u}`" for u in uses) or "none") + " |")
  out += ["", "## Modules and their imports", ""]
  for layer in LAYERS:
    out += [f"### {layer}", "", "| module | imports |", "|---|---|"]
    for m in sorted(x for x in graph if layer_of(x) == layer):
      deps = sorted(graph[m], key=lambda d: (LAYERS.index(layer_of(d)), d))
      out.append(f"| `{short(m)}` | " + (", ".join(
          f"`{short(d)}`" if layer_of(d) == layer else
          f"`{layer_of(d)}.{short(d)}`" for d in deps) or "none") + " |")
    out.append("")
  return "\n".join(out)


def test_layout_page_is_current():
  with open(LAYOUT_PAGE, encoding="utf-8") as f:
    assert f.read() == layout_markdown(), (
        "docs/layout.md is stale: python tests/test_layout.py --write")


if __name__ == "__main__":
  if sys.argv[1:] == ["--write"]:
    with open(LAYOUT_PAGE, "w", encoding="utf-8") as f:
      f.write(layout_markdown())
  else:
    sys.exit("usage: python tests/test_layout.py --write")
