"""Build the transformer named by a ``TrainConfig`` and describe its inputs.

``model="tiny-2b" | "tiny-5b" | "cogvideox-2b" | …`` resolves through ``configs/transformer.py`` (the
real ``CogVideoXTransformer3D``); ``model="standin"`` is a small attention model with the same call
signature ``apply({"params": p}, latents (B,t,h,w,C), text_emb (B,L,D), timestep (B,)) -> (B,t,h,w,C)``
and ``to_q/to_k/to_v/to_out`` projections, used by tests that must not depend on the transformer.
"""
from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from cogvideox_jax.parallel.logical_axes import constrain, logical_init


@dataclass(frozen=True)
class ModelSpec:
    module: nn.Module
    latent_channels: int
    text_dim: int
    patch_size: int = 2
    patch_size_t: int = 1
    # forward FLOPs estimate inputs
    num_layers: int = 1
    inner_dim: int = 64
    ff_mult: int = 4
    time_embed_dim: int = 512
    image_conditioned: bool = False   # I2V: the module takes concat(latents, image latents) = 2·C channels
    ofs: float | None = None          # CogVideoX 1.5-I2V: the ofs embedding's input (2.0)

    @property
    def in_channels(self) -> int:
        return 2 * self.latent_channels if self.image_conditioned else self.latent_channels

    def call_kwargs(self) -> dict:
        return {} if self.ofs is None else {"ofs": self.ofs}


class StandInVideoModel(nn.Module):
    """A few joint text/video attention blocks on patchified latents (test double, not CogVideoX)."""
    channels: int = 4
    text_dim: int = 16
    dim: int = 32
    heads: int = 2
    layers: int = 2
    patch: int = 2
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    def _dense(self, feats, names, name):
        return nn.Dense(feats, dtype=self.dtype, param_dtype=self.param_dtype, name=name,
                        kernel_init=logical_init(nn.initializers.lecun_normal(), names),
                        bias_init=logical_init(nn.initializers.zeros, names[-1:]))

    @nn.compact
    def __call__(self, latents, text_emb, timestep):
        b, t, h, w, c = latents.shape
        p = self.patch
        x = latents.reshape(b, t, h // p, p, w // p, p, c).transpose(0, 1, 2, 4, 6, 3, 5)
        x = x.reshape(b, t * (h // p) * (w // p), c * p * p)
        x = self._dense(self.dim, ("patch", "embed"), "patch_embed")(x)
        x = x + _sincos(x.shape[1], self.dim)[None].astype(x.dtype)  # size-independent params
        txt = self._dense(self.dim, ("text_embed", "embed"), "text_proj")(text_emb)
        half = self.dim // 2
        freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / half)
        ang = timestep.astype(jnp.float32)[:, None] * freqs[None]
        temb = jnp.concatenate([jnp.cos(ang), jnp.sin(ang)], -1)
        temb = self._dense(self.dim, ("embed", "embed"), "time_embedding")(nn.silu(temb))
        n_txt = txt.shape[1]
        hs = jnp.concatenate([txt, x], axis=1)
        for i in range(self.layers):
            scale, shift = jnp.split(self._dense(2 * self.dim, ("embed", "mlp"), f"block_{i}_ada")(nn.silu(temb)), 2, -1)
            y = nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype)(hs)
            y = y * (1 + scale[:, None]) + shift[:, None]
            hs = hs + _Attention(self.dim, self.heads, self.dtype, self.param_dtype, name=f"block_{i}_attn")(y)
            y = nn.LayerNorm(dtype=self.dtype)(hs)
            y = self._dense(2 * self.dim, ("embed", "mlp"), f"block_{i}_ff_in")(y)
            hs = hs + self._dense(self.dim, ("mlp", "embed"), f"block_{i}_ff_out")(nn.gelu(y))
            hs = constrain(hs, ("activation_batch", "activation_length", "activation_embed"))
        out = nn.LayerNorm(dtype=self.dtype)(hs[:, n_txt:])
        out = self._dense(c * p * p, ("embed", "patch"), "proj_out")(out)
        out = out.reshape(b, t, h // p, w // p, c, p, p).transpose(0, 1, 2, 5, 3, 6, 4)
        return out.reshape(b, t, h, w, c)


def _sincos(n, dim):
    half = dim // 2
    ang = jnp.arange(n, dtype=jnp.float32)[:, None] * jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / half)[None]
    return jnp.concatenate([jnp.sin(ang), jnp.cos(ang)], -1)


class _Attention(nn.Module):
    dim: int
    heads: int
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    def _dense(self, feats, names, name):
        return nn.Dense(feats, dtype=self.dtype, param_dtype=self.param_dtype, name=name,
                        kernel_init=logical_init(nn.initializers.lecun_normal(), names),
                        bias_init=logical_init(nn.initializers.zeros, names[-1:]))

    @nn.compact
    def __call__(self, x):
        b, n, _ = x.shape
        dh = self.dim // self.heads
        q = self._dense(self.dim, ("embed", "heads"), "to_q")(x).reshape(b, n, self.heads, dh)
        k = self._dense(self.dim, ("embed", "heads"), "to_k")(x).reshape(b, n, self.heads, dh)
        v = self._dense(self.dim, ("embed", "heads"), "to_v")(x).reshape(b, n, self.heads, dh)
        o = jax.nn.dot_product_attention(q, k, v).reshape(b, n, self.dim)
        return self._dense(self.dim, ("heads", "embed"), "to_out_0")(o)


def _dtype(name: str):
    return jnp.dtype(name)


def build_model(cfg, init=None, mesh=None) -> ModelSpec:
    """The module + input description for ``cfg.model``; with ``init`` (``train/init_source.py``) the
    transformer of the init weights' config (a named preset must agree with it). ``mesh``: the mesh the
    model runs on, given to the transformer (its sequence-parallel attention, ``execution.sequence_parallel``,
    runs in ``shard_map`` over it)."""
    dtype, param_dtype = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
    execution = cfg.execution.overrides()
    if init is not None:
        from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
        from cogvideox_jax.train.init_source import check_preset, transformer_config

        config = transformer_config(init, execution)
        check_preset(cfg.model, config, init)
        return spec_for_transformer(CogVideoXTransformer3D(config, dtype=dtype, param_dtype=param_dtype, mesh=mesh))
    if cfg.model == "auto":
        raise ValueError("model='auto' takes the transformer's architecture from init_from (--init PATH); none given")
    if cfg.model == "standin":
        if execution:
            raise ValueError(f"execution options {sorted(execution)} apply to transformer presets, not model='standin'")
        m = StandInVideoModel(dtype=dtype, param_dtype=param_dtype)
        return ModelSpec(m, m.channels, m.text_dim, m.patch, 1, m.layers, m.dim, 2, m.dim)
    return _build_transformer(cfg.model, dtype, param_dtype, execution, mesh)


def _build_transformer(name: str, dtype, param_dtype, execution: dict, mesh=None) -> ModelSpec:
    """A ``configs/transformer.py`` preset (``cogvideox-2b``, ``cogvideox-5b``, ``cogvideox1.5-5b``,
    ``tiny-2b``, ``tiny-5b``, …) as ``CogVideoXTransformer3D``, with ``execution`` (``TransformerConfig``
    field values: scan, remat, attention backend, matmul dtype, sequence parallelism) replacing the
    preset's."""
    from configs.transformer import get_preset
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D

    config = get_preset(name).replace(**execution)
    return spec_for_transformer(CogVideoXTransformer3D(config, dtype=dtype, param_dtype=param_dtype, mesh=mesh))


def spec_for_transformer(module) -> ModelSpec:
    """``ModelSpec`` of a ``CogVideoXTransformer3D`` (e.g. one returned by ``load_diffusers``)."""
    c = module.config
    latent = c.out_channels or c.in_channels
    return ModelSpec(module, latent, c.text_embed_dim, c.patch_size, c.patch_size_t or 1, c.num_layers,
                     c.inner_dim, 4, c.time_embed_dim, image_conditioned=c.in_channels == 2 * latent,
                     ofs=2.0 if c.ofs_embed_dim else None)


def _init_inputs(spec: ModelSpec, latent_shape, text_shape):
    lat = jnp.zeros((*latent_shape[:-1], spec.in_channels), jnp.float32)
    return lat, jnp.zeros(text_shape, jnp.float32), jnp.zeros((latent_shape[0],), jnp.int32)


def abstract_boxed_params(spec: ModelSpec, latent_shape, text_shape):
    """``jax.eval_shape`` of init (boxed, with logical names); ``latent_shape`` is the video latents'
    (an I2V model's input has twice the channels)."""
    def init(*args):  # traced: no array is made (it may run under a mesh of abstract devices: tpu_aot)
        return spec.module.init(jax.random.PRNGKey(0), *args, **spec.call_kwargs())

    args = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                  jax.eval_shape(lambda: _init_inputs(spec, latent_shape, text_shape)))
    return jax.eval_shape(init, *args)["params"]


def init_params(spec: ModelSpec, key, latent_shape, text_shape):
    args = _init_inputs(spec, latent_shape, text_shape)
    return nn.unbox(spec.module.init(key, *args, **spec.call_kwargs())["params"])
