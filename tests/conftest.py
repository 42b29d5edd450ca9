"""Test setup: 8 simulated CPU devices and full-precision fp32 matmuls."""
import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the CLI's compile cache and the copies of remote inputs go to a fresh folder per test process, not the
# user's ~/.cache/cogvideox_jax
import tempfile  # noqa: E402

os.environ.setdefault("COGVIDEOX_JAX_CACHE", tempfile.mkdtemp(prefix="cogvideox-jax-test-cache-"))

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
