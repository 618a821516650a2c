"""The release: ``python -m build`` gives a wheel and an sdist holding the
package and its data, ``twine check`` passes on both, the wheel installs into
a fresh virtual environment (one per module, shared by the tests) and imports
from outside the repository, and notebooks/quickstart.ipynb runs in its quick
mode on a kernel of that environment; the version agrees across the package,
the changelog and the docs.

The build runs on a copy of the package sources with probe data files added
(``*.json``, ``*.msgpack``, ``*.npz`` in a subfolder without ``__init__``),
so the data mechanism is checked whether or not the package has data files
today.  ``--no-isolation``: the build uses the installed setuptools and
wheel (the ``test`` extra), no network.
"""
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import ngrok_jax

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROBES = {"_release_probe/probe.json": b'{"probe": 1}\n',
          "_release_probe/probe.msgpack": b"\x81\xa5probe\x01",
          "_release_probe/deeper/probe.npz": b"PK\x05\x06" + b"\0" * 18}
TOP_FILES = ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in",
             "CHANGELOG.md")
DATA_SUFFIXES = (".json", ".msgpack", ".npz")


def _clean_env():
  env = dict(os.environ)
  env.pop("PYTHONPATH", None)
  return env


def _package_files(pkg: pathlib.Path):
  """Every file of the package that a release must carry (relative)."""
  return sorted(str(p.relative_to(pkg.parent)) for p in pkg.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
                and (p.suffix == ".py" or p.suffix in DATA_SUFFIXES))


def _changelog_version():
  text = (ROOT / "CHANGELOG.md").read_text()
  m = re.search(r"^## \[(\d+\.\d+\.\d+[^\]]*)\] - (\d{4}-\d\d-\d\d)$", text,
                re.M)
  assert m, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' entry"
  return m.group(1)


def test_version_changelog_and_docs_agree():
  version = ngrok_jax.__version__
  assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
  changelog = (ROOT / "CHANGELOG.md").read_text()
  assert "## [Unreleased]" in changelog
  assert _changelog_version() == version, (
      "the newest CHANGELOG.md entry must be ngrok_jax.__version__")
  # the README's install section names this version's wheel
  readme = (ROOT / "README.md").read_text()
  wheel = f"ngrok_jax-{version}-py3-none-any.whl"
  assert wheel in readme, f"README.md does not name {wheel}"
  for other in set(re.findall(r"ngrok_jax-(\d+\.\d+\.\d+)-py3", readme)):
    assert other == version, f"README.md names an old wheel: {other}"
  # setup.cfg takes the version from the package (one place)
  assert "version = attr: ngrok_jax.__version__" in (
      ROOT / "setup.cfg").read_text()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  """(dist folder, source copy): the sdist and the wheel built from it."""
  if importlib.util.find_spec("build") is None:
    pytest.fail("the 'build' package is missing: pip install -e '.[test]'")
  tmp = tmp_path_factory.mktemp("release")
  src = tmp / "src"
  shutil.copytree(ROOT / "ngrok_jax", src / "ngrok_jax",
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
  for name in TOP_FILES:
    shutil.copy(ROOT / name, src / name)
  for rel, data in PROBES.items():
    path = src / "ngrok_jax" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
  dist = tmp / "dist"
  # sdist first, then the wheel built from the unpacked sdist (build's
  # default): a file the sdist lacks is missing from the wheel too.
  proc = subprocess.run(
      [sys.executable, "-m", "build", "--no-isolation", "--outdir",
       str(dist), str(src)], cwd=tmp, env=_clean_env(), capture_output=True,
      text=True, timeout=600)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  return dist, src


def test_wheel_and_sdist_hold_the_package_and_its_data(release):
  dist, src = release
  version = ngrok_jax.__version__
  wheels = sorted(dist.glob("*.whl"))
  sdists = sorted(dist.glob("*.tar.gz"))
  assert [w.name for w in wheels] == [f"ngrok_jax-{version}-py3-none-any.whl"]
  assert [s.name for s in sdists] == [f"ngrok_jax-{version}.tar.gz"]
  want = _package_files(src / "ngrok_jax")
  assert any(w.endswith("probe.npz") for w in want)
  assert len([w for w in want if w.endswith(".py")]) > 20
  with zipfile.ZipFile(wheels[0]) as z:
    names = set(z.namelist())
    meta = z.read(f"ngrok_jax-{version}.dist-info/METADATA").decode()
    entry = z.read(f"ngrok_jax-{version}.dist-info/entry_points.txt").decode()
  missing = [w for w in want if w not in names]
  assert not missing, f"the wheel lacks {missing[:5]}"
  assert f"\nVersion: {version}\n" in meta
  assert "ngrok-jax = ngrok_jax.cli:main" in entry
  assert not any(n.startswith(("tests/", "experiments/")) for n in names)
  with tarfile.open(sdists[0]) as t:
    snames = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
  missing = [w for w in want if w not in snames]
  assert not missing, f"the sdist lacks {missing[:5]}"
  assert {"CHANGELOG.md", "README.md", "setup.cfg", "pyproject.toml"} <= snames
  # twine check: the metadata and the README render on the package index
  proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                         *map(str, wheels + sdists)], capture_output=True,
                        text=True, timeout=300, env=_clean_env())
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  assert proc.stdout.count("PASSED") == 2, proc.stdout


@pytest.fixture(scope="module")
def venv(release, tmp_path_factory):
  """A fresh virtual environment with the wheel installed, shared by the
  tests below.  Offline: the system's packages (jax, flax, ipykernel, ...)
  stay visible (``--system-site-packages``) and the wheel goes in with
  ``--no-deps --no-index``; ngrok_jax itself comes from the wheel, found
  before any editable install of the checkout."""
  dist, _ = release
  wheel = next(dist.glob("*.whl"))
  venv = tmp_path_factory.mktemp("venv") / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                  str(venv)], check=True, timeout=300)
  py = venv / "bin" / "python"
  proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps",
                         "--no-index", str(wheel)], capture_output=True,
                        text=True, timeout=300, env=_clean_env())
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  return venv


def test_wheel_installs_into_a_fresh_venv_and_imports(venv, tmp_path):
  py = venv / "bin" / "python"
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  check = (
      "import importlib.metadata as md, importlib.resources as r, json\n"
      "import ngrok_jax\n"
      "from ngrok_jax._src.training.presets import get_preset\n"
      "files = r.files('ngrok_jax')\n"
      "print(json.dumps(dict(file=ngrok_jax.__file__,\n"
      "  version=ngrok_jax.__version__, dist=md.version('ngrok_jax'),\n"
      "  probe=json.loads((files / '_release_probe' / 'probe.json')"
      ".read_text()),\n"
      "  npz=(files / '_release_probe' / 'deeper' / 'probe.npz').is_file(),\n"
      "  T=get_preset('paper-add')['config']['meta_every'])))\n")
  proc = subprocess.run([str(py), "-c", check], cwd=outside,
                        capture_output=True, text=True, timeout=300,
                        env=_clean_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  assert got["file"].startswith(str(venv)), got["file"]
  assert got["version"] == got["dist"] == ngrok_jax.__version__
  assert got["probe"] == {"probe": 1} and got["npz"]
  assert got["T"] == 4
  # the console script of the wheel
  proc = subprocess.run([str(venv / "bin" / "ngrok-jax"), "presets"],
                        cwd=outside, capture_output=True, text=True,
                        timeout=300, env=_clean_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "paper-poly" in proc.stdout


def test_notebook_runs_against_the_wheel(venv, tmp_path, monkeypatch):
  """notebooks/quickstart.ipynb in its quick mode, on a kernel of the
  wheel's venv started outside the repository: the notebook's process
  imports the installed wheel, not the source tree."""
  import nbformat
  import notebook_kernels

  dirs = notebook_kernels.kernel_dirs(tmp_path / "kernels", "wheel-venv",
                                      str(venv / "bin" / "python"))
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  monkeypatch.delenv("PYTHONPATH", raising=False)
  monkeypatch.delenv("NGROK_JAX_SOURCE", raising=False)
  monkeypatch.setenv("NGROK_QUICK", "1")
  # its tiny smoke run (tests/test_notebooks.py's slow test runs the quick
  # mode itself and checks that NeuralGrok groks)
  monkeypatch.setenv("NGROK_SMOKE", "1")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  monkeypatch.setenv("NGROK_NOTEBOOK_TMP", str(tmp_path))
  nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
  # one more cell: where the notebook's process found ngrok_jax
  nb.cells.append(nbformat.v4.new_code_cell(
      "import json as _j, os as _o, sys as _s, ngrok_jax as _n\n"
      "print('WHERE=' + _j.dumps(dict(file=_n.__file__, cwd=_o.getcwd(), "
      "exe=_s.executable, path=_s.path, quick=QUICK)))"))
  notebook_kernels.execute(nb, kernel_name="wheel-venv", dirs=dirs,
                           cwd=outside,
                           label="quickstart.ipynb against the wheel")
  text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
  got = json.loads(text.split("WHERE=", 1)[1].splitlines()[0])
  assert got["quick"] is True
  assert got["file"].startswith(str(venv)), got["file"]
  assert got["exe"].startswith(str(venv)), got["exe"]
  assert pathlib.Path(got["cwd"]) == outside, got["cwd"]
  repo = str(ROOT)
  assert not any(p and (p == repo or p.startswith(repo + os.sep))
                 for p in got["path"]), got["path"]
  # the notebook's own cells ran too (its last cell prints the summary)
  last = [c for c in nb.cells if c.cell_type == "code"][-2]
  summary = "".join(o.get("text", "") for o in last.outputs)
  assert "neuralgrok" in summary, summary[-2000:]
