"""Modular-arithmetic tasks and their deterministic splits.

Every example is a token sequence ``operands..., operator token(s)..., '='``
and the label is the answer token.  Token ids and layouts follow the
authors' final code (NeuralOptGrok, commit a7490be, ``src/dataset.py``):
``0 .. p-1`` are numbers, ``p`` is ``'='`` and ``p+1, p+2, p+3`` are operator
tokens, used in this order:

=============  ====================================  ==========
task           sequence                              vocabulary
=============  ====================================  ==========
``a+b`` etc.   ``[a, b, op1, '=']``                  ``p + 2``
``a*a-b``      ``[a, b, op1, op2, '=']``             ``p + 3``
``a*c+b*d-e``  ``[a, b, c, d, e, op1, op2, op3, '=']``  ``p + 4``
=============  ====================================  ==========

Examples are listed in the reference's order (``torch.cartesian_prod`` of
the operand ranges: the first operand varies slowest).  Operands range over
``[0, p)``, except ``b`` of binary tasks and ``c``, ``d`` of ``a*c+b*d-e``,
which range over ``[1, p)``.

Splits (:func:`make_split`) are random permutations cut into (train, outer,
test) with the reference's sizes: ``floor(f * n)`` for the train and outer
fractions, the test split the rest when the fractions sum to 1.  Methods
without an outer loop train on the first ``floor((f_train + f_outer) * n)``
examples of the same permutation (``pool_outer=True``; 50% by default), as
the reference's baselines do.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TASKS", "Task", "Split", "make_task", "make_split", "make_splits",
           "is_prime"]


def is_prime(n: int) -> bool:
  """Whether ``n`` is a prime (trial division).

  Args:
    n: an integer.

  Returns:
    True for a prime, False otherwise (also for ``n < 2``).
  """
  if n < 2:
    return False
  return all(n % k for k in range(2, int(n ** 0.5) + 1))


def _binary(fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
            prime_only: bool = False, ops: int = 1):
  return dict(arity=2, fn=fn, prime_only=prime_only, ops=ops)


#: Task name -> ``dict(arity, fn, prime_only, ops)``: the number of operands,
#: the label function ``fn(a, b, p)`` of binary tasks (``None`` for
#: ``a*c+b*d-e``, built in :func:`make_task`), whether ``p`` must be prime and
#: the number of operator tokens (the vocabulary is ``p + 1 + ops``).
TASKS: Dict[str, dict] = {
    "a+b": _binary(lambda a, b, p: (a + b) % p),
    "a-b": _binary(lambda a, b, p: (a - b) % p),
    "a*b": _binary(lambda a, b, p: (a * b) % p),
    "a*a-b": _binary(lambda a, b, p: (a * a - b) % p, ops=2),
    "a/b": _binary(lambda a, b, p: (a * pow_mod_inverse(b, p)) % p,
                   prime_only=True),
    "a+b-a*b": _binary(lambda a, b, p: (a + b - a * b) % p),
    "a*c+b*d-e": dict(arity=5, fn=None, prime_only=False, ops=3),
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
    """``p`` numbers, ``'='`` and the task's operator tokens (as the
    reference: ``p + 2``, ``p + 3`` for ``a*a-b``, ``p + 4`` for
    ``a*c+b*d-e``)."""
    return self.p + 1 + TASKS[self.name]["ops"]

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
  if spec["prime_only"] and not is_prime(p):
    raise ValueError(f"task {name!r} needs a prime p, got {p}")
  eq = p
  ops = [p + 1 + k for k in range(spec["ops"])]
  if spec["arity"] == 2:
    grid = np.array(list(itertools.product(range(p), range(1, p))),
                    dtype=np.int64)
    a, b = grid.T
    y = spec["fn"](a, b, p)
    operands = [a, b]
  else:
    grid = np.array(list(itertools.product(range(p), range(p), range(1, p),
                                           range(1, p), range(p))),
                    dtype=np.int64)
    a, b, c, d, e = grid.T
    y = (a * c + b * d - e) % p
    operands = [a, b, c, d, e]
  n = grid.shape[0]
  x = np.stack(operands + [np.full(n, o) for o in ops] + [np.full(n, eq)],
               axis=1)
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
  # The reference's sizes: floor for train and outer, test = the rest when
  # the fractions sum to 1 (float slack allowed), else floor as well.
  n_tr = int(fr[0] * n)
  n_out = int(fr[1] * n)
  if abs(sum(fr) - 1.0) < 1e-9:
    n_te = n - n_tr - n_out
  else:
    n_te = min(int(fr[2] * n), n - n_tr - n_out)
  for name, size in (("train", n_tr), ("outer", n_out), ("test", n_te)):
    if size < 1:
      raise ValueError(
          f"the {name} split is empty ({n} examples, fractions {fr}); "
          "valid: fractions >= 0 summing to <= 1 with every split non-empty")
  return n_tr, n_out, n_te


def pooled_train_size(n: int, fractions: Tuple[float, float, float]) -> int:
  """Training-set size of a method without an outer loop: the reference's
  ``floor((f_train + f_outer) * n)`` (4,656 of 9,312 by default)."""
  split_sizes(n, fractions)
  return int((float(fractions[0]) + float(fractions[1])) * n)


def make_split(task: Task, seed: int,
               fractions: Tuple[float, float, float] = (0.49, 0.01, 0.50),
               pool_outer: bool = False) -> Split:
  """A random, disjoint split of ``task`` determined by ``seed`` alone.

  ``train``, ``outer`` and ``test`` are consecutive pieces of one random
  permutation.  With ``pool_outer=True`` (methods without an outer loop, as
  the reference's baselines) ``train`` is the first
  :func:`pooled_train_size` examples of the permutation, so it contains the
  outer split (kept in ``outer`` for reporting only) and the test split is
  everything after it.

  Args:
    task: the task (:func:`make_task`).
    seed: the seed of the permutation.
    fractions: the (train, outer, test) fractions, summing to at most 1.
    pool_outer: train on the outer split too (see above).

  Returns:
    A :class:`Split`: int32 index arrays ``train``, ``outer``, ``test``
    into the task's examples.
  """
  n = task.num_examples
  n_tr, n_out, n_te = split_sizes(n, fractions)
  perm = jax.random.permutation(jax.random.key(seed), n).astype(jnp.int32)
  outer = perm[n_tr:n_tr + n_out]
  if pool_outer:
    n_pool = pooled_train_size(n, fractions)
    n_te = n_te if abs(sum(map(float, fractions)) - 1.0) >= 1e-9 else n - n_pool
    return Split(train=perm[:n_pool], outer=outer,
                 test=perm[n_pool:n_pool + n_te])
  return Split(train=perm[:n_tr], outer=outer,
               test=perm[n_tr + n_out:n_tr + n_out + n_te])


def make_splits(task: Task, seeds, fractions=(0.49, 0.01, 0.50),
                pool_outer: bool = False) -> Split:
  """Splits for several seeds stacked along a leading axis (S, n_split).

  Args:
    task: the task (:func:`make_task`).
    seeds: the seeds, one split each.
    fractions: as in :func:`make_split`.
    pool_outer: as in :func:`make_split`.

  Returns:
    A :class:`Split` whose arrays have a leading seed axis.
  """
  splits = [make_split(task, int(s), fractions, pool_outer) for s in seeds]
  return Split({k: jnp.stack([sp[k] for sp in splits]) for k in splits[0]})
