"""Metrics: Absolute Gradient Entropy, norms, and steps to generalize."""
from __future__ import annotations

import math
from typing import Dict, Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["absolute_entropy", "global_norm", "steps_to_threshold",
           "summarize_steps"]


def absolute_entropy(tree) -> jax.Array:
  r"""Absolute entropy :math:`-\sum_i |x_i| \log |x_i|` over all leaves.

  With ``0 log 0 = 0`` (``xlogy``), so zeros contribute nothing. Applied to
  gradients this is the paper's Absolute Gradient Entropy (AGE).
  """
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.zeros([], jnp.float32)
  return -sum(jnp.sum(jax.scipy.special.xlogy(jnp.abs(l).astype(jnp.float32),
                                              jnp.abs(l).astype(jnp.float32)))
              for l in leaves)


def global_norm(tree) -> jax.Array:
  r""":math:`\sqrt{\sum_i x_i^2}` over all leaves, computed in float32."""
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(l.astype(jnp.float32)))
                      for l in leaves))


def steps_to_threshold(steps: Sequence[int], accuracy: Sequence[float],
                       threshold: float) -> Optional[int]:
  """First evaluated step whose accuracy is >= threshold, or None ("never").

  Non-finite accuracies (a diverged seed) never count as reaching it.
  """
  steps = np.asarray(steps)
  acc = np.asarray(accuracy, dtype=np.float64)
  if steps.shape != acc.shape:
    raise ValueError(f"steps {steps.shape} and accuracy {acc.shape} differ")
  hit = np.nonzero(np.isfinite(acc) & (acc >= threshold))[0]
  return int(steps[hit[0]]) if hit.size else None


def summarize_steps(values: Iterable[Optional[int]]) -> Dict[str, object]:
  """Median, quartiles and success rate of per-seed steps-to-threshold.

  Seeds that never reach the threshold count in the success rate; the
  median and quartiles are taken over the successful seeds only (None when
  no seed succeeded).
  """
  values = list(values)
  ok = np.array([v for v in values if v is not None], dtype=np.float64)
  n = len(values)
  out = dict(n=n, success=int(ok.size),
             success_rate=(ok.size / n) if n else math.nan,
             median=None, q25=None, q75=None)
  if ok.size:
    out.update(median=float(np.median(ok)),
               q25=float(np.percentile(ok, 25)),
               q75=float(np.percentile(ok, 75)))
  return out
