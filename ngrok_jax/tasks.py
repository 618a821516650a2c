"""Modular-arithmetic tasks and their deterministic splits.

Every example is a token sequence ``operands..., operator token(s)..., '='``
and the label is the answer token.  The vocabulary has ``p + 4`` entries:
``0 .. p-1`` are numbers, ``p`` is ``'='`` and ``p+1 .. p+3`` are operator
tokens.  Binary tasks use the sequence ``[a, b, op, '=']`` (length 4) with
``op = p + 1``; ``a*c+b*d-e`` uses ``[a, c, b, d, e, '*', '+', '-', '=']``
(length 9) with ``'*' = p+1``, ``'+' = p+2``, ``'-' = p+3``.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TASKS", "Task", "Split", "make_task", "make_split", "make_splits"]


def _is_prime(n: int) -> bool:
  if n < 2:
    return False
  return all(n % k for k in range(2, int(n ** 0.5) + 1))


def _binary(fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
            prime_only: bool = False):
  return dict(arity=2, fn=fn, prime_only=prime_only)


#: Task name -> ``dict(arity, fn, prime_only)``: the number of operands, the
#: label function ``fn(a, b, p)`` of binary tasks (``None`` for
#: ``a*c+b*d-e``, built in :func:`make_task`) and whether ``p`` must be prime.
TASKS: Dict[str, dict] = {
    "a+b": _binary(lambda a, b, p: (a + b) % p),
    "a-b": _binary(lambda a, b, p: (a - b) % p),
    "a*b": _binary(lambda a, b, p: (a * b) % p),
    "a*a-b": _binary(lambda a, b, p: (a * a - b) % p),
    "a/b": _binary(lambda a, b, p: (a * pow_mod_inverse(b, p)) % p,
                   prime_only=True),
    "a+b-a*b": _binary(lambda a, b, p: (a + b - a * b) % p),
    "a*c+b*d-e": dict(arity=5, fn=None, prime_only=False),
}


def pow_mod_inverse(b: np.ndarray, p: int) -> np.ndarray:
  """Modular inverse of every entry of ``b`` (p prime, b != 0 mod p)."""
  return np.array([pow(int(x), p - 2, p) for x in np.ravel(b)],
                  dtype=np.int64).reshape(np.shape(b))


@dataclasses.dataclass(frozen=True)
class Task:
  """All examples of one task: ``inputs`` (N, L) int32 and ``labels`` (N,)."""
  name: str
  p: int
  inputs: jax.Array
  labels: jax.Array

  @property
  def vocab_size(self) -> int:
    return self.p + 4

  @property
  def seq_len(self) -> int:
    return int(self.inputs.shape[1])

  @property
  def num_examples(self) -> int:
    return int(self.inputs.shape[0])

  @property
  def num_classes(self) -> int:
    return self.vocab_size


class Split(dict):
  """Index arrays of one split: keys ``train``, ``outer``, ``test``."""


def make_task(name: str, p: int = 97) -> Task:
  """Builds every example of task ``name`` modulo ``p``.

  Args:
    name: one of ``TASKS`` (``a+b``, ``a-b``, ``a*b``, ``a*a-b``,
      ``a*c+b*d-e``, ``a/b``, ``a+b-a*b``).
    p: the modulus (>= 2; prime for ``a/b``).

  Returns:
    A :class:`Task` whose arrays are int32 device arrays.

  Raises:
    ValueError: unknown name, ``p < 2``, or non-prime ``p`` for division.
  """
  if name not in TASKS:
    raise ValueError(
        f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
  if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
    raise ValueError(f"p must be an integer >= 2, got {p!r}")
  p = int(p)
  if p < 2:
    raise ValueError(f"p must be an integer >= 2, got {p}")
  spec = TASKS[name]
  if spec["prime_only"] and not _is_prime(p):
    raise ValueError(f"task {name!r} needs a prime p, got {p}")
  eq, op1, op2, op3 = p, p + 1, p + 2, p + 3
  if spec["arity"] == 2:
    a, b = np.meshgrid(np.arange(p), np.arange(1, p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    y = spec["fn"](a.astype(np.int64), b.astype(np.int64), p)
    n = a.size
    x = np.stack([a, b, np.full(n, op1), np.full(n, eq)], axis=1)
  else:
    rng = np.arange(p)
    rng1 = np.arange(1, p)
    grid = np.array(list(itertools.product(rng, rng1, rng, rng1, rng)),
                    dtype=np.int64)
    a, c, b, d, e = grid.T
    y = (a * c + b * d - e) % p
    n = a.size
    x = np.stack([a, c, b, d, e, np.full(n, op1), np.full(n, op2),
                  np.full(n, op3), np.full(n, eq)], axis=1)
  return Task(name=name, p=p, inputs=jnp.asarray(x, dtype=jnp.int32),
              labels=jnp.asarray(y, dtype=jnp.int32))


def split_sizes(n: int, fractions: Tuple[float, float, float]) -> Tuple[int, int, int]:
  """Sizes of the (train, outer, test) splits of ``n`` examples."""
  fr = tuple(float(f) for f in fractions)
  if len(fr) != 3:
    raise ValueError("fractions must be (train, outer, test)")
  if any(not np.isfinite(f) or f < 0 for f in fr):
    raise ValueError(f"split fractions must be >= 0, got {fr}")
  if sum(fr) > 1.0 + 1e-9:
    raise ValueError(f"split fractions sum to {sum(fr):.4f} > 1: {fr}")
  n_tr = int(round(fr[0] * n))
  n_out = int(round(fr[1] * n))
  n_te = min(int(round(fr[2] * n)), n - n_tr - n_out)
  for name, size in (("train", n_tr), ("outer", n_out), ("test", n_te)):
    if size < 1:
      raise ValueError(
          f"the {name} split is empty ({n} examples, fractions {fr}); "
          "valid: fractions >= 0 summing to <= 1 with every split non-empty")
  return n_tr, n_out, n_te


def make_split(task: Task, seed: int,
               fractions: Tuple[float, float, float] = (0.49, 0.01, 0.50)) -> Split:
  """A random, disjoint split of ``task`` determined by ``seed`` alone."""
  n_tr, n_out, n_te = split_sizes(task.num_examples, fractions)
  perm = jax.random.permutation(jax.random.key(seed), task.num_examples)
  return Split(train=perm[:n_tr].astype(jnp.int32),
               outer=perm[n_tr:n_tr + n_out].astype(jnp.int32),
               test=perm[n_tr + n_out:n_tr + n_out + n_te].astype(jnp.int32))


def make_splits(task: Task, seeds, fractions=(0.49, 0.01, 0.50)) -> Split:
  """Splits for several seeds stacked along a leading axis (S, n_split)."""
  splits = [make_split(task, int(s), fractions) for s in seeds]
  return Split({k: jnp.stack([sp[k] for sp in splits]) for k in splits[0]})
