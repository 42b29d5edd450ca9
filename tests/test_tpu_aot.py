"""AOT compilation for TPU topologies (cogvideox_jax/parallel/tpu_aot.py).

The compile tests need libtpu (run them in the TPU venv: ``/work/tpuvenv/bin/python -m pytest
tests/test_tpu_aot.py -m tpu_aot``); they are skipped where the tpu platform is absent. The shape
helpers are tested everywhere.
"""
import pytest

from configs.transformer import get_preset
from cogvideox_jax.parallel import tpu_aot


def test_native_latent_shapes_and_tokens():
    five = get_preset("cogvideox-5b")
    assert tpu_aot.latent_shape(five, 49, 480, 720) == (13, 60, 90)
    assert tpu_aot.num_tokens(five, 13, 60, 90) == 226 + 13 * 30 * 45
    one5 = get_preset("cogvideox1.5-5b")
    assert tpu_aot.latent_shape(one5, 81, 768, 1360) == (22, 96, 170)  # 21 latent frames padded to patch_t=2
    assert tpu_aot.num_tokens(one5, 22, 96, 170) == 226 + 11 * 48 * 85
    assert tpu_aot.latent_shape(five, None, None, None) == (13, 60, 90)  # preset sample size


def test_job_validation():
    with pytest.raises(ValueError, match="job"):
        tpu_aot.AOTJob(job="infer")
    with pytest.raises(ValueError, match="attention"):
        tpu_aot.AOTJob(attention="flash")


def _needs_tpu_topology():
    if not tpu_aot.tpu_aot_available("v5p:2x2x1"):
        pytest.skip("libtpu / the tpu platform is not available (use the TPU venv)")


@pytest.mark.tpu_aot
@pytest.mark.parametrize("job", ["sample", "train"])
def test_tiny_compiles_for_v5p_8(job):
    _needs_tpu_topology()
    rep = tpu_aot.compile_job(tpu_aot.AOTJob(job=job, variant="tiny-5b", topology="v5p:2x2x1", mesh="fsdp=4",
                                             batch=4, attention="splash-sharded"))
    assert rep.num_devices == 4 and rep.device_kind.startswith("TPU v5")
    assert rep.latent_shape == (4, 3, 4, 6, 4)
    assert rep.argument_bytes > 0 and rep.temp_bytes > 0 and rep.code_bytes > 0
    assert rep.flops > 0
    assert rep.fits and rep.hbm_gib == 95.0


@pytest.mark.tpu_aot
def test_fsdp_shards_parameters_per_chip():
    """Argument bytes per chip drop when the same job is spread over more fsdp shards."""
    _needs_tpu_topology()
    base = dict(job="sample", variant="tiny-2b", topology="v5p:2x2x1", batch=2, attention="xla")
    one = tpu_aot.compile_job(tpu_aot.AOTJob(mesh="data=4", **{**base, "batch": 2}))
    four = tpu_aot.compile_job(tpu_aot.AOTJob(mesh="fsdp=4", **base))
    assert four.argument_bytes < one.argument_bytes
