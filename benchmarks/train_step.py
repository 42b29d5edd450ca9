"""Benchmark: one training step (v-loss, backward, global-norm clip 1.0, AdamW) — JAX vs PyTorch,
same model config and weights, same run, on this CPU.

    python benchmarks/train_step.py                         # default small config
    python benchmarks/train_step.py --layers 2 --heads 4 --head-dim 32 --latent-size 16 --steps 10
    python benchmarks/train_step.py --scan-layers 0           # JAX blocks unrolled instead of nn.scan
    python benchmarks/train_step.py --matmul-dtype bfloat16   # mixed precision on both sides (below)

PyTorch: diffusers ``CogVideoXTransformer3DModel`` (random init) + ``torch.optim.AdamW``; the same
weights are saved with ``save_pretrained`` and loaded into JAX through ``load_diffusers`` (the real
JAX transformer). JAX runs ``train_step.make_train_step`` on a 1-device mesh. Reported: median step
time over ``--steps`` steps after warm-up, tokens/s (text + video tokens × batch / step time), and
the ratio JAX/PyTorch (target ≤ 0.8). ``--jax-standin`` benchmarks the JAX stand-in model instead
(NOT like-for-like; only for when the transformer is unavailable). ``--matmul-dtype bfloat16``: the
JAX blocks' matmuls take bf16 operands with fp32 accumulation (``TransformerConfig.matmul_dtype``),
and PyTorch's forward runs under CPU autocast to bf16 (its mixed-precision counterpart: matmuls in
bf16, reductions and the optimizer in fp32). Timings are noisy on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def diffusers_config(a) -> dict:
    return dict(num_attention_heads=a.heads, attention_head_dim=a.head_dim, in_channels=a.channels,
                out_channels=a.channels, time_embed_dim=a.time_dim, text_embed_dim=a.text_dim, num_layers=a.layers,
                sample_width=a.latent_size, sample_height=a.latent_size, sample_frames=(a.latent_frames - 1) * 4 + 1,
                patch_size=2, max_text_seq_length=a.text_len, use_rotary_positional_embeddings=a.rope,
                temporal_compression_ratio=4)


def make_batch(a, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((a.batch, a.latent_frames, a.latent_size, a.latent_size, a.channels)).astype(np.float32)
    txt = rng.standard_normal((a.batch, a.text_len, a.text_dim)).astype(np.float32)
    return lat, txt


def tokens_per_step(a) -> int:
    return a.batch * (a.text_len + a.latent_frames * (a.latent_size // 2) ** 2)


def run_torch(a, model, folder):
    import torch
    from diffusers import CogVideoXDDIMScheduler

    torch.set_num_threads(a.threads)
    ac = CogVideoXDDIMScheduler(rescale_betas_zero_snr=True, snr_shift_scale=1.0).alphas_cumprod.float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=1e-4)
    lat, txt = make_batch(a)
    x0 = torch.from_numpy(lat).permute(0, 1, 4, 2, 3).contiguous()  # (B, F, C, H, W)
    text = torch.from_numpy(txt)
    gen = torch.Generator().manual_seed(0)
    rope = None
    if a.rope:
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        grid = a.latent_size // 2
        rope = get_3d_rotary_pos_embed(a.head_dim, ((0, 0), (grid, grid)), grid_size=(grid, grid),
                                       temporal_size=a.latent_frames)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        t = torch.randint(0, 1000, (a.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        al = ac[t].view(-1, 1, 1, 1, 1)
        xt = al.sqrt() * x0 + (1 - al).sqrt() * eps
        v = al.sqrt() * eps - (1 - al).sqrt() * x0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.matmul_dtype == "bfloat16"):
            out = model(hidden_states=xt, encoder_hidden_states=text, timestep=t, image_rotary_emb=rope,
                        return_dict=False)[0]
        loss = torch.mean((out.float() - v) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = loss.detach()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), float(loss)


def run_jax(a, folder):
    import jax

    from configs.train_config import OptimizerConfig, StageConfig, TrainConfig
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.train.diffusion_loss import training_alphas_cumprod
    from cogvideox_jax.train.model_factory import StandInVideoModel
    from cogvideox_jax.train.optimizer import make_optimizer
    from cogvideox_jax.train.train_state import create_train_state, replicated
    from cogvideox_jax.train.train_step import StepOptions, make_train_step

    if a.jax_standin:
        from cogvideox_jax.train.model_factory import init_params
        module = StandInVideoModel(channels=a.channels, text_dim=a.text_dim, dim=a.heads * a.head_dim,
                                   heads=a.heads, layers=a.layers)
        from cogvideox_jax.train.model_factory import ModelSpec
        params = init_params(ModelSpec(module, a.channels, a.text_dim), jax.random.PRNGKey(0),
                             (1, a.latent_frames, a.latent_size, a.latent_size, a.channels), (1, a.text_len, a.text_dim))
    else:
        from cogvideox_jax.convert import load_diffusers
        module, params = load_diffusers(folder, scan_layers=a.scan_layers, matmul_dtype=a.matmul_dtype)
    mesh = make_mesh("fsdp=1", devices=jax.devices()[:1])
    opt, sched = make_optimizer(OptimizerConfig(lr=1e-4, warmup_steps=0, grad_clip=1.0), [StageConfig(steps=10**6)])
    state = create_train_state(params, opt, jax.random.key_data(jax.random.PRNGKey(0)))
    sh = replicated(mesh, state)
    state = jax.device_put(state, sh)
    lat, txt = make_batch(a)
    opts = StepOptions(TrainConfig(explicit_uniform_sampling=False, text_dropout=0.0), training_alphas_cumprod())
    step = make_train_step(module, opt, sched, opts, mesh, sh, {"latents": lat.shape, "text_emb": txt.shape})
    batch = {"latents": jax.device_put(lat), "text_emb": jax.device_put(txt)}
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        state, m = step(state, batch)
        loss = float(m["loss"])
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), loss, compile_s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--text-dim", type=int, default=64)
    p.add_argument("--time-dim", type=int, default=64)
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--latent-frames", type=int, default=3)
    p.add_argument("--latent-size", type=int, default=16)
    p.add_argument("--rope", action="store_true", help="5b-style RoPE instead of sin-cos PE")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--side", choices=["both", "jax", "torch"], default="both")
    p.add_argument("--jax-standin", action="store_true")
    p.add_argument("--scan-layers", type=int, choices=(0, 1), default=None,
                   help="JAX: nn.scan over the blocks (1) or unrolled (0); default: the config's")
    p.add_argument("--matmul-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: JAX matmul_dtype=bfloat16 and PyTorch CPU autocast to bf16")
    a = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import torch
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(**diffusers_config(a))
    res = {"config": vars(a), "tokens_per_step": tokens_per_step(a)}
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        if a.side in ("both", "torch"):
            t, loss = run_torch(a, model, folder)
            res["torch"] = {"step_s": t, "tokens_per_s": tokens_per_step(a) / t, "loss": loss}
        if a.side in ("both", "jax"):
            t, loss, c = run_jax(a, folder)
            res["jax"] = {"step_s": t, "tokens_per_s": tokens_per_step(a) / t, "loss": loss, "compile_s": c,
                          "model": "standin" if a.jax_standin else "CogVideoXTransformer3D"}
    if "jax" in res and "torch" in res:
        res["jax_over_torch_step_time"] = res["jax"]["step_s"] / res["torch"]["step_s"]
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
