"""VAE training objective and loop (``cogvideox_jax/shapes/vae_objective.py``, ``cogvideox_jax/shapes/vae_trainer.py``)."""
from __future__ import annotations

import os

import chex
import jax
import numpy as np
import pytest

from cogvideox_jax.shapes.config import VAEPhase, VAETrainConfig
from configs.vae import VAEConfig
from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
from cogvideox_jax.shapes.vae_objective import VAELossWeights, foreground_weights, vae_loss
from cogvideox_jax.shapes.vae_trainer import foreground_centroids, random_crops, reconstruct, train_vae

TINY = VAEConfig(block_out_channels=(8, 8), down_block_types=("CogVideoXDownBlock3D",) * 2,
                 up_block_types=("CogVideoXUpBlock3D",) * 2, layers_per_block=1, latent_channels=4,
                 norm_num_groups=4, temporal_compression_ratio=2)


def _clips(n=6, t=9, s=16):
    """Flat-colored clips with a moving bright square (uint8)."""
    rng = np.random.default_rng(0)
    clips = np.zeros((n, t, s, s, 3), np.uint8)
    for i in range(n):
        clips[i] = rng.integers(0, 80, 3)
        for f in range(t):
            clips[i, f, 4:8, 2 + f // 2:6 + f // 2] = rng.integers(150, 255, 3) if f == 0 else clips[i, 0, 4, 2 + 0]
    return clips


def test_random_crops_shape_range_and_determinism():
    clips = _clips()
    a = random_crops(clips, np.random.default_rng(1), 3, 9, 8)
    b = random_crops(clips, np.random.default_rng(1), 3, 9, 8)
    chex.assert_shape(a, (3, 9, 8, 8, 3))
    np.testing.assert_array_equal(a, b)
    assert a.min() >= -1.0 and a.max() <= 1.0
    with pytest.raises(ValueError, match="1 \\+ 8k"):
        random_crops(clips, np.random.default_rng(1), 1, 5, 8)


def test_object_crops_contain_the_object():
    """Centered on ``foreground_centroids``, every crop shows the object; plain random crops of the same
    clips often miss it (a 4x4 object in a 32x32 frame, 8x8 crops)."""
    rng = np.random.default_rng(0)
    clips = np.zeros((8, 1, 32, 32, 3), np.uint8)
    corners = rng.integers(0, 28, (8, 2))
    for i, (y, x) in enumerate(corners):
        clips[i] = rng.integers(0, 60, 3)
        clips[i, 0, y:y + 4, x:x + 4] = 255
    centers = foreground_centroids(clips)
    np.testing.assert_allclose(centers, corners + 1.5)
    crops = random_crops(clips, np.random.default_rng(3), 64, 1, 8, centers)
    assert (crops.max(axis=(1, 2, 3, 4)) == 1.0).all()
    plain = random_crops(clips, np.random.default_rng(3), 64, 1, 8)
    assert (plain.max(axis=(1, 2, 3, 4)) < 1.0).sum() > 16
    # flat clips (nothing in front of the background) fall back to the frame center
    np.testing.assert_allclose(foreground_centroids(np.full((1, 1, 9, 9, 3), 7, np.uint8)), [[4.0, 4.0]])


def test_vae_loss_terms_match_their_definitions():
    vae = AutoencoderKLCogVideoX(TINY)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 9, 8, 8, 3), minval=-1, maxval=1)
    params = vae.init(jax.random.PRNGKey(1), x, frame_batching="whole")["params"]
    key = jax.random.PRNGKey(2)
    w = VAELossWeights(l1=0.5, mse=2.0, kl=0.1)
    loss, m = vae_loss(vae, params, x, key, w)
    post = vae.apply({"params": params}, x, frame_batching="whole", method="encode")
    recon = vae.apply({"params": params}, post.sample(key), frame_batching="whole", method="decode")
    err = np.asarray(recon) - np.asarray(x)
    kl = float(np.mean(post.kl())) / post.mean[0].size
    np.testing.assert_allclose(float(m["l1"]), np.abs(err).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["mse"]), (err ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["kl"]), kl, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 0.5 * np.abs(err).mean() + 2.0 * (err ** 2).mean() + 0.1 * kl, rtol=1e-5)


def test_foreground_weighted_loss_weighs_object_pixels():
    clips = _clips(n=2).astype(np.float32) / 127.5 - 1.0
    w = np.asarray(foreground_weights(clips, 4.0))
    chex.assert_shape(w, clips.shape[:-1] + (1,))
    background = np.median(clips.reshape(2, -1, 3), axis=1)
    obj = (np.abs(clips - background[:, None, None, None]).max(-1, keepdims=True) > 0.1)
    assert obj.any() and not obj.all()
    np.testing.assert_array_equal(w, np.where(obj, 5.0, 1.0))

    vae = AutoencoderKLCogVideoX(TINY)
    x = clips[:, :, :8, :8]
    params = vae.init(jax.random.PRNGKey(1), x, frame_batching="whole")["params"]
    key = jax.random.PRNGKey(2)
    loss, m = vae_loss(vae, params, x, key, VAELossWeights(l1=1.0, mse=1.0, kl=0.0, foreground=4.0))
    post = vae.apply({"params": params}, x, frame_batching="whole", method="encode")
    err = np.asarray(vae.apply({"params": params}, post.sample(key), frame_batching="whole", method="decode")) - x
    wx = np.broadcast_to(np.asarray(foreground_weights(x, 4.0)), err.shape)
    np.testing.assert_allclose(float(m["l1"]), (wx * np.abs(err)).sum() / wx.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), ((wx * (np.abs(err) + err ** 2)).sum() / wx.sum()), rtol=1e-5)
    np.testing.assert_allclose(float(m["mse"]), (err ** 2).mean(), rtol=1e-5)   # PSNR stays unweighted


@pytest.mark.slow  # the shapes recipe's VAE stage end to end (~1-1.5 min on 2 cores)
def test_train_vae_reduces_reconstruction_error():
    clips = _clips()
    vae = AutoencoderKLCogVideoX(TINY)
    cfg = VAETrainConfig(phases=(VAEPhase(steps=40, batch_size=4, frames=9, size=16),), lr=3e-3, warmup_steps=5,
                         log_every=10)
    params, history = train_vae(vae, cfg, clips, progress=False)
    first, last = history[0]["mse"], np.mean([h["mse"] for h in history[-2:]])
    assert last < 0.5 * first, (first, last)
    rec = reconstruct(vae, params, clips[:2])
    assert rec.shape == clips[:2].shape and rec.dtype == np.uint8


@pytest.mark.slow  # the shapes recipe's VAE stage end to end (~1-1.5 min on 2 cores)
def test_train_vae_resumes_from_its_checkpoint_to_the_uninterrupted_weights(tmp_path, capsys):
    """With ``checkpoint_dir``, a second call resumes from the latest checkpoint (here step 4, past the
    first phase) and ends at the weights of a run never interrupted."""
    clips = _clips()
    vae = AutoencoderKLCogVideoX(TINY)
    cfg = VAETrainConfig(phases=(VAEPhase(steps=2, batch_size=4, frames=1, size=16),
                                 VAEPhase(steps=3, batch_size=2, frames=9, size=16)),
                         lr=3e-3, warmup_steps=1, log_every=1, checkpoint_every=2)
    ckpt = str(tmp_path / "checkpoints")
    uninterrupted, _ = train_vae(vae, cfg, clips, progress=False, checkpoint_dir=ckpt)
    assert sorted(os.listdir(ckpt)) == ["4"]   # the latest kept: as if stopped during step 5
    capsys.readouterr()
    resumed, history = train_vae(vae, cfg, clips, progress=False, checkpoint_dir=ckpt)
    assert "restored step 4" in capsys.readouterr().out
    assert [h["step"] for h in history] == [5] and history[0]["phase"] == 1
    chex.assert_trees_all_equal(resumed, uninterrupted)


@pytest.mark.slow  # the shapes recipe's VAE stage end to end (~1-1.5 min on 2 cores)
def test_decoder_only_phase_keeps_the_encoder_and_trains_the_decoder():
    """A ``train_encoder=False`` phase from given params: the encoder (so every latent) is bit-identical,
    the decoder moves and reconstructs better than before."""
    clips = _clips()
    vae = AutoencoderKLCogVideoX(TINY)
    base, _ = train_vae(vae, VAETrainConfig(phases=(VAEPhase(steps=2, batch_size=4, frames=9, size=16),),
                                            lr=3e-3, warmup_steps=1), clips, progress=False)
    cfg = VAETrainConfig(phases=(VAEPhase(steps=30, batch_size=4, frames=9, size=16, train_encoder=False),),
                         lr=3e-3, warmup_steps=3, log_every=10, seed=1)
    tuned, history = train_vae(vae, cfg, clips, progress=False, init_params=base)
    for a, b in zip(jax.tree.leaves(base["encoder"]), jax.tree.leaves(tuned["encoder"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(base["decoder"]), jax.tree.leaves(tuned["decoder"])))
    err = [np.mean((reconstruct(vae, p, clips[:4]).astype(np.float32) - clips[:4]) ** 2) for p in (base, tuned)]
    assert err[1] < 0.7 * err[0], err
