"""Patch embedding: text projection + video patchify; the joint sequence is [text, video].

* CogVideoX 1.0: a 2x2 stride-2 conv per frame (kept as its conv kernel ``(p, p, C, D)``), tokens
  ordered (t, h, w).
* CogVideoX 1.5: 2x2x2 patches flattened in the reference's (C, p_t, p, p) order, then a linear.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from configs.transformer import TransformerConfig
from cogvideox_jax.parallel.logical_axes import constrain, logical_init


def patchify_1_5(x, p: int, pt: int):
    """(B, t, h, w, C) -> (B, t/pt * h/p * w/p, C*pt*p*p) with features in (C, pt, p, p) order."""
    b, t, h, w, c = x.shape
    x = x.reshape(b, t // pt, pt, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6)  # (B, T', H', W', C, pt, p, p)
    return x.reshape(b, (t // pt) * (h // p) * (w // p), c * pt * p * p)


class PatchEmbed(nn.Module):
    config: TransformerConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, text, latents):
        cfg = self.config
        d = cfg.inner_dim
        text = nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name="text_proj",
                        kernel_init=logical_init(nn.initializers.lecun_normal(), ("text_embed", "embed")),
                        bias_init=logical_init(nn.initializers.zeros, ("embed",)))(text)
        b, t, h, w, c = latents.shape
        p = cfg.patch_size
        if cfg.patch_size_t is None:
            kernel = self.param("proj_kernel", logical_init(nn.initializers.lecun_normal(), ("conv_h", "conv_w", "patch", "embed")),
                                (p, p, c, d), self.param_dtype)
            y = lax.conv_general_dilated(latents.reshape(b * t, h, w, c).astype(self.dtype), kernel.astype(self.dtype),
                                         (p, p), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            if cfg.patch_bias:
                bias = self.param("proj_bias", logical_init(nn.initializers.zeros, ("embed",)), (d,), self.param_dtype)
                y = y + bias.astype(self.dtype)
            # the conv's output (and so its gradient) split over the batch only: left to propagate, the
            # tokens' sequence split reaches the conv's rows / columns, and XLA's SPMD partitioner then
            # returns the kernel's gradient doubled (sequence=4 or 8, XLA:CPU, jax 0.10.2); the features
            # whole, not split like the (FSDP-sharded) kernel and bias
            y = constrain(y, ("activation_batch", None, None, "activation_embed"))
            video = y.reshape(b, t * (h // p) * (w // p), d)
        else:
            video = nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name="proj",
                             kernel_init=logical_init(nn.initializers.lecun_normal(), ("patch", "embed")),
                             bias_init=logical_init(nn.initializers.zeros, ("embed",)))(
                patchify_1_5(latents, p, cfg.patch_size_t))
        return text, video


def unpatchify(x, cfg: TransformerConfig, t: int, h: int, w: int):
    """(B, tokens, p_t*p*p*C) in the reference's (C, [p_t,] p, p) order -> (B, t, h, w, C)."""
    b = x.shape[0]
    p, pt, c = cfg.patch_size, cfg.patch_size_t, cfg.out_dim
    if pt is None:
        x = x.reshape(b, t, h // p, w // p, c, p, p)
        x = x.transpose(0, 1, 2, 5, 3, 6, 4)  # (B, t, H', p, W', p, C)
        return x.reshape(b, t, h, w, c)
    tt = -(-t // pt)
    x = x.reshape(b, tt, h // p, w // p, c, pt, p, p)
    x = x.transpose(0, 1, 5, 2, 6, 3, 7, 4)  # (B, T', pt, H', p, W', p, C)
    return x.reshape(b, tt * pt, h, w, c)
