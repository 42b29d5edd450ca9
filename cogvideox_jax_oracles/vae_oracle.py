"""Helpers shared by the VAE tests: tiny random-init diffusers VAEs and layout conversions."""
from __future__ import annotations

import numpy as np

TINY_CONFIGS = {
    # 3 levels (spatial /4, time /4), 1 resnet per block, 8 groups
    "a": dict(block_out_channels=(16, 32, 32), latent_channels=4, layers_per_block=1, norm_num_groups=8),
    # 4 levels (spatial /8), 2 resnets per block, 4 groups, odd latent width
    "b": dict(block_out_channels=(8, 16, 24, 24), latent_channels=6, layers_per_block=2, norm_num_groups=4),
}


def make_torch_vae(name: str, seed: int = 0, **extra):
    import torch
    from diffusers import AutoencoderKLCogVideoX

    cfg = dict(TINY_CONFIGS[name])
    n = len(cfg["block_out_channels"])
    cfg.update(
        down_block_types=("CogVideoXDownBlock3D",) * n,
        up_block_types=("CogVideoXUpBlock3D",) * n,
        sample_height=32,
        sample_width=48,
    )
    cfg.update(extra)
    torch.manual_seed(seed)
    model = AutoencoderKLCogVideoX(**cfg).eval()
    # random-init GroupNorm affines are (1, 0); perturb them so the parity test sees them
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.GroupNorm):
                mod.weight.add_(0.1 * torch.randn_like(mod.weight))
                mod.bias.add_(0.1 * torch.randn_like(mod.bias))
    return model


def to_torch(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float32), -1, 1)))


def from_torch(t):
    return np.moveaxis(t.detach().float().numpy(), 1, -1)


def rel_err(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-12))
