"""Session-wide test setup: the ``--runslow`` option, a persistent XLA
compilation cache and fast (-O0) backend compilation."""
import os
import tempfile

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
# LLVM's optimisation passes are most of that.  Tests compile with -O0 (XLA's
# HLO passes, and so the computation, are unchanged; only the generated
# machine code is less optimised): about 20% less wall time from a cold
# cache.  Subprocesses inherit it; an explicit level in XLA_FLAGS wins.
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def pytest_configure(config):
  del config
  for name, default in CACHE_ENV.items():
    os.environ.setdefault(name, default)
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_backend_optimization_level" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE_FLAG}".strip()
  import jax  # after the environment is set, before any test compiles
  jax.config.update("jax_compilation_cache_dir",
                    os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update(
      "jax_persistent_cache_min_compile_time_secs",
      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow") or os.environ.get("NGROK_SLOW") == "1":
    return
  deselected = [i for i in items if "slow" in i.keywords]
  if deselected:
    config.hook.pytest_deselected(items=deselected)
    items[:] = [i for i in items if "slow" not in i.keywords]
