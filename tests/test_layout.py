"""The package layout, read from the source (no import, no JAX): the import
graph of ``ngrok_jax`` has no cycle, no module uses a private name
(``_name``) of another module, and no module is over :data:`MAX_LINES`
lines, in ``ngrok_jax/`` and ``experiments/``."""
import ast
import os
from typing import Dict, List, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("ngrok_jax", "experiments")
#: The most lines a module may have.
MAX_LINES = 400


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
  """The ngrok_jax graph without the package ``__init__``: it re-exports
  the public names, so every edge into it would be a cycle by
  construction; its own imports are checked by importing it."""
  graph, _ = import_graph("ngrok_jax")
  return {m: d - {"ngrok_jax"} for m, d in graph.items() if m != "ngrok_jax"}


def test_import_graph_has_no_cycle():
  assert find_cycle(_package_graph()) == []


def test_no_module_uses_a_private_name_of_another():
  bad = []
  for p in PACKAGES:
    bad += import_graph(p)[1]
  assert bad == []


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
  """The scanner itself: a cycle and private uses are found."""
  mods = {"p": "", "p.a": "", "p.b": ""}
  deps, bad = scan("p.a", "from p.b import _x\nfrom p import b as bb\n"
                   "def f():\n  import p.b\n  return bb._y\n", mods)
  assert deps == {"p.b"}
  assert len(bad) == 2
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c",
                                                               "a"]


def test_long_test_files_exist_and_come_first():
  """conftest.LONG_FILES names test files that exist (a renamed file would
  silently lose its place), once each; long_first puts them first, in that
  order, and keeps the order within a file and of the other files; and
  setup.cfg keeps xdist from reordering the files by their number of tests."""
  from types import SimpleNamespace
  import pathlib
  from conftest import LONG_FILES, long_first
  tests = pathlib.Path(ROOT) / "tests"
  assert len(set(LONG_FILES)) == len(LONG_FILES)
  for name in LONG_FILES:
    assert (tests / name).is_file(), name
  item = lambda f, k: SimpleNamespace(path=tests / f, k=k)
  items = [item("test_a.py", 0), item(LONG_FILES[1], 1), item("test_z.py", 2),
           item(LONG_FILES[0], 3), item(LONG_FILES[1], 4), item("test_a.py", 5)]
  assert [i.k for i in long_first(items)] == [3, 1, 4, 0, 2, 5]
  with open(os.path.join(ROOT, "setup.cfg")) as f:
    cfg = f.read()
  addopts = [l for l in cfg.splitlines() if l.startswith("addopts =")]
  assert addopts and "--no-loadscope-reorder" in addopts[0]
