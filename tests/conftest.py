"""Test setup: 8 simulated CPU devices and full-precision fp32 matmuls."""
import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Persistent XLA compilation cache: the suite is mostly compile time (tiny models), so a rerun is ~4x
# faster and a fresh run still reuses the programs that several tests compile alike. Set in the
# environment so that the multi-process tests' subprocesses share it; the size limit turns on JAX's
# file lock, which keeps the two xdist workers from reading a half-written entry. Set
# JAX_COMPILATION_CACHE_DIR to another folder, or COGVIDEOX_JAX_TEST_CACHE=0 to run without it.
if os.environ.get("COGVIDEOX_JAX_TEST_CACHE", "1") != "0":
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax-tests"))
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_threefry_partitionable", True)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    """Keep the torch oracle deterministic and polite on a 2-core machine."""
    try:
        import torch
    except ImportError:  # oracles are an extra
        yield
        return
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
