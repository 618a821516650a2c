"""The notebooks in notebooks/: committed without outputs, and each runs top to
bottom in its quick mode (NGROK_QUICK=1) without a cell error.

The kernel is the interpreter running pytest (a kernelspec written to a
temporary folder), so a fresh clone after ``pip install -e '.[test]'`` needs
no ``ipykernel install`` and never picks up another Python's kernel.
"""
import json
import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "ngrok-jax-test"


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


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory):
  """A kernelspec for this interpreter, in a temporary folder."""
  root = tmp_path_factory.mktemp("kernels")
  spec_dir = root / KERNEL_NAME
  spec_dir.mkdir()
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
               "{connection_file}"],
      "display_name": "ngrok_jax tests",
      "language": "python",
  }))
  return [str(root)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_runs_in_quick_mode(path, kernel_dirs, monkeypatch, tmp_path):
  monkeypatch.setenv("NGROK_QUICK", "1")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  # Notebooks that write files in quick mode put them under this folder.
  monkeypatch.setenv("NGROK_NOTEBOOK_TMP", str(tmp_path))
  nb = nbformat.read(path, as_version=4)
  km = KernelManager(kernel_name=KERNEL_NAME,
                     kernel_spec_manager=KernelSpecManager(
                         kernel_dirs=kernel_dirs))
  client = nbclient.NotebookClient(
      nb, km=km, timeout=600, allow_errors=False,
      resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
  start = time.time()
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    pytest.fail(f"{path.name}: a cell raised in quick mode:\n{e}")
  finally:
    # The client does not own a kernel manager it was given: shut the
    # kernel down here, or it lives (and holds memory and CPU) until pytest
    # exits.
    if km.has_kernel:
      km.shutdown_kernel(now=True)
  print(f"{path.name}: {time.time() - start:.1f}s in quick mode")
