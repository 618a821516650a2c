import os

import pytest


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False,
                   help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow") or os.environ.get("NGROK_SLOW") == "1":
    return
  deselected = [i for i in items if "slow" in i.keywords]
  if deselected:
    config.hook.pytest_deselected(items=deselected)
    items[:] = [i for i in items if "slow" not in i.keywords]
