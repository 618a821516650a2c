"""Running a notebook in a test (tests/test_notebooks.py, and
tests/test_release.py against the wheel): a kernelspec for a given Python in
a temporary folder, and :func:`execute`, which runs every cell, fails the
test on the first cell error and always shuts the kernel down."""
import json
import pathlib
import time

import pytest


def kernel_dirs(root: pathlib.Path, name: str, python: str):
  """Writes a kernelspec ``name`` that starts ``python`` under ``root``.

  Returns:
    The kernel folders to give :func:`execute` (``[str(root)]``).
  """
  spec_dir = root / name
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": f"ngrok_jax tests ({name})", "language": "python"}))
  return [str(root)]


def execute(nb, *, kernel_name: str, dirs, cwd, label: str) -> float:
  """Runs every cell of ``nb`` (in place: outputs are filled in) on kernel
  ``kernel_name`` from ``dirs``, in folder ``cwd``; a cell error fails the
  test, naming ``label``.

  Returns:
    The wall seconds it took.
  """
  import nbclient
  from jupyter_client.kernelspec import KernelSpecManager
  from jupyter_client.manager import KernelManager
  km = KernelManager(kernel_name=kernel_name,
                     kernel_spec_manager=KernelSpecManager(kernel_dirs=dirs))
  client = nbclient.NotebookClient(
      nb, km=km, timeout=600, allow_errors=False,  # a cell: ~1 min warm
      resources={"metadata": {"path": str(cwd)}})
  start = time.time()
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    pytest.fail(f"{label}: a cell raised:\n{e}")
  finally:
    # The client does not own a kernel manager it was given: shut the
    # kernel down here, or it lives (and holds memory and CPU) until pytest
    # exits.
    if km.has_kernel:
      km.shutdown_kernel(now=True)
  return time.time() - start
