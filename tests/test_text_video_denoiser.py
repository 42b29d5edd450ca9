"""T5 + transformer trained together on token ids (``models/text_video_denoiser.py``): the module is
the two components composed, the T5's head projections keep DenseGeneral's params and numbers, and
the Trainer trains both halves on a sharded mesh with caption dropout on ids."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs.t5 import T5Config
from configs.train_config import CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig
from configs.transformer import get_preset

TRANSFORMER = get_preset("tiny-5b")  # text_embed_dim 32, 8 text tokens
T5 = T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
              relative_attention_num_buckets=8, relative_attention_max_distance=16)


def test_heads_dense_is_dense_general():
    """Same param shape, init values (the flat draw reshaped) and outputs as ``nn.DenseGeneral``."""
    from cogvideox_jax.models.t5.t5_layers import _DEFAULT_KERNEL_INIT, HeadsDense

    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 32))
    for feats, axis, names, inp in (((4, 8), (-1,), ("embed", "heads", "kv"), x),
                                    ((32,), (-2, -1), ("heads", "kv", "embed"), x.reshape(2, 5, 4, 8))):
        ours = HeadsDense(feats, axis, names)
        ref = nn.DenseGeneral(feats, axis=axis, use_bias=False, kernel_init=_DEFAULT_KERNEL_INIT)
        p = nn.unbox(ours.init(jax.random.PRNGKey(0), inp))
        q = ref.init(jax.random.PRNGKey(0), inp)
        np.testing.assert_array_equal(p["params"]["kernel"], q["params"]["kernel"])
        np.testing.assert_array_equal(ours.apply(p, inp), ref.apply(q, inp))


def test_denoiser_is_t5_then_transformer():
    from cogvideox_jax.models.t5.t5_encoder import T5EncoderModel
    from cogvideox_jax.models.text_video_denoiser import TextVideoDenoiser
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D

    ids = jnp.asarray([[5, 9, 3, 1, 0, 0, 0, 0], [7, 1, 0, 0, 0, 0, 0, 0]], jnp.int32)
    lat = jax.random.normal(jax.random.PRNGKey(2), (2, 2, 4, 6, 4))
    t = jnp.asarray([10, 700])
    model = TextVideoDenoiser(T5, TRANSFORMER)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), lat, ids, t))["params"]
    assert set(params) == {"text_encoder", "transformer"}
    out = model.apply({"params": params}, lat, ids.astype(jnp.float32), t)  # float ids, as in batches
    emb = T5EncoderModel(T5).apply({"params": params["text_encoder"]}, ids)
    ref = CogVideoXTransformer3D(TRANSFORMER).apply({"params": params["transformer"]}, lat, emb, t)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_drop_text_replaces_id_rows():
    from cogvideox_jax.train.text_dropout import drop_text

    ids = jnp.arange(64, dtype=jnp.float32).reshape(8, 8) + 2
    null = jnp.asarray([1, 0, 0, 0, 0, 0, 0, 0], jnp.float32)
    out = np.asarray(drop_text(jax.random.PRNGKey(0), ids, 0.5, null))
    dropped = (out == np.asarray(null)).all(1)
    assert 0 < dropped.sum() < 8
    np.testing.assert_array_equal(out[~dropped], np.asarray(ids)[~dropped])


def test_trainer_trains_text_encoder_on_token_ids(tmp_path):
    """Precomputed ``text_ids.npy`` batches (null ids for dropped captions) through the Trainer on a
    data x fsdp mesh: loss finite, the T5's params move, its kernels sharded by the rules table."""
    from cogvideox_jax.models.text_video_denoiser import TextVideoDenoiser
    from cogvideox_jax.train.model_factory import spec_for_text_video_denoiser
    from cogvideox_jax.train.trainer import Trainer

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "latents.npy", rng.standard_normal((16, 2, 4, 6, 4)).astype(np.float32))
    ids = np.zeros((16, 8), np.int32)
    ids[:, :4] = rng.integers(3, 40, (16, 4))
    ids[:, 4] = 1
    np.save(data / "text_ids.npy", ids)
    np.save(data / "null_text_ids.npy", np.asarray([1] + [0] * 7, np.int32))
    cfg = TrainConfig(model="tiny-5b", mesh="data=2,fsdp=4", batch_size=8, text_len=8, text_dropout=0.3,
                      optimizer=OptimizerConfig(lr=2e-3, warmup_steps=1),
                      stages=(StageConfig(steps=4, num_frames=5, height=32, width=48),),
                      checkpoint=CheckpointConfig(every_steps=1000, keep_last=1, keep_best=0, async_save=False),
                      data=DataConfig(kind="precomputed", path=str(data)), log_every=1)
    spec = spec_for_text_video_denoiser(TextVideoDenoiser(T5, TRANSFORMER))
    assert spec.text_key == "text_ids" and spec.text_shape(8) == (8,)
    tr = Trainer(cfg, str(tmp_path / "run"), model_spec=spec, stdout=False)
    before = jax.device_get(tr.build_state().params)
    np.testing.assert_array_equal(tr._null_text_emb(), np.asarray([1] + [0] * 7))
    recs = tr.fit()
    after = jax.device_get(tr.state.params)
    shard = tr.state.params["text_encoder"]["encoder"]["block_0"]["layer_0"]["SelfAttention"]["q"]["kernel"].sharding
    tr.close()
    assert len(recs) == 4 and all(np.isfinite(r["loss"]) for r in recs)
    for half in ("text_encoder", "transformer"):
        moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before[half]), jax.tree.leaves(after[half]))]
        assert all(moved), half
    assert tuple(shard.spec)[:1] == ("fsdp",)  # ("embed", "heads", "kv") -> embed on fsdp
