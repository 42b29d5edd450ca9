"""Training from mp4 files through the real decode path: grain pipeline → frozen JAX VAE (tiny
diffusers VAE converted) → T5 (tiny) → trainer. The loss goes down."""
import numpy as np
import pytest

from configs.train_config import DataConfig, OptimizerConfig, StageConfig
from cogvideox_jax.train.model_factory import ModelSpec, StandInVideoModel
from cogvideox_jax.train.trainer import Trainer
from cogvideox_jax.train.video_latents import frozen_encoders, video_data_factory
from cogvideox_jax_oracles.data_video_files import write_folder
from tests.test_train_loop import tiny_cfg
from cogvideox_jax_oracles.tiny_tokenizer import make_t5_tokenizer
from cogvideox_jax_oracles.vae_oracle import make_torch_vae


@pytest.fixture(scope="module")
def pretrained_root(tmp_path_factory):
    from transformers import T5Config, T5EncoderModel
    import torch

    root = tmp_path_factory.mktemp("cogvideox_tiny")
    make_torch_vae("b").save_pretrained(str(root / "vae"))  # spatial /8, time /4, 6 latent channels
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                                 relative_attention_max_distance=16))
    t5.save_pretrained(str(root / "text_encoder"), safe_serialization=True)
    make_t5_tokenizer(root / "tokenizer")
    return str(root)


@pytest.mark.slow  # ~1 min idle; VAE-encodes every batch
def test_loss_decreases_on_mp4_videos(tmp_path, pretrained_root):
    data = tmp_path / "data"
    write_folder(data, [dict(num_frames=20, height=32, width=32, fps=8.0, noise=True,
                             prompt=f"a noisy video number {i}") for i in range(8)])
    cfg = tiny_cfg(text_len=32, data=DataConfig(kind="videos", path=str(data), pretrained=pretrained_root),
                   optimizer=OptimizerConfig(lr=2e-3, warmup_steps=3),
                   stages=(StageConfig(steps=30, num_frames=9, height=32, width=32),))
    encoders = frozen_encoders(pretrained_root, text_len=cfg.text_len)
    print("encoders ready")
    lat = np.asarray(encoders[0](np.zeros((1, 9, 32, 32, 3), np.float32)))
    assert lat.shape == (1, 3, 4, 4, 6)
    spec_module = StandInVideoModel(channels=6, text_dim=32)
    spec = ModelSpec(spec_module, 6, 32, 2, 1, spec_module.layers, spec_module.dim, 2, spec_module.dim)

    def factory(cfg, stage_index, lat_shape, text_shape, batch_size):
        return video_data_factory(cfg, stage_index, lat_shape, text_shape, batch_size, encoders=encoders)

    tr = Trainer(cfg, str(tmp_path / "run"), model_spec=spec, data_factory=factory)
    recs = tr.fit()
    tr.close()
    losses = np.array([r["loss"] for r in recs])
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert losses[-6:].mean() < 0.8 * losses[:3].mean(), losses


def test_precompute_cli_then_train_from_the_latent_cache(tmp_path, pretrained_root):
    """`cogvideox-jax precompute` writes posterior mean/logvar + T5 embeddings; `data.kind=latent_cache`
    trains on them (per-process batches of scaled posterior samples)."""
    import json

    from cogvideox_jax.cli import main
    from cogvideox_jax.data.latent_cache import LatentCacheSource, read_index

    data = tmp_path / "data"
    write_folder(data, [dict(num_frames=12, height=32, width=32, fps=8.0, noise=True,
                             prompt=f"clip {i}") for i in range(8)])
    cache = str(tmp_path / "cache")
    assert main(["precompute", "--data-root", str(data), "--pretrained", pretrained_root, "--out", cache,
                 "--buckets", "9x32x32", "--batch-size", "2", "--num-shards", "2", "--text-len", "32"]) == 0
    index = read_index(cache)
    scaling = json.load(open(f"{pretrained_root}/vae/config.json"))["scaling_factor"]
    assert index["num_records"] == 8 and index["scaling_factor"] == scaling
    rec = LatentCacheSource([cache])[0]
    assert rec["latent_mean"].shape == (3, 4, 4, 6) and rec["text_emb"].shape == (32, 32)
    assert np.isfinite(rec["latent_logvar"]).all()

    cfg = tiny_cfg(text_len=32, batch_size=8, data=DataConfig(kind="latent_cache", path=cache),
                   stages=(StageConfig(steps=2, num_frames=9, height=32, width=32),))
    spec_module = StandInVideoModel(channels=6, text_dim=32)
    spec = ModelSpec(spec_module, 6, 32, 2, 1, spec_module.layers, spec_module.dim, 2, spec_module.dim)
    tr = Trainer(cfg, str(tmp_path / "run"), model_spec=spec)
    recs = tr.fit()
    tr.close()
    assert len(recs) == 2 and all(np.isfinite(r["loss"]) for r in recs)


def test_per_channel_scaled_vae_in_video_training_and_precompute(tmp_path, pretrained_root):
    """A VAE config with ``latents_mean`` / ``latents_std`` scales what training from videos encodes
    (``(z − μ)·s/σ``); ``precompute`` (one scaling factor per cache) refuses it with a clear error."""
    import json
    import shutil

    import jax.numpy as jnp

    from cogvideox_jax.cli import main
    from cogvideox_jax.train.video_latents import frozen_posterior_encoders

    root = tmp_path / "per_channel"
    shutil.copytree(pretrained_root, root)
    cfg_path = root / "vae" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=cfg["latent_channels"]), rng.uniform(0.5, 2.0, cfg["latent_channels"])
    cfg.update(scaling_factor=0.5, latents_mean=mean.tolist(), latents_std=std.tolist())
    cfg_path.write_text(json.dumps(cfg))

    video = jnp.asarray(rng.uniform(-1, 1, (1, 9, 32, 32, 3)), jnp.float32)
    encode_video, _ = frozen_encoders(str(root), text_len=32)
    raw = np.asarray(frozen_posterior_encoders(str(root), text_len=32)[0](video)[0])
    np.testing.assert_allclose(np.asarray(encode_video(video)), (raw - mean) * 0.5 / std, rtol=1e-5, atol=1e-5)

    data = tmp_path / "data"
    write_folder(data, [dict(num_frames=12, height=32, width=32, fps=8.0, noise=True, prompt="clip 0")])
    with pytest.raises(ValueError, match="per channel"):
        main(["precompute", "--data-root", str(data), "--pretrained", str(root), "--out", str(tmp_path / "cache"),
              "--buckets", "9x32x32", "--batch-size", "1", "--text-len", "32"])
