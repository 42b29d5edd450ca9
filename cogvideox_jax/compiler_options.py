"""Per-compilation XLA options the project passes to ``jax.jit(..., compiler_options=...)``.

XLA:CPU schedules a program's instructions with its *concurrency-optimized* scheduler by default:
it runs independent instructions side by side and keeps many more buffers alive at once. For the
VAE (large activations, long chains of convolutions, each already multi-threaded) that mostly buys
memory: the 2b VAE's decode of 3x16x16 latents -> 9x128x128 frames compiles to 2608 MiB of
temporaries with it and 1049 MiB with the memory-optimized scheduler, encode 1008 -> 737 MiB (see
BENCHMARKS.md, "VAE"). The option is a field of XLA's per-module debug options, so it is set per
``jax.jit`` and only where a program is compiled for the CPU; GPU and TPU programs get no options.
"""
from __future__ import annotations

import jax

CPU_MEMORY_OPTIMIZED = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


def memory_optimized(platform: str | None = None) -> dict:
    """Compiler options that minimise peak memory on ``platform`` (default: JAX's default backend):
    the memory-optimized instruction scheduler on CPU, nothing elsewhere."""
    platform = platform or jax.default_backend()
    return dict(CPU_MEMORY_OPTIMIZED) if platform == "cpu" else {}
