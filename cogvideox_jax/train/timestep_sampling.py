"""Explicit uniform timestep sampling (CogVideoX paper §3; SAT ``DiscreteSampling(uniform_sampling=True)``).

The data-parallel ranks are split into G groups; group g draws t ~ U{g·N/G, …, (g+1)·N/G − 1}.
Across the whole batch every interval is covered at every step, which flattens the loss curve.

In our SPMD step the batch is one global array sharded over ``data × fsdp``; batch row i lives on
data shard ``i // (B / num_shards)``, so the per-row interval is a pure function of the row index —
the same sampling as SAT's per-rank sampler, without per-process code.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def num_timestep_groups(num_data_shards: int, num_timesteps: int = 1000) -> int:
    """SAT's rule: the largest G = world/i (i | world) that divides ``num_timesteps``."""
    for i in range(1, num_data_shards + 1):
        if num_data_shards % i == 0 and num_timesteps % (num_data_shards // i) == 0:
            return num_data_shards // i
    return 1


def timestep_interval(group: int, num_groups: int, num_timesteps: int = 1000) -> tuple[int, int]:
    """Half-open interval ``[lo, hi)`` of timesteps for ``group``."""
    width = num_timesteps // num_groups
    return group * width, (group + 1) * width


def explicit_uniform_timesteps(key, batch_size: int, num_data_shards: int, num_timesteps: int = 1000,
                               enabled: bool = True):
    """Integer timesteps (B,) int32; row i belongs to shard ``i // (B/num_data_shards)`` and its group.

    ``enabled=False`` gives plain uniform sampling over ``[0, num_timesteps)``.
    """
    if not enabled or num_data_shards <= 1:
        return jax.random.randint(key, (batch_size,), 0, num_timesteps, dtype=jnp.int32)
    if batch_size % num_data_shards:
        raise ValueError(f"batch {batch_size} is not divisible by {num_data_shards} data shards")
    groups = num_timestep_groups(num_data_shards, num_timesteps)
    shard = jnp.arange(batch_size) // (batch_size // num_data_shards)
    group = shard * groups // num_data_shards  # consecutive shards share a group when G < shards
    width = num_timesteps // groups
    offset = jax.random.randint(key, (batch_size,), 0, width, dtype=jnp.int32)
    return (group * width + offset).astype(jnp.int32)
