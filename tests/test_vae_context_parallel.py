"""Context-parallel VAE (``cogvideox_jax/models/vae/context_parallel.py``): the time axis (and/or the rows) split over
mesh axes with explicit halo exchange and psum-ed GroupNorm statistics equals single-device ``whole`` mode."""
from __future__ import annotations

import chex
import flax.linen as nn
import jax
import numpy as np
import pytest

from configs.vae import VAEConfig
from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
from cogvideox_jax.models.vae.context_parallel import (context_parallel_decode, context_parallel_encode,
                                                         from_time_blocks, to_time_blocks)
from cogvideox_jax.parallel.mesh import make_mesh

# 3 resolution levels (two time compressions: 4x time), one resnet per block, a causal conv everywhere
SMALL = VAEConfig(block_out_channels=(8, 16, 16), down_block_types=("CogVideoXDownBlock3D",) * 3,
                  up_block_types=("CogVideoXUpBlock3D",) * 3, layers_per_block=1, latent_channels=4,
                  norm_num_groups=4, temporal_compression_ratio=4)


@pytest.fixture(scope="module")
def vae_and_params():
    vae = AutoencoderKLCogVideoX(SMALL)
    x = np.zeros((1, 5, 8, 8, 3), np.float32)
    shapes = jax.eval_shape(lambda k: nn.unbox(vae.init(k, x, frame_batching="whole")["params"]), jax.random.PRNGKey(1))
    rng = np.random.default_rng(1)

    def init(path, s):  # like the module's init, plus noise on biases and norm affines so every path carries signal
        name = path[-1].key
        noise = 0.1 * rng.standard_normal(s.shape).astype(np.float32)
        if name == "kernel":
            return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)
        return noise + (1.0 if name == "scale" else 0.0)

    return vae, jax.tree_util.tree_map_with_path(init, shapes)


def _mesh(spec):
    n = int(np.prod([int(item.split("=")[1]) for item in spec.split(",")]))
    return make_mesh(spec, devices=jax.devices()[:n])


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def test_time_blocks_round_trip():
    x = np.arange(2 * 9 * 3).reshape(2, 9, 3).astype(np.float32)
    blocks = np.asarray(to_time_blocks(x, 4))
    chex.assert_shape(blocks, (2, 12, 3))
    np.testing.assert_array_equal(blocks[:, ::3], np.repeat(x[:, :1], 4, axis=1))   # every shard starts with x_0
    np.testing.assert_array_equal(np.asarray(from_time_blocks(blocks, 4)), x)


@pytest.mark.parametrize("spec", ["sequence=2,data=2", "sequence=4", "sequence=8"])
def test_context_parallel_encode_equals_whole_mode(vae_and_params, spec):
    vae, params = vae_and_params
    mesh = _mesh(spec)
    video = jax.random.uniform(jax.random.PRNGKey(3), (2, 33, 8, 8, 3), minval=-1, maxval=1)
    moments = lambda post: (post.mean, post.logvar)  # noqa: E731
    ref = jax.jit(lambda p, v: moments(vae.apply({"params": p}, v, frame_batching="whole", method="encode")))(
        params, video)
    got = jax.jit(lambda p, v: moments(context_parallel_encode(vae, p, v, mesh)))(params, video)
    chex.assert_shape(got[0], (2, 9, 2, 2, 4))
    assert _rel(got[0], ref[0]) <= 1e-5, _rel(got[0], ref[0])
    assert _rel(got[1], ref[1]) <= 1e-5, _rel(got[1], ref[1])


@pytest.mark.parametrize("spec", ["sequence=2,data=2", "sequence=4", "sequence=8"])
def test_context_parallel_decode_equals_whole_mode(vae_and_params, spec):
    vae, params = vae_and_params
    mesh = _mesh(spec)
    z = jax.random.normal(jax.random.PRNGKey(4), (2, 9, 2, 2, 4))
    decode = lambda mode: jax.jit(lambda p, v: vae.apply({"params": p}, v, frame_batching=mode,  # noqa: E731
                                                         method="decode"))(params, z)
    ref = decode("whole")
    got = jax.jit(lambda p, v: context_parallel_decode(vae, p, v, mesh))(params, z)
    chex.assert_shape(got, (2, 33, 8, 8, 3))
    assert _rel(got, ref) <= 1e-5, _rel(got, ref)
    if spec == "sequence=8":
        # not the per-chunk (diffusers) result: GroupNorm statistics span the whole clip
        assert _rel(got, decode("diffusers")) > 1e-3


def test_context_parallel_rejects_uneven_splits(vae_and_params):
    vae, params = vae_and_params
    mesh = make_mesh("sequence=4", devices=jax.devices()[:4])
    with pytest.raises(ValueError, match="divisible by 16"):
        context_parallel_encode(vae, params, np.zeros((1, 9, 8, 8, 3), np.float32), mesh)
    with pytest.raises(ValueError, match="divisible by 4"):
        context_parallel_decode(vae, params, np.zeros((1, 3, 2, 2, 4), np.float32), mesh)
    with pytest.raises(ValueError, match="divisible by 16"):   # 4 bands x 4x spatial compression
        context_parallel_encode(vae, params, np.zeros((1, 9, 8, 8, 3), np.float32), _mesh("tensor=4"), axis=None,
                                height_axis="tensor")
    with pytest.raises(ValueError, match="different mesh axes"):
        context_parallel_decode(vae, params, np.zeros((1, 3, 2, 2, 4), np.float32), mesh, height_axis="sequence")
    with pytest.raises(ValueError, match="divisible by 6"):   # 3 shards of 1 frame: an even clip
        context_parallel_decode(vae, params, np.zeros((1, 4, 2, 2, 4), np.float32),
                                make_mesh("sequence=3", devices=jax.devices()[:3]))


@pytest.mark.parametrize("spec,axis,height_axis", [
    ("tensor=4", None, "tensor"),                      # rows only
    pytest.param("sequence=2,tensor=2", "sequence", "tensor", marks=pytest.mark.slow),  # frames and rows
])
def test_height_split_decode_equals_whole_mode(vae_and_params, spec, axis, height_axis):
    """Large frames: rows split into bands (one-row ppermute halos, psum-ed GroupNorm statistics)."""
    vae, params = vae_and_params
    z = jax.random.normal(jax.random.PRNGKey(5), (2, 5, 4, 3, 4))
    ref = jax.jit(lambda p, v: vae.apply({"params": p}, v, frame_batching="whole", method="decode"))(params, z)
    mesh = _mesh(spec)
    got = jax.jit(lambda p, v: context_parallel_decode(vae, p, v, mesh, axis=axis, height_axis=height_axis))(
        params, z)
    chex.assert_shape(got, (2, 17, 16, 12, 3))
    assert _rel(got, ref) <= 1e-5, _rel(got, ref)


@pytest.mark.slow  # ~1 min of compiles on 2 cores
def test_height_split_encode_equals_whole_mode(vae_and_params):
    vae, params = vae_and_params
    video = jax.random.uniform(jax.random.PRNGKey(6), (1, 9, 16, 8, 3), minval=-1, maxval=1)
    ref = jax.jit(lambda p, v: vae.apply({"params": p}, v, frame_batching="whole", method="encode").mean)(
        params, video)
    mesh = _mesh("tensor=4")
    got = jax.jit(lambda p, v: context_parallel_encode(vae, p, v, mesh, axis=None, height_axis="tensor").mean)(
        params, video)
    assert _rel(got, ref) <= 1e-5, _rel(got, ref)
