"""CLIP (ViT image tower + causal text tower) in Flax Linen, matching transformers ``CLIPModel``.

Module and parameter names mirror transformers so ``clip_weights.py`` maps a ``save_pretrained``
folder one-to-one. Images are channels-last ``(B, H, W, 3)`` (already normalised with CLIP's mean and
std), token ids ``(B, L)``. Used for VBench's appearance style (OpenAI CLIP ViT-B/32).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from cogvideox_jax.parallel.logical_axes import constrain, logical_init

ACT = ("activation_batch", "activation_length", "activation_embed")


@dataclasses.dataclass(frozen=True)
class CLIPTowerConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    text: CLIPTowerConfig
    vision: CLIPTowerConfig
    projection_dim: int = 512
    vocab_size: int = 49408
    max_position_embeddings: int = 77
    eos_token_id: int = 49407
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3


def _tower(cfg: dict) -> CLIPTowerConfig:
    return CLIPTowerConfig(
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-5),
        hidden_act=cfg.get("hidden_act", "quick_gelu"),
    )


def clip_config_from_json(cfg: dict) -> CLIPConfig:
    """Build the config from a transformers ``CLIPModel`` ``config.json``."""
    t, v = cfg["text_config"], cfg["vision_config"]
    eos = t.get("eos_token_id", 49407)
    return CLIPConfig(
        text=_tower(t),
        vision=_tower(v),
        projection_dim=cfg.get("projection_dim", 512),
        vocab_size=t.get("vocab_size", 49408),
        max_position_embeddings=t.get("max_position_embeddings", 77),
        eos_token_id=eos[0] if isinstance(eos, (list, tuple)) else eos,
        image_size=v.get("image_size", 224),
        patch_size=v.get("patch_size", 32),
        num_channels=v.get("num_channels", 3),
    )


def _activation(name: str):
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    raise ValueError(f"unsupported CLIP activation {name!r}")


def _dense(features, names, dtype, param_dtype, name, use_bias=True):
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=logical_init(nn.initializers.lecun_normal(), names),
        bias_init=logical_init(nn.initializers.zeros, names[-1:]),
        name=name,
    )


def _layer_norm(eps, dtype, param_dtype, name):
    return nn.LayerNorm(
        epsilon=eps,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=logical_init(nn.initializers.ones, ("norm",)),
        bias_init=logical_init(nn.initializers.zeros, ("norm",)),
        name=name,
    )


class CLIPAttention(nn.Module):
    cfg: CLIPTowerConfig
    causal: bool = False
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, n, d = x.shape
        heads = self.cfg.num_attention_heads
        hd = d // heads
        proj = lambda nm: _dense(d, ("embed", "heads"), self.dtype, self.param_dtype, nm)
        q = proj("q_proj")(x).reshape(b, n, heads, hd) * (hd**-0.5)
        k = proj("k_proj")(x).reshape(b, n, heads, hd)
        v = proj("v_proj")(x).reshape(b, n, heads, hd)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
        if self.causal:
            mask = jnp.tril(jnp.ones((n, n), bool))
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d)
        return _dense(d, ("heads", "embed"), self.dtype, self.param_dtype, "out_proj")(out)


class CLIPEncoderLayer(nn.Module):
    cfg: CLIPTowerConfig
    causal: bool = False
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = self.cfg
        h = _layer_norm(c.layer_norm_eps, self.dtype, self.param_dtype, "layer_norm1")(x)
        x = x + CLIPAttention(c, self.causal, self.dtype, self.param_dtype, name="self_attn")(h)
        h = _layer_norm(c.layer_norm_eps, self.dtype, self.param_dtype, "layer_norm2")(x)
        h = _dense(c.intermediate_size, ("embed", "mlp"), self.dtype, self.param_dtype, "fc1")(h)
        h = _activation(c.hidden_act)(h)
        h = _dense(c.hidden_size, ("mlp", "embed"), self.dtype, self.param_dtype, "fc2")(h)
        return constrain(x + h, ACT)


class CLIPEncoder(nn.Module):
    cfg: CLIPTowerConfig
    causal: bool = False
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i in range(self.cfg.num_hidden_layers):
            x = CLIPEncoderLayer(self.cfg, self.causal, self.dtype, self.param_dtype, name=f"layers_{i}")(x)
        return x


class CLIPVisionTransformer(nn.Module):
    cfg: CLIPConfig
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, pixel_values):
        c, v = self.cfg, self.cfg.vision
        d, p = v.hidden_size, c.patch_size
        x = nn.Conv(
            d,
            (p, p),
            strides=(p, p),
            padding="VALID",
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=logical_init(nn.initializers.lecun_normal(), ("conv_h", "conv_w", "conv_in", "embed")),
            name="patch_embedding",
        )(pixel_values.astype(self.dtype))
        b = x.shape[0]
        x = x.reshape(b, -1, d)
        cls = self.param("class_embedding", logical_init(nn.initializers.normal(1.0), ("embed",)), (d,), self.param_dtype)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (b, 1, d)), x], axis=1)
        num_positions = (c.image_size // p) ** 2 + 1
        pos = nn.Embed(
            num_positions,
            d,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=logical_init(nn.initializers.normal(1.0), ("patch", "embed")),
            name="position_embedding",
        )(jnp.arange(num_positions))
        if x.shape[1] != num_positions:
            raise ValueError(f"image gives {x.shape[1]} tokens, model expects {num_positions}")
        x = constrain(x + pos[None], ACT)
        x = _layer_norm(v.layer_norm_eps, self.dtype, self.param_dtype, "pre_layrnorm")(x)
        x = CLIPEncoder(v, False, self.dtype, self.param_dtype, name="encoder")(x)
        return _layer_norm(v.layer_norm_eps, self.dtype, self.param_dtype, "post_layernorm")(x[:, 0])


class CLIPTextTransformer(nn.Module):
    cfg: CLIPConfig
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids):
        c, t = self.cfg, self.cfg.text
        d = t.hidden_size
        embed = lambda n, nm, ax: nn.Embed(
            n, d, dtype=self.dtype, param_dtype=self.param_dtype,
            embedding_init=logical_init(nn.initializers.normal(1.0), ax), name=nm,
        )
        length = input_ids.shape[1]
        x = embed(c.vocab_size, "token_embedding", ("vocab", "embed"))(input_ids)
        x = x + embed(c.max_position_embeddings, "position_embedding", ("patch", "embed"))(jnp.arange(length))[None]
        x = CLIPEncoder(t, True, self.dtype, self.param_dtype, name="encoder")(constrain(x, ACT))
        x = _layer_norm(t.layer_norm_eps, self.dtype, self.param_dtype, "final_layer_norm")(x)
        if c.eos_token_id == 2:  # legacy configs: the EOS token has the largest id
            eos_pos = jnp.argmax(input_ids, axis=-1)
        else:  # first occurrence of the EOS id
            eos_pos = jnp.argmax(input_ids == c.eos_token_id, axis=-1)
        return x[jnp.arange(x.shape[0]), eos_pos]


class CLIPModel(nn.Module):
    cfg: CLIPConfig
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        c = self.cfg
        self.text_model = CLIPTextTransformer(c, self.dtype, self.param_dtype)
        self.vision_model = CLIPVisionTransformer(c, self.dtype, self.param_dtype)
        self.visual_projection = _dense(c.projection_dim, ("embed", "mlp"), self.dtype, self.param_dtype, None, False)
        self.text_projection = _dense(c.projection_dim, ("embed", "mlp"), self.dtype, self.param_dtype, None, False)
        self.logit_scale = self.param("logit_scale", logical_init(nn.initializers.constant(2.6592), ()), (), self.param_dtype)

    def get_image_features(self, pixel_values):
        return self.visual_projection(self.vision_model(pixel_values))

    def get_text_features(self, input_ids):
        return self.text_projection(self.text_model(input_ids))

    def __call__(self, input_ids, pixel_values):
        """Returns ``(logits_per_text, text_embeds, image_embeds)`` (embeds L2-normalised)."""
        img = self.get_image_features(pixel_values).astype(jnp.float32)
        txt = self.get_text_features(input_ids).astype(jnp.float32)
        img = img / jnp.linalg.norm(img, axis=-1, keepdims=True)
        txt = txt / jnp.linalg.norm(txt, axis=-1, keepdims=True)
        logits_per_text = jnp.exp(self.logit_scale.astype(jnp.float32)) * txt @ img.T
        return logits_per_text, txt, img
