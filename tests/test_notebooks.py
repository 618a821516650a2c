"""The notebooks in notebooks/: committed without outputs, and each runs top to
bottom in its quick mode (NGROK_QUICK=1) without a cell error.

quickstart.ipynb is executed once per session, by tests/test_release.py
against the installed wheel (the same cells on the same code, built from this
tree); here it gets the static checks only, like every notebook.

The kernel is the interpreter running pytest (a kernelspec written to a
temporary folder), so a fresh clone after ``pip install -e '.[test]'`` needs
no ``ipykernel install`` and never picks up another Python's kernel.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
import notebook_kernels  # noqa: E402

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "ngrok-jax-test"
#: Executed by tests/test_release.py::test_notebook_runs_against_the_wheel.
RUN_BY_RELEASE_TEST = "quickstart.ipynb"
EXECUTED_HERE = [p for p in NOTEBOOKS if p.name != RUN_BY_RELEASE_TEST]


def _ids(paths):
  return [p.stem for p in paths]


def test_there_are_notebooks():
  assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (
      c.get("outputs") or c.get("execution_count") is not None)]
  assert not dirty, (f"{path.name}: code cells {dirty} have outputs or "
                     "execution counts; strip them before committing (e.g. "
                     "jupyter nbconvert --clear-output --inplace)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_structure(path):
  """Install/device cell first; quick mode read from the environment."""
  nb = nbformat.read(path, as_version=4)
  code = [c.source for c in nb.cells if c.cell_type == "code"]
  assert code, f"{path.name} has no code cells"
  first = code[0]
  assert "ngrok_jax" in first and "pip" in first, (
      f"{path.name}: the first code cell must install ngrok_jax if needed")
  for needle in ("jax.default_backend()", "jax.devices()"):
    assert needle in first, f"{path.name}: first code cell lacks {needle}"
  assert any("NGROK_QUICK" in s for s in code), (
      f"{path.name} does not read NGROK_QUICK")
  assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


# What a placeholder looks like: text a user must replace before it works.
PLACEHOLDER = re.compile(r"YOUR[-_]|<your|CHANGE[-_]?ME|\bTODO\b|\bFIXME\b|\bXXX\b",
                         re.I)


def _code(path):
  """The code cells' sources."""
  nb = nbformat.read(path, as_version=4)
  return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_placeholder(path):
  nb = nbformat.read(path, as_version=4)
  bad = [m.group(0) for c in nb.cells for m in PLACEHOLDER.finditer(c.source)]
  assert not bad, f"{path.name}: placeholders {bad}"


def test_install_cell_is_one_setting_shared_by_every_notebook():
  """The install source is set in one place: NGROK_JAX_SOURCE at the top of
  the first cell (or the environment), the same cell in every notebook, as
  the README's install section says."""
  firsts = {p.name: _code(p)[0] for p in NOTEBOOKS}
  assert len(set(firsts.values())) == 1, (
      "the notebooks' install cells differ: " + ", ".join(firsts))
  first = next(iter(firsts.values()))
  assert len(re.findall(r"^NGROK_JAX_SOURCE = \"\"$", first, re.M)) == 1
  assert 'os.environ.get("NGROK_JAX_SOURCE", NGROK_JAX_SOURCE)' in first
  readme = (NOTEBOOK_DIR.parent / "README.md").read_text()
  assert "NGROK_JAX_SOURCE" in readme and "## Install" in readme


def _run_install_cell(tmp_path, source):
  """The install cell in an interpreter that cannot import ngrok_jax (no
  site-packages), from a folder outside any checkout."""
  cell = _code(NOTEBOOKS[0])[0]
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "NGROK_JAX_SOURCE")}
  if source is not None:
    env["NGROK_JAX_SOURCE"] = source
  (tmp_path / "nb").mkdir()
  return subprocess.run([sys.executable, "-S", "-c", cell],
                        cwd=tmp_path / "nb", env=env, capture_output=True,
                        text=True, timeout=120)


def test_install_cell_without_a_source_says_what_to_do(tmp_path):
  proc = _run_install_cell(tmp_path, None)
  assert proc.returncode != 0
  msg = proc.stderr.strip().splitlines()[-1]
  assert msg.startswith("RuntimeError: ngrok_jax is not installed"), msg
  for needle in ("NGROK_JAX_SOURCE", "python3 -m build",
                 "ngrok_jax-<version>-py3-none-any.whl", "run this cell again"):
    assert needle in msg, needle


def test_install_cell_installs_from_the_given_source(tmp_path):
  # -S has no pip: the failed pip command shows what the cell installs
  proc = _run_install_cell(tmp_path, "/somewhere/ngrok_jax-9.9.9-py3-none-any.whl")
  assert proc.returncode != 0
  assert ("'pip', 'install', '-q', '/somewhere/ngrok_jax-9.9.9-py3-none-any"
          ".whl']" in proc.stderr), proc.stderr[-2000:]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_full_size_reads_the_paper_presets(path, monkeypatch):
  """The full-size configuration is the presets' own values (T, c, the
  amplifier), read from ngrok_jax.presets, never copies: with the preset
  changed, the notebook's full-size configuration follows."""
  from ngrok_jax._src.training import presets
  code = _code(path)
  assert re.search(r'get_preset\("paper-[a-z]+"\)', "\n".join(code)), (
      f"{path.name} does not read a paper preset")
  cfg = presets.PRESETS["paper-add"]["config"]
  monkeypatch.setitem(cfg, "meta_every", 7)
  monkeypatch.setitem(cfg, "c", 0.375)
  monkeypatch.setitem(cfg, "amp_hidden", (24, 24))
  monkeypatch.setenv("NGROK_QUICK", "0")
  ns = {}
  exec(compile(code[0] + "\n" + code[1], path.name, "exec"), ns)  # config cells
  base = ns.get("BASE") or {}
  got = (ns.get("META_EVERY", base.get("meta_every")), ns.get("C", base.get("c")),
         tuple(ns.get("AMP_HIDDEN", base.get("amp_hidden")) or ()))
  assert got == (7, 0.375, (24, 24)), f"{path.name}: full size uses {got}"


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory):
  """A kernelspec for this interpreter, in a temporary folder."""
  return notebook_kernels.kernel_dirs(tmp_path_factory.mktemp("kernels"),
                                      KERNEL_NAME, sys.executable)


def test_every_notebook_is_executed_once():
  """Every notebook runs in quick mode in this session: here, or (the
  quickstart) against the wheel in tests/test_release.py, whose notebook
  test must still execute it and check its summary."""
  assert (NOTEBOOK_DIR / RUN_BY_RELEASE_TEST).is_file()
  assert EXECUTED_HERE and len(EXECUTED_HERE) == len(NOTEBOOKS) - 1
  release = (pathlib.Path(__file__).resolve().parent
             / "test_release.py").read_text()
  body = release.split("def test_notebook_runs_against_the_wheel(", 1)[1]
  body = body.split("\ndef ", 1)[0]
  for needle in (f'"{RUN_BY_RELEASE_TEST}"', "notebook_kernels.execute(",
                 '"NGROK_QUICK", "1"'):
    assert needle in body, f"test_release's notebook test lacks {needle}"


@pytest.mark.parametrize("path", EXECUTED_HERE, ids=_ids(EXECUTED_HERE))
def test_runs_in_quick_mode(path, kernel_dirs, monkeypatch, tmp_path):
  monkeypatch.setenv("NGROK_QUICK", "1")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  # Notebooks that write files in quick mode put them under this folder.
  monkeypatch.setenv("NGROK_NOTEBOOK_TMP", str(tmp_path))
  nb = nbformat.read(path, as_version=4)
  took = notebook_kernels.execute(nb, kernel_name=KERNEL_NAME,
                                  dirs=kernel_dirs, cwd=NOTEBOOK_DIR,
                                  label=f"{path.name} in quick mode")
  print(f"{path.name}: {took:.1f}s in quick mode")


def test_quickstart_quick_mode_is_the_quick_preset(monkeypatch):
  """The quickstart's quick mode is the command line's quick preset (read,
  not copied) for its full 2000 steps (NGROK_SMOKE=1 makes it a tiny smoke
  run): the size that groks on a CPU in minutes, where the former tiny
  quick mode stayed at chance (test accuracy 0.008)."""
  from ngrok_jax._src.training import presets
  code = _code(NOTEBOOK_DIR / "quickstart.ipynb")
  monkeypatch.setitem(presets.PRESETS["quick"]["config"], "dim", 48)
  monkeypatch.setenv("NGROK_QUICK", "1")
  monkeypatch.delenv("NGROK_SMOKE", raising=False)
  ns = {}
  exec(compile(code[0] + "\n" + code[1], "quickstart", "exec"), ns)
  quick = presets.PRESETS["quick"]
  assert ns["BASE"] == quick["config"] and ns["BASE"]["dim"] == 48
  assert ns["METHOD_CONFIG"] == quick["method_config"]
  assert ns["STEPS"] == quick["steps"] == 2000 and "neuralgrok" in ns[
      "METHODS"]


@pytest.mark.slow  # the quick mode for real: 5-8 minutes on a shared 2-core CPU
def test_quickstart_groks_in_its_quick_mode(kernel_dirs, monkeypatch):
  """Its quick mode groks: NeuralGrok reaches 95% test accuracy in both
  seeds within the 2000 steps."""
  monkeypatch.setenv("NGROK_QUICK", "1")
  monkeypatch.delenv("NGROK_SMOKE", raising=False)
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  nb = nbformat.read(NOTEBOOK_DIR / "quickstart.ipynb", as_version=4)
  nb.cells.append(nbformat.v4.new_code_cell(
      "print('T95=' + repr(table[('neuralgrok', 0.95)]['success']))"))
  notebook_kernels.execute(nb, kernel_name=KERNEL_NAME, dirs=kernel_dirs,
                           cwd=NOTEBOOK_DIR, label="quickstart, quick mode")
  text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
  assert "T95=2" in text, text
