"""Full-size sampling and VAE decode, JAX vs diffusers on the same accelerator.

For a lent GPU (or TPU for the JAX side): the CogVideoX-2b / 5b transformers at their real width and
depth (random init, bf16), the whole 50-step CFG denoising loop at 49x480x720 (latents 13x60x90,
17,550 video + 226 text tokens), JAX (one compiled scan, cuDNN attention) vs diffusers
(``CogVideoXTransformer3DModel`` + its scheduler, PyTorch SDPA); and the real VAE decoding 13 latents
at 60x90. T5 is not timed (random text embeddings stand in; it runs once per prompt).

    python benchmarks/gpu_full_size.py --variant 5b                 # on a GPU
    python benchmarks/gpu_full_size.py --reduced                    # CPU smoke run at a reduced size
"""
from __future__ import annotations

import argparse
import time


def _sync_time(fn, sync):
    t0 = time.perf_counter()
    out = fn()
    sync(out)
    return time.perf_counter() - t0


def jax_side(args, tcfg, vcfg, lat_shape):
    import jax
    import jax.numpy as jnp
    import functools

    from configs.scheduler import COGVIDEOX_2B, COGVIDEOX_5B
    from cogvideox_jax.diffusion.sampler import init_state, scheduler_step
    from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
    from cogvideox_jax.pipeline.denoise_loop import denoise

    dtype = jnp.bfloat16 if args.dtype == "bf16" else jnp.float32
    model = CogVideoXTransformer3D(tcfg, dtype=dtype, param_dtype=dtype)
    params = jax.jit(lambda k: model.init(k, *dummy_inputs(tcfg))["params"])(jax.random.PRNGKey(0))
    sched = make_sampling_schedule(COGVIDEOX_2B if args.variant == "2b" else COGVIDEOX_5B, args.steps)
    b, t, h, w, c = lat_shape
    latents = jax.random.normal(jax.random.PRNGKey(1), lat_shape, jnp.float32)
    text = jax.random.normal(jax.random.PRNGKey(2), (2 * b, tcfg.max_text_seq_length, tcfg.text_embed_dim), dtype)
    guidance = jnp.full((args.steps,), 6.0, jnp.float32)

    @jax.jit
    def run(params, latents, text):
        fn = lambda x, txt, ts: model.apply({"params": params}, x.astype(dtype), txt, ts)  # noqa: E731
        return denoise(fn, functools.partial(scheduler_step, sched), init_state(latents), latents, text,
                       sched.timesteps, guidance, do_cfg=True, progress=False)

    sync = lambda x: jax.block_until_ready(x)  # noqa: E731
    first = _sync_time(lambda: run(params, latents, text), sync)
    steady = _sync_time(lambda: run(params, latents, text), sync)
    vae = AutoencoderKLCogVideoX(vcfg, dtype=dtype, param_dtype=dtype)
    s = vcfg.spatial_compression
    vparams = jax.jit(lambda k: vae.init(k, jnp.zeros((1, 1, s, s, 3)))["params"])(jax.random.PRNGKey(3))
    z = jax.random.normal(jax.random.PRNGKey(4), (1, t, h, w, vcfg.latent_channels), dtype)
    dec = jax.jit(lambda p, z: vae.apply({"params": p}, z, method="decode"))
    vae_first = _sync_time(lambda: dec(vparams, z), sync)
    vae_steady = _sync_time(lambda: dec(vparams, z), sync)
    return dict(first=first, steady=steady, vae_first=vae_first, vae_steady=vae_steady,
                device=str(jax.devices()[0].device_kind))


def torch_side(args, tcfg, vcfg, lat_shape):
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXTransformer3DModel

    from configs.scheduler import COGVIDEOX_2B, COGVIDEOX_5B
    from cogvideox_jax_oracles.transformer_oracle import reference_rope

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = CogVideoXTransformer3DModel(**{k: v for k, v in tcfg.to_diffusers_config().items()
                                           if not k.startswith("_")}).to(dev, dt).eval()
    cfg = COGVIDEOX_2B if args.variant == "2b" else COGVIDEOX_5B
    sched = (CogVideoXDDIMScheduler if cfg.kind == "ddim" else CogVideoXDPMScheduler).from_config(cfg.to_diffusers_config())
    b, t, h, w, c = lat_shape
    rope = reference_rope(model, t, h, w)
    rope = None if rope is None else tuple(r.to(dev) for r in rope)
    text = torch.randn(2 * b, tcfg.max_text_seq_length, tcfg.text_embed_dim, device=dev, dtype=dt)
    sync = lambda _: torch.cuda.synchronize() if dev == "cuda" else None  # noqa: E731

    @torch.no_grad()
    def run():
        sched.set_timesteps(args.steps)
        x = torch.randn(b, t, c, h, w, device=dev, dtype=dt)
        old = None
        for i, ts in enumerate(sched.timesteps):
            v = model(hidden_states=torch.cat([x, x]), encoder_hidden_states=text, timestep=ts.expand(2 * b).to(dev),
                      image_rotary_emb=rope, return_dict=False)[0].float()
            vu, vc = v.chunk(2)
            v = vu + 6.0 * (vc - vu)
            if cfg.kind == "ddim":
                x = sched.step(v, ts, x, return_dict=False)[0].to(dt)
            else:
                x, old = sched.step(v, old, ts, sched.timesteps[i - 1] if i else None, x, return_dict=False)
                x = x.to(dt)
        return x

    steady = _sync_time(run, sync)
    vae = AutoencoderKLCogVideoX(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in
                                    vcfg.__dict__.items() if k in AutoencoderKLCogVideoX.__init__.__code__.co_varnames}
                                 ).to(dev, dt).eval()
    z = torch.randn(1, vcfg.latent_channels, t, h, w, device=dev, dtype=dt)
    with torch.no_grad():
        vae_steady = _sync_time(lambda: vae.decode(z).sample, sync)
    return dict(steady=steady, vae_steady=vae_steady, device=torch.cuda.get_device_name() if dev == "cuda" else "cpu")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=("2b", "5b"), default="5b")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--reduced", action="store_true", help="CPU smoke size: 2 layers, 9x64x96, 2 steps")
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args()

    from configs.transformer import get_preset
    from configs.vae import get_preset as vae_preset

    tcfg = get_preset("cogvideox-2b" if args.variant == "2b" else "cogvideox-5b").replace(attention_backend="auto")
    vcfg = vae_preset("cogvideox-2b" if args.variant == "2b" else "cogvideox-5b")
    lat_shape = (1, 13, 60, 90, 16)
    if args.reduced:
        tcfg = tcfg.replace(num_layers=2)
        lat_shape = (1, 3, 8, 12, 16)
        args.steps = min(args.steps, 2)
    ours = jax_side(args, tcfg, vcfg, lat_shape)
    ref = None if args.skip_torch else torch_side(args, tcfg, vcfg, lat_shape)
    print(f"| {args.variant}, latents {lat_shape[1:4]}, {args.steps} steps, {args.dtype} | JAX ({ours['device']}) | "
          f"diffusers ({ref['device'] if ref else '-'}) |")
    print("|---|---|---|")
    print(f"| denoising loop, first call | {ours['first']:.2f} s | |")
    print(f"| denoising loop, steady | {ours['steady']:.2f} s | {ref['steady'] if ref else float('nan'):.2f} s |")
    print(f"| VAE decode, first call | {ours['vae_first']:.2f} s | |")
    print(f"| VAE decode, steady | {ours['vae_steady']:.2f} s | {ref['vae_steady'] if ref else float('nan'):.2f} s |")


if __name__ == "__main__":
    main()
