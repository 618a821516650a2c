"""Session-wide test setup: the ``--runslow`` option, a persistent XLA
compilation cache, fast (-O0) backend compilation, the longest test files
first (for ``--dist loadfile``), and the fixtures the test
modules share (``tiny_config``, ``tiny_fields``, ``toy_problem``)."""
import os
import subprocess
import sys
import tempfile
from typing import Any, NamedTuple, Tuple

import pytest

# Shared by every test of the session and, through the environment, by the
# ``python -m ngrok_jax`` subprocesses the tests start (the runs here are
# tiny: compiling dominates their time; a cached executable is the same
# program, so results are unchanged).  An explicitly set
# JAX_COMPILATION_CACHE_DIR is respected.
CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": os.path.join(tempfile.gettempdir(),
                                              "ngrok_jax_test_jaxcache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
}


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False,
                   help="also run tests marked slow")


# The test programs are tiny: compiling them dominates the suite's time, and
# LLVM's code generation is most of that.  Tests compile with
# FAST_COMPILE_FLAGS (XLA's HLO passes are unchanged; the generated machine
# code is less optimised): -O0 took about 20% off the suite's wall time from a
# cold cache, and XLA:CPU's older loop emitters instead of its fusion emitters
# took a further 25% off compiling a tiny three-method run (64 s -> 48 s;
# measured numbers differ from the default emitters' in the last float32
# bits).  Subprocesses inherit them; a flag already named in XLA_FLAGS wins,
# and a flag this jaxlib does not know (XLA aborts the process on one) is
# left out.  Caveat, measured: not every program computes the same at -O0.
# NeuralGrok with lookahead="inner", amp_inputs="rich" and lookahead_steps=2
# gets a NaN meta-gradient for one seed of two at -O0 (with either emitter)
# and a finite one at the default level.  It is a miscompile, not fragile
# arithmetic: the same program with jax.debug.print callbacks in the
# look-ahead (which change no value) computes, at -O0, the default level's
# numbers for both seeds (meta-gradient norms, outer losses, amplifier
# changes and test losses of a 4-step run agree to 5e-6 relative).  So a
# result seen only under pytest is checked at the default level too.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                      "--xla_cpu_use_fusion_emitters=false")


def _xla_accepts(flag):
  """Whether this jaxlib's XLA knows ``flag`` (tried in a subprocess: XLA
  aborts a process whose XLA_FLAGS names an unknown flag)."""
  probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
  env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
  try:
    return subprocess.run([sys.executable, "-c", probe], env=env,
                          capture_output=True, timeout=300).returncode == 0
  except subprocess.TimeoutExpired:
    return False


def pytest_configure(config):
  del config
  for name, default in CACHE_ENV.items():
    os.environ.setdefault(name, default)
  flags = os.environ.get("XLA_FLAGS", "")
  for flag in FAST_COMPILE_FLAGS:
    name = flag.split("=")[0].lstrip("-")
    if name not in flags and (flag == FAST_COMPILE_FLAGS[0]
                              or _xla_accepts(flag)):
      flags = f"{flags} {flag}".strip()
  os.environ["XLA_FLAGS"] = flags
  import jax  # after the environment is set, before any test compiles
  jax.config.update("jax_compilation_cache_dir",
                    os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update(
      "jax_persistent_cache_min_compile_time_secs",
      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


#: The test files that take longest, longest first (worker seconds measured
#: on a fresh clone, -n 2: from a cold compilation cache, cross_task 281, train
#: 280, cli 244, amplifier_learning 190, notebooks 116, transforms 113,
#: sharding 109, checkpoint 108, experiments 98, device_check 97,
#: multiprocess 90, pes 77, benchmark 76, release 72; warm, about half).
#: ``-n 2 --dist loadfile`` hands whole files to the workers in collection
#: order (``--no-loadscope-reorder`` in setup.cfg; by default xdist orders
#: files by their number of tests, which put few-test files last, where one
#: of them alone kept a worker busy after the other had finished): starting
#: the long ones first, the short files fill in around them and both workers
#: finish together (simulated on those times: 1200 s instead of 1275 s cold,
#: 698 s instead of 723 s warm, against 1194 s and 694 s for a perfect
#: split).
LONG_FILES = ("test_cross_task.py", "test_cli.py", "test_train.py",
              "test_amplifier_learning.py", "test_checkpoint.py",
              "test_notebooks.py", "test_experiments.py",
              "test_multiprocess.py", "test_device_check.py",
              "test_sharding.py", "test_transforms.py", "test_release.py",
              "test_benchmark.py", "test_pes.py")


def long_first(items):
  """``items`` with the files of :data:`LONG_FILES` first, in its order; the
  order within a file, and of the other files, unchanged."""
  rank = {name: i for i, name in enumerate(LONG_FILES)}
  return sorted(items, key=lambda i: rank.get(i.path.name, len(rank)))


def pytest_collection_modifyitems(config, items):
  items[:] = long_first(items)
  if config.getoption("--runslow") or os.environ.get("NGROK_SLOW") == "1":
    return
  deselected = [i for i in items if "slow" in i.keywords]
  if deselected:
    config.hook.pytest_deselected(items=deselected)
    items[:] = [i for i in items if "slow" not in i.keywords]


# ------------------------------------------------------------ shared fixtures
from run_folders import TINY  # noqa: E402  the tiny configuration


@pytest.fixture
def tiny_config():
  """A factory of the tiny :class:`ngrok_jax.TrainConfig`:
  ``tiny_config(**fields)`` (fields override :data:`TINY`)."""
  import ngrok_jax as nj

  def make(**fields):
    return nj.TrainConfig(**{**TINY, **fields})
  return make


@pytest.fixture
def tiny_fields():
  """The fields of the tiny config, a fresh dict."""
  return dict(TINY)


class ToyProblem(NamedTuple):
  """A regression problem for the optax transformations on a model that is
  not this library's transformer: a 3-7-1 tanh MLP, 30 training and 10
  outer examples, and a 1-6-5-1 amplifier."""
  params: Any
  train: Tuple[Any, Any]
  outer: Tuple[Any, Any]
  amp: Any  # the Amplifier module
  phi: Any  # its parameters (PRNG key 3), in the problem's dtype

  @staticmethod
  def mlp(params, x):
    import jax.numpy as jnp
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]

  @staticmethod
  def loss(params, x, y):
    """Mean squared error of :meth:`mlp`."""
    import jax.numpy as jnp
    return jnp.mean((ToyProblem.mlp(params, x) - y) ** 2)


@pytest.fixture
def toy_problem():
  """A factory: ``toy_problem(dtype=jnp.float32)`` -> :class:`ToyProblem`
  (the same numbers every call)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import ngrok_jax as nj

  def make(dtype=jnp.float32):
    r = np.random.default_rng(0)
    x = jnp.asarray(r.normal(size=(40, 3)), dtype)
    y = jnp.sin(x.sum(1, keepdims=True))
    params = {"w1": jnp.asarray(r.normal(size=(3, 7)), dtype),
              "b1": jnp.asarray(0.1 * r.normal(size=(7,)), dtype),
              "w2": jnp.asarray(r.normal(size=(7, 1)), dtype)}
    amp = nj.Amplifier((6, 5))
    phi = jax.tree.map(lambda a: a.astype(dtype),
                       amp.init(jax.random.PRNGKey(3), jnp.zeros((1,))))
    return ToyProblem(params, (x[:30], y[:30]), (x[30:], y[30:]), amp, phi)
  return make
