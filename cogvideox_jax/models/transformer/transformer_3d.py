"""The CogVideoX expert transformer (diffusers ``CogVideoXTransformer3DModel``) as a Linen module.

    out = model.apply({"params": p}, latents, text_emb, timestep)   # (+ ofs= for 1.5-I2V)

latents ``(B, t, h, w, C)``, text embeddings ``(B, L, text_embed_dim)``, timestep ``(B,)``;
returns the prediction ``(B, t, h, w, C_out)``. Positional information (sin-cos table, learned
table, RoPE cos/sin) is derived from the input shape and the config inside the call.
The blocks run under ``nn.scan`` (params stacked on a leading "layers" axis) or unrolled
(``transformer_blocks_{i}``), optionally rematerialised with a named policy.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from configs.transformer import TransformerConfig
from cogvideox_jax.models.transformer.expert_adaln import AdaLayerNormOut, layer_norm
from cogvideox_jax.models.transformer.patch_embed import PatchEmbed, unpatchify
from cogvideox_jax.models.transformer.positional_embeddings import video_sincos_table
from cogvideox_jax.models.transformer.rope_3d import rope_3d
from cogvideox_jax.models.transformer.timestep_embedding import TimestepEmbedding, sinusoidal_features
from cogvideox_jax.models.transformer.transformer_block import TransformerBlock
from cogvideox_jax.parallel.logical_axes import constrain, logical_init

REMAT = {
    "full": None,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
}


def dummy_inputs(cfg: TransformerConfig):
    """Smallest valid inputs for shape inference (``init`` / ``eval_shape``)."""
    pt = cfg.patch_size_t or 1
    t = pt if cfg.patch_size_t else 1
    lat = jnp.zeros((1, t, cfg.sample_height, cfg.sample_width, cfg.in_channels), jnp.float32)
    text = jnp.zeros((1, cfg.max_text_seq_length, cfg.text_embed_dim), jnp.float32)
    return lat, text, jnp.zeros((1,), jnp.float32)


class CogVideoXTransformer3D(nn.Module):
    config: TransformerConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    mesh: Any = None  # a jax Mesh, needed only for sequence-parallel attention

    def _block_stack(self):
        cfg = self.config
        block = TransformerBlock
        if cfg.remat_policy != "none":
            block = nn.remat(block, policy=REMAT[cfg.remat_policy], prevent_cse=not cfg.scan_layers)
        return block

    @nn.compact
    def __call__(self, latents, text, timestep, ofs=None):
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        b, t, h, w, _ = latents.shape
        temb = sinusoidal_features(jnp.asarray(timestep), cfg.inner_dim, cfg.flip_sin_to_cos, cfg.freq_shift)
        temb = TimestepEmbedding(cfg.time_embed_dim, name="time_embedding", **kw)(temb.astype(self.dtype))
        if cfg.ofs_embed_dim:
            if ofs is None:
                raise ValueError("this transformer has an ofs embedding (CogVideoX 1.5-I2V): pass ofs= (2.0)")
            ofs = jnp.broadcast_to(jnp.asarray(ofs, jnp.float32).reshape(-1), (b,))
            o = sinusoidal_features(ofs, cfg.ofs_embed_dim, cfg.flip_sin_to_cos, cfg.freq_shift)
            temb = temb + TimestepEmbedding(cfg.ofs_embed_dim, name="ofs_embedding", **kw)(o.astype(self.dtype))

        text_h, video = PatchEmbed(cfg, name="patch_embed", **kw)(text.astype(self.dtype), latents.astype(self.dtype))
        text_pos, video_pos = self._positions(t, h, w)
        if video_pos is not None:
            video = video + video_pos.astype(video.dtype)
        if text_pos is not None:
            text_h = text_h + text_pos.astype(text_h.dtype)
        text_h = constrain(text_h, ("activation_batch", "activation_length", "activation_embed"))
        video = constrain(video, ("activation_batch", "activation_length", "activation_embed"))
        rope = None
        if cfg.use_rotary_positional_embeddings:
            cos, sin = rope_3d(cfg, t, h, w)
            rope = (jnp.asarray(cos), jnp.asarray(sin))

        block = self._block_stack()
        if cfg.scan_layers:
            stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                            in_axes=(nn.broadcast, nn.broadcast), length=cfg.num_layers,
                            metadata_params={nn.PARTITION_NAME: "layers"})
            (video, text_h), _ = stack(cfg, self.mesh, name="transformer_blocks", **kw)((video, text_h), temb, rope)
        else:
            for i in range(cfg.num_layers):
                (video, text_h), _ = block(cfg, self.mesh, name=f"transformer_blocks_{i}", **kw)(
                    (video, text_h), temb, rope)

        video = layer_norm("norm_final", cfg.norm_eps, self.dtype, self.param_dtype)(video)
        video = AdaLayerNormOut(cfg.inner_dim, cfg.norm_eps, name="norm_out", **kw)(video, temb)
        out = nn.Dense(cfg.patch_volume * cfg.out_dim, name="proj_out", **kw,
                       kernel_init=logical_init(nn.initializers.lecun_normal(), ("embed", "patch")),
                       bias_init=logical_init(nn.initializers.zeros, ("patch",)))(video)
        return unpatchify(out, cfg, t, h, w)

    def _positions(self, t: int, h: int, w: int):
        """Additive positional tables ``(text, video)``; ``None`` where nothing is added (the sin-cos
        table has zero text rows; RoPE-only models add nothing)."""
        cfg = self.config
        p = cfg.patch_size
        if cfg.use_learned_positional_embeddings:
            if (h, w) != (cfg.sample_height, cfg.sample_width):
                raise ValueError(
                    f"learned positional embeddings (CogVideoX-5b-I2V) only support the sample size "
                    f"{cfg.sample_height}x{cfg.sample_width} latents ({cfg.sample_height * 8}x{cfg.sample_width * 8} px); "
                    f"got {h}x{w}")
            sample_t = (cfg.sample_frames - 1) // cfg.temporal_compression_ratio + 1
            frames_px = (t - 1) * cfg.temporal_compression_ratio + 1  # the reference's comparison
            n_sample = sample_t * (cfg.sample_height // p) * (cfg.sample_width // p)
            table = self.param("pos_embedding", logical_init(nn.initializers.normal(0.02), (None, "embed")),
                               (cfg.max_text_seq_length + n_sample, cfg.inner_dim), self.param_dtype)
            if frames_px == cfg.sample_frames:  # the learned table covers the text rows too
                return table[: cfg.max_text_seq_length], table[cfg.max_text_seq_length:]
            # the reference regenerates the *sin-cos* table when only the frame count differs
            return None, jnp.asarray(video_sincos_table(cfg, t, h, w))
        if cfg.use_rotary_positional_embeddings:
            return None, None
        return None, jnp.asarray(video_sincos_table(cfg, t, h, w))
