"""Sharding the seed axis of a run across devices with ``jax.sharding``.

Every per-seed array (the leaves of ``TrainState.seeds`` and the index
arrays ``Data.train / outer / test``) has a leading seed axis; seeds never
interact, so splitting that axis across devices needs no communication.
Shared arrays (the step counter, ``Data.inputs`` and ``Data.labels``) are
replicated.  ``Trainer.train_steps`` / ``evaluate`` are ``jax.jit``
functions, so they run sharded unchanged: the compiler follows the input
shardings (GSPMD) and every device advances its own seeds::

    trainer = Trainer(TrainConfig(...))
    state, data = trainer.init(seeds=range(8))
    state, data = shard_seeds(state, data)          # all local devices
    state, out = trainer.train_steps(state, data, num_steps=100)

The number of seeds must be a multiple of the number of devices on the mesh
(``pad_seeds`` gives a count that is).

Several processes (hosts): call ``jax.distributed.initialize()`` (or
:func:`ngrok_jax.distributed.initialize`) in every process before anything
else, build the same ``Trainer`` and the same ``init`` in every process, and
pass ``mesh=global_seed_mesh()`` (every process's devices; ``seed_mesh(
jax.devices())`` is the same mesh when every process has as many devices);
``shard_seeds`` then places each process's slice of the seed axis on its own
devices (``jax.make_array_from_callback``).  ``shard_count`` is how many
devices the runner uses for a number of seeds.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# On one CPU the opposite question arises: how many seeds to vmap at once
# (``group_size``, ``resolve_seed_group``; used by ``train.train_steps``).

__all__ = ["SEED_AXIS", "seed_mesh", "global_seed_mesh", "shard_count",
           "seed_shardings", "shard_seeds", "pad_seeds", "CPU_SEED_GROUP", "group_size", "resolve_seed_group"]

SEED_AXIS = "seeds"


def seed_mesh(devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A 1-D mesh named ``"seeds"`` over ``devices`` (default: local devices).

  Args:
    devices: the devices (default ``jax.local_devices()``).

  Returns:
    A ``jax.sharding.Mesh`` with the one axis ``"seeds"``.
  """
  devices = list(jax.local_devices() if devices is None else devices)
  if not devices:
    raise ValueError("seed_mesh needs at least one device")
  return Mesh(np.asarray(devices), (SEED_AXIS,))


def global_seed_mesh(per_process: Optional[int] = None) -> Mesh:
  """A 1-D ``"seeds"`` mesh over the first ``per_process`` devices (default:
  all) of every process, in process order, so that process ``i`` holds the
  ``i``-th contiguous block of seeds.

  Args:
    per_process: how many of each process's devices to use (default: all;
      the same number in every process).

  Returns:
    A ``jax.sharding.Mesh`` with the one axis ``"seeds"``.
  """
  by_proc = {}
  for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
    by_proc.setdefault(d.process_index, []).append(d)
  k = min(len(v) for v in by_proc.values())
  k = k if per_process is None else min(int(per_process), k)
  if k < 1:
    raise ValueError("global_seed_mesh needs at least one device per process")
  return seed_mesh([d for p in sorted(by_proc) for d in by_proc[p][:k]])


def shard_count(num_seeds: int, devices: Optional[int] = None) -> int:
  """How many devices the runner shards ``num_seeds`` over: the largest
  count ``n <= devices`` (default: all devices of all processes) that
  divides the number of seeds and gives every process the same number of
  devices (``n = processes * k``, ``k <=`` local devices).

  Raises:
    ValueError: with several processes, if no such count exists (the seeds
      are not a multiple of the process count, or ``devices`` is below it):
      every process must hold seeds.

  Args:
    num_seeds: the number of seeds.
    devices: the most devices to use (default: all).

  Returns:
    The device count.
  """
  procs, local = jax.process_count(), jax.local_device_count()
  want = procs * local if devices is None else min(int(devices),
                                                   procs * local)
  for k in range(local, 0, -1):
    n = procs * k
    if n <= max(want, 1) and num_seeds % n == 0:
      return n
  if procs == 1:
    return 1
  raise ValueError(
      f"{num_seeds} seeds cannot be split over {procs} processes"
      + (f" with at most {devices} devices" if devices is not None else "")
      + f": every process needs seeds, so use a multiple of {procs} seeds"
      + (f" and --devices >= {procs}" if devices is not None and
         devices < procs else ""))


def pad_seeds(num_seeds: int, mesh: Optional[Mesh] = None) -> int:
  """The smallest multiple of the mesh size that is >= ``num_seeds``.

  Args:
    num_seeds: the number of seeds wanted.
    mesh: the mesh (default :func:`seed_mesh` over all local devices).

  Returns:
    The padded number of seeds.
  """
  n = (mesh or seed_mesh()).size
  return -(-num_seeds // n) * n


def seed_shardings(state, data, mesh: Optional[Mesh] = None):
  """``(state_shardings, data_shardings)`` pytrees of ``NamedSharding``.

  Per-seed leaves get ``P("seeds")`` (leading axis split), shared leaves
  ``P()`` (replicated).

  Args:
    state: a ``TrainState`` (only its structure is used).
    data: the matching ``Data``.
    mesh: a mesh with the axis ``"seeds"`` (default :func:`seed_mesh`).

  Returns:
    ``(state_shardings, data_shardings)``.
  """
  mesh = mesh or seed_mesh()
  split, repl = NamedSharding(mesh, P(SEED_AXIS)), NamedSharding(mesh, P())
  state_sh = state._replace(step=repl,
                            seeds=jax.tree.map(lambda _: split, state.seeds))
  data_sh = data._replace(inputs=repl, labels=repl, train=split, outer=split,
                          test=split)
  return state_sh, data_sh


def _put(x, sharding: NamedSharding):
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  # Multi-host: every process holds the full (identical) array on the host;
  # each places only the shards its own devices own.
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def shard_seeds(state, data, mesh: Optional[Mesh] = None) -> Tuple[Any, Any]:
  """Places ``state`` and ``data`` with the seed axis split over ``mesh``.

  Args:
    state: a ``TrainState`` from ``Trainer.init`` (or a later step).
    data: the matching ``Data``.
    mesh: a mesh with one axis named ``"seeds"``; default
      :func:`seed_mesh` over all local devices.

  Returns:
    ``(state, data)`` with the same values, sharded.  ``train_steps`` and
    ``evaluate`` accept them unchanged and return seed-sharded outputs.

  Raises:
    ValueError: if the number of seeds is not a multiple of the mesh size.
  """
  mesh = mesh or seed_mesh()
  if SEED_AXIS not in mesh.axis_names:
    raise ValueError(f"the mesh needs an axis named {SEED_AXIS!r}, got "
                     f"{mesh.axis_names}")
  num_seeds = data.train.shape[0]
  n = mesh.shape[SEED_AXIS]
  if num_seeds % n:
    raise ValueError(
        f"{num_seeds} seeds cannot be split evenly over {n} devices; use a "
        f"multiple of {n} (e.g. {pad_seeds(num_seeds, mesh)} seeds)")
  state_sh, data_sh = seed_shardings(state, data, mesh)
  state = jax.tree.map(_put, state, state_sh)
  data = jax.tree.map(_put, data, data_sh)
  return state, data


# ------------------------------------------------------- seeds in groups
#: Seeds per vmapped group on a CPU backend (``seed_group="auto"``): the
#: group size that ran S seeds fastest in experiments/benchmark.py on a
#: 2-core CPU (BENCHMARK.md); accelerators vmap every seed at once.
CPU_SEED_GROUP = 1


def resolve_seed_group(seed_group="auto") -> Optional[int]:
  """``"auto"``: :data:`CPU_SEED_GROUP` on a CPU backend, else ``None`` (all
  seeds vmapped at once); ``None`` or a positive integer pass through.

  Args:
    seed_group: ``"auto"``, None or a positive integer.

  Returns:
    None or a positive integer.
  """
  if seed_group == "auto":
    return CPU_SEED_GROUP if jax.default_backend() == "cpu" else None
  group_size(1, seed_group)  # validates it
  return seed_group


def group_size(num_seeds: int, seed_group: Optional[int]) -> int:
  """The largest divisor of ``num_seeds`` that is <= ``seed_group`` (None:
  all seeds in one group).

  Args:
    num_seeds: S.
    seed_group: the largest group wanted (a positive integer), or None.

  Returns:
    The group size, a divisor of ``num_seeds``.

  Raises:
    ValueError: ``seed_group`` is not None or a positive integer.
  """
  if seed_group is None:
    return num_seeds
  if isinstance(seed_group, bool) or int(seed_group) != seed_group or (
      seed_group < 1):
    raise ValueError(f"seed_group must be None or an integer >= 1, got "
                     f"{seed_group!r}")
  if seed_group >= num_seeds:
    return num_seeds
  return max(d for d in range(1, int(seed_group) + 1) if num_seeds % d == 0)
