"""Sharding the seed axis of a run across devices with ``jax.sharding``.

The public names of this part of the library; their code:
``ngrok_jax._src.core.sharding``.
"""
from ngrok_jax._src.core.sharding import (SEED_AXIS, seed_mesh,
                                          global_seed_mesh, shard_count,
                                          seed_shardings, shard_seeds,
                                          pad_seeds, CPU_SEED_GROUP,
                                          group_size, resolve_seed_group)

__all__ = [
    "SEED_AXIS", "seed_mesh", "global_seed_mesh", "shard_count",
    "seed_shardings", "shard_seeds", "pad_seeds", "CPU_SEED_GROUP",
    "group_size", "resolve_seed_group",
]
