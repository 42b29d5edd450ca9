"""Image-to-video training: the reference's noised-image conditioning (pixel noise σ = exp(N(−3, 0.5)),
5 % image dropout, zero-padded image latents concatenated on channels) and a tiny I2V model that trains."""
from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np

from configs.train_config import StageConfig
from cogvideox_jax.train.i2v_conditioning import drop_images, i2v_model_input, image_noise_sigma, noise_images
from cogvideox_jax.train.latent_batches import EncodedVideoBatches
from cogvideox_jax.train.trainer import Trainer
from tests.test_train_loop import tiny_cfg


def test_image_noise_sigma_is_lognormal_minus3_half():
    log_sigma = np.log(image_noise_sigma(np.random.default_rng(0), 20000))
    assert abs(log_sigma.mean() + 3.0) < 0.02 and abs(log_sigma.std() - 0.5) < 0.02
    img = np.zeros((4, 1, 8, 8, 3), np.float32)
    noisy = noise_images(np.random.default_rng(1), img)
    per_sample = noisy.reshape(4, -1).std(axis=1)
    assert (per_sample > 0.005).all() and (per_sample < 0.5).all()


def test_model_input_pads_the_image_latent_and_drops_whole_rows():
    x = jnp.ones((3, 5, 2, 2, 4))
    img = jnp.full((3, 1, 2, 2, 4), 2.0)
    out = np.asarray(i2v_model_input(x, img))
    chex.assert_shape(out, (3, 5, 2, 2, 8))
    np.testing.assert_array_equal(out[..., :4], 1.0)
    np.testing.assert_array_equal(out[:, :1, ..., 4:], 2.0)
    np.testing.assert_array_equal(out[:, 1:, ..., 4:], 0.0)
    many = jnp.ones((4000, 1, 1, 1, 2))
    dropped = (np.asarray(drop_images(jax.random.PRNGKey(0), many, 0.05)) == 0).all(axis=(1, 2, 3, 4))
    assert 0.035 < dropped.mean() < 0.065
    assert drop_images(jax.random.PRNGKey(0), many, 0.0) is many


def test_encoded_video_batches_encode_the_noised_first_frame():
    seen = []

    def enc_video(v):
        seen.append(np.asarray(v))
        return np.asarray(v)[:, ::4, ::8, ::8, :1]

    class Source:
        pos = 0

        def __next__(self):
            self.pos += 1
            return {"video": np.full((2, 9, 16, 16, 3), 0.5, np.float32), "prompt": ["a", "b"]}

        def get_state(self):
            return {"pos": self.pos}

    b = next(EncodedVideoBatches(Source(), enc_video, lambda p: np.zeros((len(p), 4, 8)), image_conditioned=True))
    assert b["image_latents"].shape == (2, 1, 2, 2, 1)
    image_in = seen[1]
    assert image_in.shape == (2, 1, 16, 16, 3)
    assert 0 < np.abs(image_in - 0.5).mean() < 0.3  # noised, not replaced


def test_tiny_i2v_model_trains_and_uses_the_image_channels(tmp_path):
    cfg = dataclasses.replace(tiny_cfg(model="tiny-5b-i2v"), text_len=8,
                              stages=(StageConfig(steps=25, num_frames=9, height=32, width=48),))
    tr = Trainer(cfg, str(tmp_path))
    assert tr.spec.image_conditioned and tr.spec.in_channels == 8
    state0 = jax.device_get(tr.build_state().params)
    recs = tr.fit()
    params = jax.device_get(tr.state.params)
    tr.close()
    losses = np.array([r["loss"] for r in recs])
    assert np.isfinite(losses).all() and losses[-5:].mean() < 0.8 * losses[:3].mean(), losses
    k0 = np.asarray(state0["patch_embed"]["proj_kernel"])
    k1 = np.asarray(params["patch_embed"]["proj_kernel"])
    assert k0.shape[2] == 8  # the patch projection sees concat(video, image) latents = 2·C channels
    assert np.abs(k1[:, :, 4:] - k0[:, :, 4:]).max() > 1e-4  # the image channels get gradient
