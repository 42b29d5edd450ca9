"""RAFT (large, as ``raft-things``) optical flow in Flax Linen, channels-last, inference only.

A port of princeton-vl/RAFT as vendored by VBench (``vbench/third_party/RAFT/core``; BSD-3-Clause),
``test_mode`` forward: feature encoder (instance norm) and context encoder (batch norm, running
statistics), all-pairs correlation with a 4-level pyramid looked up at radius 4, separable ConvGRU
update block iterated ``iters`` times, convex 8x upsampling. Images are ``(B, H, W, 3)`` in
[0, 255] with H, W multiples of 8; the result is ``(B, H, W, 2)`` flow (u, v) in pixels.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cogvideox_jax.parallel.logical_axes import logical_init

CORR_LEVELS = 4
CORR_RADIUS = 4
HIDDEN_DIM = 128
CONTEXT_DIM = 128
EPS = 1e-5


def _conv(features, kernel, stride=1, padding=None, name=None):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if padding is None:
        padding = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    return nn.Conv(
        features,
        (kh, kw),
        strides=(stride, stride),
        padding=padding,
        kernel_init=logical_init(nn.initializers.lecun_normal(), ("conv_h", "conv_w", "conv_in", "conv_out")),
        bias_init=logical_init(nn.initializers.zeros, ("conv_out",)),
        name=name,
    )


def instance_norm(x):
    """``nn.InstanceNorm2d`` (no affine, no running stats): per sample and channel over H, W."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = jnp.square(x - mean).mean(axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + EPS)


class FrozenBatchNorm(nn.Module):
    """``nn.BatchNorm2d`` in eval mode; running statistics are stored as (frozen) params."""

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        p = lambda name, init: self.param(name, logical_init(init, ("norm",)), (c,))
        scale, bias = p("scale", nn.initializers.ones), p("bias", nn.initializers.zeros)
        mean, var = p("mean", nn.initializers.zeros), p("var", nn.initializers.ones)
        return (x - mean) * jax.lax.rsqrt(var + EPS) * scale + bias


class _Norm(nn.Module):
    kind: str  # "instance" | "batch"

    @nn.compact
    def __call__(self, x):
        return instance_norm(x) if self.kind == "instance" else FrozenBatchNorm(name="bn")(x)


class ResidualBlock(nn.Module):
    planes: int
    norm: str
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        y = nn.relu(_Norm(self.norm, name="norm1")(_conv(self.planes, 3, self.stride, name="conv1")(x)))
        y = nn.relu(_Norm(self.norm, name="norm2")(_conv(self.planes, 3, name="conv2")(y)))
        if self.stride != 1:
            x = _Norm(self.norm, name="norm3")(_conv(self.planes, 1, self.stride, name="downsample")(x))
        return nn.relu(x + y)


class BasicEncoder(nn.Module):
    output_dim: int
    norm: str

    @nn.compact
    def __call__(self, x):
        x = nn.relu(_Norm(self.norm, name="norm1")(_conv(64, 7, 2, name="conv1")(x)))
        for i, (dim, stride) in enumerate(((64, 1), (96, 2), (128, 2)), start=1):
            x = ResidualBlock(dim, self.norm, stride, name=f"layer{i}_0")(x)
            x = ResidualBlock(dim, self.norm, 1, name=f"layer{i}_1")(x)
        return _conv(self.output_dim, 1, name="conv2")(x)


def _avg_pool2(x):
    """``F.avg_pool2d(x, 2, stride=2)`` on (N, H, W): floor sizes, trailing row/col dropped."""
    n, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, : 2 * h2, : 2 * w2].reshape(n, h2, 2, w2, 2).mean(axis=(2, 4))


def correlation_pyramid(fmap1, fmap2, levels=CORR_LEVELS):
    """All-pairs correlation ``<f1(i), f2(j)> / sqrt(D)`` as (B*h*w, h, w) maps, avg-pooled per level."""
    b, h, w, d = fmap1.shape
    corr = jnp.einsum("bijd,bkld->bijkl", fmap1, fmap2, precision=jax.lax.Precision.HIGHEST)
    corr = corr.reshape(b * h * w, h, w) / jnp.sqrt(jnp.float32(d))
    pyramid = [corr]
    for _ in range(levels - 1):
        pyramid.append(_avg_pool2(pyramid[-1]))
    return pyramid


def _bilinear_zero_pad(maps, x, y):
    """``grid_sample(align_corners=True, padding_mode='zeros')`` at pixel coords; maps (N, H, W),
    x, y (N, K) -> (N, K)."""
    n, hgt, wid = maps.shape
    flat = maps.reshape(n, hgt * wid)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    out = 0.0
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        wgt = (1.0 - jnp.abs(x - xi)) * (1.0 - jnp.abs(y - yi))
        valid = (xi >= 0) & (xi <= wid - 1) & (yi >= 0) & (yi <= hgt - 1)
        idx = (jnp.clip(yi, 0, hgt - 1) * wid + jnp.clip(xi, 0, wid - 1)).astype(jnp.int32)
        out = out + jnp.where(valid, jnp.take_along_axis(flat, idx, axis=1), 0.0) * wgt
    return out


def lookup_correlation(pyramid, coords, radius=CORR_RADIUS):
    """``CorrBlock.__call__``: (B, h, w, 2) coords (x, y) -> (B, h, w, levels * (2r+1)^2).

    As in RAFT the window's first index offsets x and its second y (``meshgrid(dy, dx)`` added to
    (x, y) coordinates), i.e. channel ``i * (2r+1) + j`` samples at ``(x + d_i, y + d_j)``.
    """
    b, h, w, _ = coords.shape
    d = jnp.linspace(-radius, radius, 2 * radius + 1)
    di, dj = jnp.meshgrid(d, d, indexing="ij")
    di, dj = di.reshape(-1), dj.reshape(-1)
    c = coords.reshape(b * h * w, 2)
    out = []
    for lvl, corr in enumerate(pyramid):
        cx, cy = c[:, :1] / 2**lvl, c[:, 1:] / 2**lvl
        out.append(_bilinear_zero_pad(corr, cx + di[None], cy + dj[None]))
    return jnp.concatenate(out, axis=-1).reshape(b, h, w, -1)


class SepConvGRU(nn.Module):
    hidden: int = HIDDEN_DIM

    @nn.compact
    def __call__(self, h, x):
        for suffix, kernel in (("1", (1, 5)), ("2", (5, 1))):
            hx = jnp.concatenate([h, x], axis=-1)
            z = nn.sigmoid(_conv(self.hidden, kernel, name=f"convz{suffix}")(hx))
            r = nn.sigmoid(_conv(self.hidden, kernel, name=f"convr{suffix}")(hx))
            q = jnp.tanh(_conv(self.hidden, kernel, name=f"convq{suffix}")(jnp.concatenate([r * h, x], axis=-1)))
            h = (1 - z) * h + z * q
        return h


class BasicUpdateBlock(nn.Module):
    @nn.compact
    def __call__(self, net, inp, corr, flow):
        cor = nn.relu(_conv(256, 1, name="convc1")(corr))
        cor = nn.relu(_conv(192, 3, name="convc2")(cor))
        flo = nn.relu(_conv(128, 7, name="convf1")(flow))
        flo = nn.relu(_conv(64, 3, name="convf2")(flo))
        out = nn.relu(_conv(128 - 2, 3, name="conv")(jnp.concatenate([cor, flo], axis=-1)))
        motion = jnp.concatenate([out, flow], axis=-1)
        net = SepConvGRU(name="gru")(net, jnp.concatenate([inp, motion], axis=-1))
        delta = _conv(2, 3, name="flow_head_conv2")(nn.relu(_conv(256, 3, name="flow_head_conv1")(net)))
        mask = 0.25 * _conv(64 * 9, 1, name="mask_2")(nn.relu(_conv(256, 3, name="mask_0")(net)))
        return net, mask, delta


def convex_upsample(flow, mask):
    """``RAFT.upsample_flow``: (B, h, w, 2), mask (B, h, w, 9*64) -> (B, 8h, 8w, 2)."""
    b, h, w, _ = flow.shape
    mask = jax.nn.softmax(mask.reshape(b, h, w, 9, 8, 8), axis=3)
    fp = jnp.pad(8.0 * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.stack([fp[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=3)
    up = jnp.einsum("bhwkxy,bhwkc->bhxwyc", mask, patches, precision=jax.lax.Precision.HIGHEST)
    return up.reshape(b, 8 * h, 8 * w, 2)


class RAFT(nn.Module):
    iters: int = 20

    def setup(self):
        self.fnet = BasicEncoder(256, "instance")
        self.cnet = BasicEncoder(HIDDEN_DIM + CONTEXT_DIM, "batch")
        self.update_block = BasicUpdateBlock()

    def __call__(self, image1, image2):
        """(B, H, W, 3) x2 in [0, 255] -> upsampled flow (B, H, W, 2) after ``iters`` updates."""
        image1 = 2 * (image1.astype(jnp.float32) / 255.0) - 1.0
        image2 = 2 * (image2.astype(jnp.float32) / 255.0) - 1.0
        b = image1.shape[0]
        fmaps = self.fnet(jnp.concatenate([image1, image2], axis=0))
        pyramid = correlation_pyramid(fmaps[:b], fmaps[b:])
        cnet = self.cnet(image1)
        net, inp = jnp.tanh(cnet[..., :HIDDEN_DIM]), nn.relu(cnet[..., HIDDEN_DIM:])
        _, h, w, _ = cnet.shape
        ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
        coords0 = jnp.broadcast_to(jnp.stack([xs, ys], axis=-1), (b, h, w, 2))

        def step(update, carry, _):
            net, coords1, _ = carry
            corr = lookup_correlation(pyramid, coords1)
            net, mask, delta = update(net, inp, corr, coords1 - coords0)
            return (net, coords1 + delta, mask), None

        scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, length=self.iters)
        mask0 = jnp.zeros((b, h, w, 64 * 9), jnp.float32)
        (net, coords1, mask), _ = scan(self.update_block, (net, coords0, mask0), None)
        return convex_upsample(coords1 - coords0, mask)
