"""Several JAX processes running one run: start-up and the few collectives.

A run may be started as several processes (one per host of a GPU/TPU pod,
or several on one machine with CPU collectives): every process calls
:func:`initialize` before any other JAX computation, then runs the same
program.  The runner (:mod:`ngrok_jax.runner`) shards the seed axis over
every process's devices (:func:`ngrok_jax.sharding.global_seed_mesh`), and
uses the helpers here where the processes must agree:

* :func:`to_host`: a pytree of (possibly sharded over several processes)
  arrays as NumPy arrays holding the global values, in every process (one
  jitted all-gather for the whole tree);
* :func:`any_process`: whether a flag is set in any process (a stop
  signal seen by one process stops all of them at the same chunk);
* :func:`barrier`: wait until every process has reached this point;
* :func:`is_primary`: process 0, the one that writes the run folder's files
  (config, metrics, summary, amplifier, plots, trackers).

With one process each of these is the trivial local operation, so the
single-process code path is unchanged.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["initialize", "is_primary", "to_host", "any_process", "barrier",
           "ENV_VARS"]

#: The environment variables :func:`jax.distributed.initialize` reads when
#: the arguments are not given (a cluster's launcher may also be detected:
#: Slurm, Open MPI, Cloud TPU, Kubernetes).
ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize(coordinator: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *,
               timeout_s: int = 300) -> None:
  """Starts this process's part of a multi-process run.

  ``coordinator`` (``host:port`` of process 0), ``num_processes`` and
  ``process_id`` default to ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; where those are unset too,
  :func:`jax.distributed.initialize` detects them from the cluster
  (Slurm, Open MPI, Cloud TPU, Kubernetes).  On a CPU backend the
  collectives go through gloo.  Calling it again with the same arguments
  in an initialized process does nothing.

  Args:
    coordinator: ``host:port`` of process 0.
    num_processes: the number of processes (>= 1).
    process_id: this process's index, in 0..num_processes-1.
    timeout_s: how long to wait for the other processes.

  Raises:
    ValueError: bad arguments, or JAX's distributed system already
      initialized with other ones.
  """
  env = os.environ
  coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS") or None
  if num_processes is None and env.get("JAX_NUM_PROCESSES"):
    num_processes = _env_int("JAX_NUM_PROCESSES")
  if process_id is None and env.get("JAX_PROCESS_ID"):
    process_id = _env_int("JAX_PROCESS_ID")
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"the number of processes must be >= 1, got "
                     f"{num_processes}")
  if process_id is not None and num_processes is not None and not (
      0 <= process_id < num_processes):
    raise ValueError(f"the process id must be in 0..{num_processes - 1}, "
                     f"got {process_id}")
  if jax.distributed.is_initialized():
    if ((num_processes is not None and num_processes != jax.process_count())
        or (process_id is not None and process_id != jax.process_index())):
      raise ValueError("JAX's distributed system is already initialized as "
                       f"process {jax.process_index()} of "
                       f"{jax.process_count()}")
    return
  if "cpu" in (env.get("JAX_PLATFORMS") or "").split(","):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator,
                             num_processes=num_processes,
                             process_id=process_id,
                             initialization_timeout=int(timeout_s))


def _env_int(name: str) -> int:
  try:
    return int(os.environ[name])
  except ValueError:
    raise ValueError(f"{name} must be an integer, got "
                     f"{os.environ[name]!r}") from None


def is_primary() -> bool:
  """Whether this is process 0 (always true with one process).

  Returns:
    ``jax.process_index() == 0``.
  """
  return jax.process_index() == 0


@functools.lru_cache(maxsize=8)
def _replicator(mesh):
  return jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, P()))


def _mesh_of(sharding) -> Mesh:
  mesh = getattr(sharding, "mesh", None)
  if isinstance(mesh, Mesh):
    return mesh
  devices = sorted(sharding.device_set, key=lambda d: d.id)
  return Mesh(np.asarray(devices), ("all",))


def to_host(tree: Any) -> Any:
  """``tree`` with every array leaf as a NumPy array of its global value.

  Leaves that live partly on other processes' devices are gathered by one
  jitted identity with a replicated output sharding per mesh (so the whole
  tree costs one collective, compiled once per tree structure); every other
  leaf is copied with ``np.array`` (a copy, never a view of a device
  buffer that a later donating call may reuse).

  Args:
    tree: a pytree of arrays (global ``jax.Array`` or host values).

  Returns:
    The same structure with NumPy arrays holding every leaf's whole value,
    in every process.
  """
  leaves, treedef = jax.tree.flatten(tree)
  remote = [i for i, l in enumerate(leaves)
            if isinstance(l, jax.Array) and not l.is_fully_addressable]
  if remote:
    by_mesh = {}
    for i in remote:
      by_mesh.setdefault(_mesh_of(leaves[i].sharding), []).append(i)
    for mesh, idx in by_mesh.items():
      got = _replicator(mesh)([leaves[i] for i in idx])
      for i, g in zip(idx, got):
        leaves[i] = g.addressable_data(0)
  # copies: the device buffers may be donated to the next step
  return jax.tree.unflatten(treedef, [np.array(l) for l in leaves])


def any_process(flag: bool) -> bool:
  """True if ``flag`` is true in any process (every process must call it).

  Args:
    flag: this process's flag.

  Returns:
    Whether any process's flag is true.
  """
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils
  got = multihost_utils.process_allgather(np.int32(bool(flag)))
  return bool(np.any(got))


def barrier(name: str) -> None:
  """Waits until every process has called ``barrier(name)``.

  Args:
    name: a name every process uses for this barrier.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
