"""The VAE's memory-lean formulations equal the direct ones they replace.

- ``conv3d_valid_time``'s per-frame loop (large frames) == its batched form, with no front, a
  first-frame-repeat front and a cache front; gradients too.
- ``upsample2x_conv3x3`` (four parity 2x2 convs) == a 3x3 conv of the nearest-2x frames, batched and
  looped.
- A whole decode with every conv and upsampler forced through the loop == the default (batched)
  path; the batched path itself is checked against diffusers in test_vae_parity.py.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.models.vae import conv_weights
from cogvideox_jax.models.vae.conv_weights import conv2d_frames, conv3d_valid_time
from cogvideox_jax.models.vae.down_up_sampling import upsample2x_conv3x3

PAD = ((1, 1), (1, 1))


def _rand(key, shape, scale=1.0):
    return jax.random.normal(jax.random.PRNGKey(key), shape, jnp.float32) * scale


def _conv_both_ways(monkeypatch, *args, **kw):
    outs = []
    for threshold in (1 << 62, 0):
        monkeypatch.setattr(conv_weights, "FRAME_LOOP_MIN_ELEMENTS", threshold)
        outs.append(jax.jit(lambda *a: conv3d_valid_time(*a, PAD, **kw))(*args))
    return outs


@pytest.mark.parametrize("front", ["none", "repeat", "cache"])
def test_conv_frame_loop_equals_batched(monkeypatch, front):
    x = _rand(0, (2, 5, 6, 7, 4))
    k, b = _rand(1, (3, 3, 3, 4, 3), 0.2), _rand(2, (3,))
    kw = {"none": {}, "repeat": {"front": 2}, "cache": {"front": _rand(3, (2, 2, 6, 7, 4))}}[front]
    batched, looped = _conv_both_ways(monkeypatch, x, k, b, **kw)
    chex.assert_shape(looped, (2, 5 if front != "none" else 3, 6, 7, 3))
    np.testing.assert_allclose(looped, batched, rtol=1e-5, atol=1e-5)
    if front == "repeat":  # the int front is the first frame repeated
        explicit = conv3d_valid_time(jnp.concatenate([x[:, :1], x[:, :1], x], 1), k, b, PAD)
        np.testing.assert_allclose(looped, explicit, rtol=1e-5, atol=1e-5)


def test_conv_frame_loop_gradients(monkeypatch):
    x = _rand(0, (1, 4, 5, 5, 3))
    k, b = _rand(1, (3, 3, 3, 3, 2), 0.2), _rand(2, (2,))
    grads = []
    for threshold in (1 << 62, 0):
        monkeypatch.setattr(conv_weights, "FRAME_LOOP_MIN_ELEMENTS", threshold)
        loss = lambda x, k: jnp.sum(jnp.sin(conv3d_valid_time(x, k, b, PAD, front=2)))  # noqa: E731
        grads.append(jax.grad(loss, argnums=(0, 1))(x, k))
    for g_batched, g_looped in zip(*grads):
        np.testing.assert_allclose(g_looped, g_batched, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threshold", [1 << 62, 0], ids=["batched", "looped"])
def test_upsample_parity_convs_equal_conv_of_nearest_2x(monkeypatch, threshold):
    monkeypatch.setattr(conv_weights, "FRAME_LOOP_MIN_ELEMENTS", threshold)
    x = _rand(0, (2, 3, 5, 6, 4))
    k, b = _rand(1, (3, 3, 4, 5), 0.3), _rand(2, (5,))
    direct = conv2d_frames(jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3), k, b, stride=1, padding=PAD)
    fast = jax.jit(lambda *a: upsample2x_conv3x3(*a))(x, k, b)  # a fresh jit: the threshold is read when tracing
    chex.assert_shape(fast, (2, 3, 10, 12, 5))
    np.testing.assert_allclose(fast, direct, rtol=1e-5, atol=1e-5)


def test_vae_decode_with_every_conv_looped(monkeypatch):
    from configs.vae import VAEConfig
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX

    cfg = VAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                    sample_height=16, sample_width=16)
    vae = AutoencoderKLCogVideoX(cfg)
    video = jax.random.uniform(jax.random.PRNGKey(0), (1, 9, 16, 24, 3), minval=-1, maxval=1)
    shapes = jax.eval_shape(lambda: vae.init(jax.random.PRNGKey(1), video[:, :1]))["params"]
    leaves, tree = jax.tree.flatten(shapes)
    params = jax.tree.unflatten(tree, [_rand(i, s.shape, 0.3) for i, s in enumerate(leaves)])
    z = _rand(99, (1, 5, 2, 3, 4))  # diffusers frame batching: 3 latent frames, then a 2-frame chunk with caches
    outs = []
    for threshold in (1 << 62, 0):
        monkeypatch.setattr(conv_weights, "FRAME_LOOP_MIN_ELEMENTS", threshold)
        outs.append(jax.jit(lambda p, z: vae.apply({"params": p}, z, method="decode"),
                            compiler_options={"xla_backend_optimization_level": 0})(params, z))
    dec_b, dec_l = outs
    chex.assert_shape(dec_l, (1, 17, 16, 24, 3))
    np.testing.assert_allclose(dec_l, dec_b, rtol=1e-4, atol=1e-4 * float(jnp.abs(dec_b).max()))
    assert float(jnp.abs(dec_b).std()) > 1e-3
