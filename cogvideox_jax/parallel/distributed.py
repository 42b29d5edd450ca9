"""Multi-host start-up: ``jax.distributed.initialize``.

TPU pods: call with no arguments (coordinator, process count and id come from the TPU metadata).
CPU / GPU clusters: pass the coordinator ``host:port``, the number of processes and this process's id
(or set ``COGVIDEOX_COORDINATOR``, ``COGVIDEOX_NUM_PROCESSES``, ``COGVIDEOX_PROCESS_ID``). On CPU the
cross-process collectives use gloo.
"""
from __future__ import annotations

import os

import jax


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, platform: str | None = None,
               local_device_count: int | None = None) -> None:
    """Initialise the JAX distributed runtime (no-op for a single process without a coordinator)."""
    coordinator_address = coordinator_address or os.environ.get("COGVIDEOX_COORDINATOR")
    if num_processes is None and "COGVIDEOX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["COGVIDEOX_NUM_PROCESSES"])
    if process_id is None and "COGVIDEOX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["COGVIDEOX_PROCESS_ID"])
    platform = platform or os.environ.get("JAX_PLATFORMS", "").split(",")[0] or None
    if local_device_count:  # the CPU backend's device count (set before any backend starts)
        jax.config.update("jax_num_cpu_devices", local_device_count)
    if platform == "cpu" or (platform is None and coordinator_address is not None and _cpu_only()):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator_address is None:
        if platform in (None, "tpu") and _on_tpu_pod():
            jax.distributed.initialize()
        return
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def _cpu_only() -> bool:
    """No accelerator plugin installed (jaxlib's CPU backend is the only one), without starting a backend."""
    import importlib.util

    return not any(importlib.util.find_spec(m) for m in ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin",
                                                           "jax_rocm60_plugin"))


def _on_tpu_pod() -> bool:
    return bool(os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("CLOUD_TPU_TASK_ID")
                or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))
