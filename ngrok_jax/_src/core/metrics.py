"""Metrics: Absolute Gradient Entropy, norms, the embedding's Fourier
spectrum, and steps to generalize."""
from __future__ import annotations

import math
import warnings
from typing import Dict, Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["absolute_entropy", "global_norm", "fourier_spectrum",
           "key_frequencies", "steps_to_threshold", "summarize_steps",
           "chunk_losses"]


def chunk_losses(loss, outer_loss) -> Dict[str, np.ndarray]:
  """Per-seed means over a chunk of training steps.

  Args:
    loss: the batch losses, (steps, S).
    outer_loss: the outer losses, (steps, S), NaN where no meta step ran.

  Returns:
    ``batch_loss`` (float64 mean) and ``outer_loss`` (NaN-ignoring mean;
    NaN for a seed without a meta step in the chunk), each (S,).
  """
  out = dict(batch_loss=np.mean(np.asarray(loss, np.float64), axis=0))
  outer = np.asarray(outer_loss, np.float64)
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    out["outer_loss"] = (np.nanmean(outer, axis=0)
                         if np.isfinite(outer).any()
                         else np.full(outer.shape[1], np.nan))
  return out


def absolute_entropy(tree) -> jax.Array:
  r"""Absolute entropy :math:`-\sum_i |x_i| \log |x_i|` over all leaves.

  With ``0 log 0 = 0`` (``xlogy``), so zeros contribute nothing. Applied to
  gradients this is the paper's Absolute Gradient Entropy (AGE).

  Args:
    tree: a pytree of arrays (e.g. a gradient).

  Returns:
    A float32 scalar.
  """
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.zeros([], jnp.float32)
  return -sum(jnp.sum(jax.scipy.special.xlogy(jnp.abs(l).astype(jnp.float32),
                                              jnp.abs(l).astype(jnp.float32)))
              for l in leaves)


def global_norm(tree) -> jax.Array:
  r""":math:`\sqrt{\sum_i x_i^2}` over all leaves, computed in float32.

  Args:
    tree: a pytree of arrays.

  Returns:
    A float32 scalar.
  """
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(l.astype(jnp.float32)))
                      for l in leaves))


def fourier_spectrum(embedding: jax.Array, p: int) -> jax.Array:
  r"""Energy share of each frequency in the number tokens' embedding.

  The rows ``0 .. p-1`` of ``embedding`` (the numbers) are Fourier
  transformed along the token axis, :math:`\hat E_k = \sum_a E_a
  e^{-2\pi i k a / p}`; frequency :math:`k` and :math:`p - k` are one real
  frequency.  Returns, for :math:`k = 1 .. \lfloor p/2 \rfloor`, the share
  :math:`\lVert \hat E_k \rVert^2 + \lVert \hat E_{p-k} \rVert^2`
  (one term when :math:`k = p/2`) of the non-constant energy
  (:math:`k \neq 0`); the shares sum to 1.  Nanda et al. 2023 ("Progress
  measures for grokking via mechanistic interpretability"): a model that
  groks modular addition concentrates its embedding on a few key
  frequencies.

  Args:
    embedding: the token embedding (V, d), V >= p, numbers in rows 0..p-1.
    p: the modulus.

  Returns:
    A (p // 2,) array of shares, frequency 1 first, summing to 1.
  """
  e = embedding[:p].astype(jnp.float32)
  f = jnp.fft.rfft(e, axis=0)  # (p // 2 + 1, d): k = 0 .. p // 2
  power = jnp.sum(jnp.abs(f[1:]) ** 2, axis=-1)
  # rfft keeps k and drops p - k: both carry the same energy, except k = p/2
  double = jnp.where(2 * jnp.arange(1, p // 2 + 1) == p, 1.0, 2.0)
  power = power * double
  return power / jnp.maximum(jnp.sum(power), 1e-30)


def key_frequencies(share: jax.Array, mass: float = 0.9) -> jax.Array:
  """The fewest frequencies whose shares (:func:`fourier_spectrum`) sum to
  at least ``mass`` (1 per frequency when spread evenly, a few once the
  embedding has found its key frequencies).

  Args:
    share: the (p // 2,) shares of :func:`fourier_spectrum`.
    mass: the fraction of the energy to cover, in (0, 1].

  Returns:
    An integer scalar.
  """
  top = jnp.cumsum(jnp.sort(share)[::-1])
  return jnp.sum(top < mass * (1 - 1e-6)) + 1


def steps_to_threshold(steps: Sequence[int], accuracy: Sequence[float],
                       threshold: float) -> Optional[int]:
  """First evaluated step whose accuracy is >= threshold, or None ("never").

  Non-finite accuracies (a diverged seed) never count as reaching it.

  Args:
    steps: the evaluated steps, increasing.
    accuracy: the accuracy at each of them.
    threshold: e.g. 0.95.

  Returns:
    The step (an int), or None if no evaluation reached the threshold.
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

  Args:
    values: steps to the threshold per seed, None for a seed that never
      reached it.

  Returns:
    ``{"n", "success", "success_rate", "median", "q25", "q75"}``: the
    number of seeds, how many reached the threshold and their fraction,
    and the median and quartiles of their steps (None when none did).
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
