"""Tolerances shared by the tests that compare runs across device and
process layouts (test_sharding, test_multiprocess)."""


def layout_atol(key: str) -> float:
  """Absolute tolerance of a metric compared across device layouts.  The
  amplifier-learning metrics are differences of nearly equal quantities:
  ``amp/*`` are norms of G - R (or phi - phi0) relative to norms of the
  same size, so float32 rounding of G and R (eps 1.2e-7) is absolute in the
  ratio (measured 4.2e-9 on a value of 0.0029); ``meta/improvement`` is
  the difference of two outer losses of about 4, rounding ~4 eps = 5e-7."""
  if key.startswith("amp/"):
    return 3e-7
  if key == "meta/improvement":
    return 2e-6
  return 1e-9
