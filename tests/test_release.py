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
wheel (the ``test`` extra), no network; it must print no warning.

The fresh virtual environment sees the packages of the interpreter that runs
the tests (:func:`make_venv`), whether that is the system's or a virtual
environment's, so the tests pass in both.  To check the second by hand, from
a fresh clone::

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -e '.[test,tensorboard,wandb]'
    /tmp/venv/bin/python -m pytest -q -n 0 tests/test_release.py tests/test_notebooks.py
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
             "CHANGELOG.md", "LICENSE", "CITATION.cff")
# a line of a build's output that is a warning: build's own ("WARNING
# ..."), distutils' ("warning: ..."), a Python warning ("...Warning: ...")
WARNING_LINE = re.compile(r"^(?:\s*(?:WARNING|[Ww]arning)\b.*|.*\w*Warning:.*)$",
                          re.M)
DATA_SUFFIXES = (".json", ".msgpack", ".npz")


def _clean_env():
  env = dict(os.environ)
  env.pop("PYTHONPATH", None)
  return env


def _site_dirs(python):
  """The site-packages folders of ``python`` (user site too if enabled)."""
  code = ("import json, site\n"
          "dirs = site.getsitepackages()\n"
          "if site.ENABLE_USER_SITE: dirs.append(site.getusersitepackages())\n"
          "print(json.dumps(dirs))")
  out = subprocess.run([str(python), "-c", code], capture_output=True,
                       text=True, check=True, timeout=300, env=_clean_env())
  return [d for d in json.loads(out.stdout) if os.path.isdir(d)]


def make_venv(path, python=sys.executable, pip=True):
  """A fresh virtual environment at ``path`` that sees the packages of
  ``python`` (the running interpreter by default).

  ``--system-site-packages`` alone is not enough: from a Python that runs
  in a virtual environment it gives the base interpreter's packages, not
  that environment's.  So a ``.pth`` file of the new environment adds
  ``python``'s own site folders (``site.addsitedir``: their ``.pth`` files
  run too) after the new environment's site-packages, where a package
  installed into it comes first.

  Returns:
    The new environment's Python.
  """
  path = pathlib.Path(path)
  subprocess.run([str(python), "-m", "venv", "--system-site-packages",
                  *([] if pip else ["--without-pip"]), str(path)],
                 check=True, timeout=300, env=_clean_env())
  py = path / "bin" / "python"
  purelib = subprocess.run(
      [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      capture_output=True, text=True, check=True, timeout=300,
      env=_clean_env()).stdout.strip()
  line = "import site; " + "; ".join(f"site.addsitedir({d!r})"
                                     for d in _site_dirs(python))
  (pathlib.Path(purelib) / "_ngrok_jax_tests_parent_env.pth").write_text(
      line + "\n")
  return py


def test_a_test_venv_sees_the_running_environment_even_from_a_venv(tmp_path):
  """From a Python that itself runs in a virtual environment (``outer``,
  holding a module the system lacks), :func:`make_venv`'s environment sees
  that module; its own site-packages still comes first."""
  outer = tmp_path / "outer"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(outer)],
                 check=True, timeout=300)
  outer_py = outer / "bin" / "python"
  outer_site = _site_dirs(outer_py)[0]
  pathlib.Path(outer_site, "ngrok_probe_outer.py").write_text("WHERE = 'outer'\n")
  inner_py = make_venv(tmp_path / "inner", python=outer_py, pip=False)
  inner_site = _site_dirs(inner_py)[0]
  pathlib.Path(inner_site, "ngrok_probe_both.py").write_text("WHERE = 'inner'\n")
  pathlib.Path(outer_site, "ngrok_probe_both.py").write_text("WHERE = 'outer'\n")
  proc = subprocess.run(
      [str(inner_py), "-c", "import sys, ngrok_probe_outer as a, "
       "ngrok_probe_both as b; print(a.WHERE, b.WHERE, sys.prefix)"],
      capture_output=True, text=True, timeout=300, env=_clean_env(),
      cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ["outer", "inner", str(tmp_path / "inner")]


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
  for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
    for other in set(re.findall(r"ngrok_jax-(\d+\.\d+\.\d+)[-.]",
                                page.read_text())):
      assert other == version, f"{page.name} names an old release: {other}"
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
  # byte-compiling is part of a build ("byte-compiling is disabled" is a
  # warning of the environment, not of the package)
  build_env = _clean_env()
  build_env.pop("PYTHONDONTWRITEBYTECODE", None)
  proc = subprocess.run(
      [sys.executable, "-m", "build", "--no-isolation", "--outdir",
       str(dist), str(src)], cwd=tmp, env=build_env, capture_output=True,
      text=True, timeout=600)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  return dist, src, proc.stdout + proc.stderr


def test_the_build_prints_no_warning_and_every_folder_is_a_package(release):
  """``python -m build`` prints no warning, and every folder of the package
  that holds a file is one of setup.cfg's packages: a folder of data files
  that is not (``optim/rules``, the probes) is a warning of newer
  setuptools ("would be ignored"), whichever setuptools runs here."""
  _, src, log = release
  seen = ("WARNING Package 'ngrok_jax.x' is absent from the `packages`",
          "warning: no files found matching '*.npz' under directory 'x'",
          "/a/b.py:1: SetuptoolsDeprecationWarning: Package would be ignored",
          "copying ngrok_jax/warnings.py -> build/lib")
  assert [bool(WARNING_LINE.search(l)) for l in seen] == [True] * 3 + [False]
  warnings = WARNING_LINE.findall(log)
  assert not warnings, "\n".join(warnings[:10])
  code = ("import json; from setuptools.config.setupcfg import "
          "read_configuration as r; print(json.dumps(r('setup.cfg')"
          "['options']['packages']))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=src,
                        capture_output=True, text=True, timeout=300,
                        env=_clean_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  packages = set(json.loads(proc.stdout.strip().splitlines()[-1]))
  folders = {".".join(p.parent.relative_to(src).parts)
             for p in (src / "ngrok_jax").rglob("*") if p.is_file()}
  assert "ngrok_jax._src.optim.rules" in folders
  missing = sorted(folders - packages)
  assert not missing, f"folders that are not packages: {missing}"


def test_licence_and_citation_file():
  """LICENSE is the Apache License 2.0 that setup.cfg declares; CITATION.cff
  cites the NeuralGrok paper and this version of the library."""
  import yaml
  licence = (ROOT / "LICENSE").read_text()
  assert "license = Apache-2.0" in (ROOT / "setup.cfg").read_text()
  assert licence.split()[:4] == ["Apache", "License", "Version", "2.0,"]
  assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
  assert "END OF TERMS AND CONDITIONS" in licence
  assert len(licence.split()) > 1500  # the whole text, not a stub
  cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
  assert cff["cff-version"] == "1.2.0"
  assert cff["version"] == ngrok_jax.__version__
  changelog = (ROOT / "CHANGELOG.md").read_text()
  assert f"## [{cff['version']}] - {cff['date-released']}" in changelog
  assert cff["license"] == "Apache-2.0"
  paper = cff["preferred-citation"]
  assert paper["title"].startswith("NeuralGrok")
  assert [a["family-names"] for a in paper["authors"]] == [
      "Zhou", "Fan", "Jaggi", "Fu"]
  assert paper["year"] == 2025
  assert any("2504.17243" in str(i["value"]) for i in paper["identifiers"])


def test_wheel_and_sdist_hold_the_package_and_its_data(release):
  dist, src, _ = release
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
  assert {"CHANGELOG.md", "README.md", "setup.cfg", "pyproject.toml",
          "LICENSE", "CITATION.cff"} <= snames
  assert any(n.startswith(f"ngrok_jax-{version}.dist-info/")
             and n.endswith("LICENSE") for n in names), "the wheel's LICENSE"
  # twine check: the metadata and the README render on the package index
  proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                         *map(str, wheels + sdists)], capture_output=True,
                        text=True, timeout=300, env=_clean_env())
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  assert proc.stdout.count("PASSED") == 2, proc.stdout


@pytest.fixture(scope="module")
def venv(release, tmp_path_factory):
  """A fresh virtual environment with the wheel installed, shared by the
  tests below.  Offline: the running interpreter's packages (jax, flax,
  ipykernel, ...) stay visible (:func:`make_venv`) and the wheel goes in
  with ``--no-deps --no-index``; ngrok_jax itself comes from the wheel,
  found before any editable install of the checkout."""
  dist, _, _ = release
  wheel = next(dist.glob("*.whl"))
  venv = tmp_path_factory.mktemp("venv") / "venv"
  py = make_venv(venv)
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
