"""Benchmark: JAX vs diffusers VAE encode/decode on CPU at the real CogVideoX VAE config (random init).

    python benchmarks/vae.py                       # both sides, both ops, table
    python benchmarks/vae.py --latent-frames 3 --latent-size 16 --repeats 3
    python benchmarks/vae.py --sides jax --scheduler default  # JAX with XLA:CPU's default scheduler
    python benchmarks/vae.py --weights /tmp/vae2b  # both sides load one checkpoint folder (written if absent)
    python benchmarks/vae.py --weights /tmp/vae2b --ops load  # the loaders alone

Decodes (1, 3, 16, 16, 16) latents -> (1, 9, 128, 128, 3) and encodes the inverse. Each (side, op)
runs in its own subprocess so that peak memory is that side's alone: ``peak_rss`` is the
process's ru_maxrss (includes imports, random init and, for JAX, XLA compilation);
``run_rss`` is the peak RSS sampled (every 2 ms) during the steady-state calls only. By default
each side random-inits (torch: the module's own init; JAX: host buffers filled leaf by leaf, the
buffers ``load_diffusers`` builds); with ``--weights DIR`` both load the same diffusers folder
(``from_pretrained`` / ``load_diffusers``; a random-init 2b VAE is saved there first if DIR has none)
and the load counts in the peak. diffusers memory-maps the weights file, so only the weights an op
touches (the decoder's for decode) ever become resident; the JAX side then loads only that half
(``load_diffusers(..., parts=("decoder",))``). Timings are noisy on a shared machine.
The JAX side compiles with the project's memory-optimized XLA:CPU options (``--scheduler memory``,
``cogvideox_jax/compiler_options.py``) unless ``--scheduler default``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from rss_sampler import RssSampler


def _shapes(args):
    t = args.latent_frames
    s = args.latent_size
    frames = (t - 1) * 4 + 1
    return (1, t, s, s, 16), (1, frames, s * 8, s * 8, 3)


def run_jax(args):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from configs.vae import COGVIDEOX_2B
    from cogvideox_jax.models.vae import AutoencoderKLCogVideoX

    vae = AutoencoderKLCogVideoX(COGVIDEOX_2B)
    import flax.linen as nn

    zshape, xshape = _shapes(args)
    rng = np.random.default_rng(0)
    from cogvideox_jax.compiler_options import memory_optimized

    opts = memory_optimized() if args.scheduler == "memory" else {}
    if args.op == "decode":
        inp = jnp.asarray(rng.standard_normal(zshape).astype(np.float32))
        fn = jax.jit(lambda p, v: vae.apply({"params": p}, v, method="decode", frame_batching=args.frame_batching),
                     compiler_options=opts)
    else:
        inp = jnp.asarray(rng.uniform(-1, 1, xshape).astype(np.float32))
        fn = jax.jit(
            lambda p, v: vae.apply({"params": p}, v, method="encode", frame_batching=args.frame_batching).mean,
            compiler_options=opts,
        )
    # Compiled ahead of time from the shapes (one compile, for the calls and the memory analysis),
    # then the parameters are built on the host leaf by leaf, as load_diffusers builds them from a
    # checkpoint (the torch side's eager random init is the same kind of work; a jitted ``vae.init``
    # would add its program's temporaries, ~1.4 GiB here, to the peak).
    shapes = jax.eval_shape(lambda k: nn.unbox(vae.init(k, jnp.zeros((1, 1, 8, 8, 3)))["params"]), jax.random.PRNGKey(0))
    if args.weights:  # only the half the op uses, as torch's memory-mapped from_pretrained only pages that in
        from cogvideox_jax.convert.vae import VAE_PARTS

        part = "decoder" if args.op == "decode" else "encoder"
        shapes = {k: v for k, v in shapes.items() if k in VAE_PARTS[part]}
    t0 = time.perf_counter()
    fn = fn.lower(shapes, inp).compile()
    compile_s = time.perf_counter() - t0
    if args.weights:
        from cogvideox_jax.convert import load_diffusers

        params = load_diffusers(args.weights, parts=(part,))[1]
    else:
        from cogvideox_jax.convert.host_arrays import aligned_empty

        host_rng = np.random.default_rng(0)

        def host_init(s):  # uniform(-1, 1) / sqrt(fan_in) into the aligned host buffer XLA adopts
            a = aligned_empty(s.shape, np.float32)
            host_rng.random(dtype=np.float32, out=a)
            a *= 2
            a -= 1
            a /= np.float32(np.sqrt(max(1, np.prod(s.shape[:-1]))))
            return a

        params = jax.tree.map(host_init, shapes)
    params = jax.device_put(params)
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(params, inp))
    first = time.perf_counter() - t0
    mem = fn.memory_analysis()
    xla_mb = dict(
        xla_temp_mb=mem.temp_size_in_bytes / 2**20,
        xla_args_mb=mem.argument_size_in_bytes / 2**20,
        xla_out_mb=mem.output_size_in_bytes / 2**20,
    )
    times = []
    with RssSampler() as sampler:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(params, inp))
            times.append(time.perf_counter() - t0)
    best = min(times)
    return dict(time_s=best, times=times, compile_s=compile_s, first_s=first, run_rss_mb=sampler.peak, **xla_mb)


def run_torch(args):
    import numpy as np
    import torch
    from diffusers import AutoencoderKLCogVideoX

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = (AutoencoderKLCogVideoX.from_pretrained(args.weights) if args.weights else AutoencoderKLCogVideoX()).eval()
    zshape, xshape = _shapes(args)
    rng = np.random.default_rng(0)
    if args.op == "decode":
        inp = torch.from_numpy(np.moveaxis(rng.standard_normal(zshape).astype(np.float32), -1, 1).copy())
        fn = lambda: model.decode(inp).sample  # noqa: E731
    else:
        inp = torch.from_numpy(np.moveaxis(rng.uniform(-1, 1, xshape).astype(np.float32), -1, 1).copy())
        fn = lambda: model.encode(inp).latent_dist.mean  # noqa: E731
    with torch.inference_mode():
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        times = []
        with RssSampler() as sampler:
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
    return dict(time_s=min(times), times=times, compile_s=0.0, first_s=first, run_rss_mb=sampler.peak)


def run_load(args):
    """Only load the ``--weights`` folder (all of it): the loader's own time and peak memory."""
    if args.side == "jax":
        import jax

        from cogvideox_jax.convert import load_diffusers

        t0 = time.perf_counter()
        params = jax.device_put(load_diffusers(args.weights)[1])
        jax.block_until_ready(params)
    else:
        from diffusers import AutoencoderKLCogVideoX

        t0 = time.perf_counter()
        AutoencoderKLCogVideoX.from_pretrained(args.weights)
    t = time.perf_counter() - t0
    return dict(time_s=t, times=[t], compile_s=0.0, first_s=t, run_rss_mb=float("nan"))


def worker(args):
    if args.op == "load":
        res = run_load(args)
    else:
        res = run_jax(args) if args.side == "jax" else run_torch(args)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", choices=["jax", "torch"])
    ap.add_argument("--op", choices=["encode", "decode", "load"])
    ap.add_argument("--ops", default="decode,encode")
    ap.add_argument("--latent-frames", type=int, default=3)
    ap.add_argument("--latent-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--frame-batching", default="diffusers", choices=["diffusers", "whole"])
    ap.add_argument("--scheduler", default="memory", choices=["memory", "default"],
                    help="JAX side: XLA:CPU's memory-optimized instruction scheduler (what the project's VAE jits"
                         " use, cogvideox_jax/compiler_options.py) or XLA's default (concurrency-optimized)")
    ap.add_argument("--sides", default="jax,torch")
    ap.add_argument("--weights", default="", help="a diffusers vae/ folder both sides load (random-init 2b VAE"
                                                   " written there first if it has no config.json)")
    args = ap.parse_args()
    if args.side:
        return worker(args)
    if "load" in args.ops.split(",") and not args.weights:
        raise SystemExit("--ops load needs --weights DIR")
    if args.weights and not os.path.exists(os.path.join(args.weights, "config.json")):
        subprocess.run([sys.executable, "-c", "import sys, torch, diffusers; torch.manual_seed(0); "
                        "diffusers.AutoencoderKLCogVideoX().save_pretrained(sys.argv[1])", args.weights], check=True)
    results = {}
    for op in args.ops.split(","):
        for side in args.sides.split(","):
            cmd = [sys.executable, __file__, "--side", side, "--op", op] + [
                f"--latent-frames={args.latent_frames}", f"--latent-size={args.latent_size}",
                f"--repeats={args.repeats}", f"--threads={args.threads}", f"--frame-batching={args.frame_batching}",
                f"--scheduler={args.scheduler}", f"--weights={args.weights}",
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if out.returncode or not line:
                print(out.stdout[-3000:], out.stderr[-3000:])
                raise SystemExit(f"{side} {op} failed")
            results[(side, op)] = json.loads(line[0][7:])
            r = results[(side, op)]
            print(f"{op:6s} {side:5s} time {r['time_s']:.2f}s (runs {', '.join(f'{t:.2f}' for t in r['times'])})"
                  f"  compile {r['compile_s']:.1f}s  peak_rss {r['peak_rss_mb']:.0f} MiB  run_rss {r['run_rss_mb']:.0f} MiB",
                  flush=True)
            if "xla_temp_mb" in r:
                print(f"             XLA buffers: temp {r['xla_temp_mb']:.0f} MiB, arguments {r['xla_args_mb']:.0f} MiB", flush=True)
    zshape, xshape = _shapes(args)
    print(f"\nlatents {zshape} <-> video {xshape}, frame_batching={args.frame_batching}, threads={args.threads},"
          f" JAX scheduler={args.scheduler}, weights={args.weights or 'random init'}")
    for op in args.ops.split(","):
        if ("jax", op) not in results or ("torch", op) not in results:
            continue
        j, t = results[("jax", op)], results[("torch", op)]
        print(f"{op}: JAX/diffusers time {j['time_s'] / t['time_s']:.2f}x, peak RSS {j['peak_rss_mb'] / t['peak_rss_mb']:.2f}x,"
              f" steady-state RSS {j['run_rss_mb'] / t['run_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
