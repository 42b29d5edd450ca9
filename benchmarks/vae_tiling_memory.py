"""Benchmark: the VAE decode's memory with and without spatial tiling (``vae_tiling``), as the pipeline
and ``VAEDecoder`` decode (frame-batched as diffusers, memory-optimized XLA:CPU scheduler, each tile
shape compiled once and the tiles run one after the other: ``models/vae/tiling.py: tiled_decode``).

    python benchmarks/vae_tiling_memory.py                    # both parts below
    python benchmarks/vae_tiling_memory.py --part run --latent-frames 1 --height 480 --width 720
    python benchmarks/vae_tiling_memory.py --part compile     # full sizes, no weights, no run

``run``: the real 2b/5b VAE config with random weights (decoder only, as ``VAEDecoder`` loads it) decodes
at a reduced size on the CPU, tiled and untiled, each in its own subprocess: XLA's compiled memory
(temporaries, arguments, output) and the process's peak RSS while decoding (sampled every 2 ms), and
the decode time.

``compile``: the full sizes, 49x480x720 (2b / 5b: 13x60x90 latents) and 81x768x1360 (1.5: 21x96x170;
the 1.5 VAE has the 1.0 architecture, hence the same 240x360-px default tiles), compiled on the CPU from
abstract parameters (``jax.eval_shape``; no weights) and read from ``compiled.memory_analysis()``. With
``--tpu v5p:2x2x1`` (run by a ``.venv-tpu`` python holding libtpu; no TPU needed) the same programs are
compiled ahead of time for one chip of that TPU topology instead (per-chip HBM figures):

    .venv-tpu/bin/python benchmarks/vae_tiling_memory.py --part compile --tpu v5p:2x2x1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from rss_sampler import RssSampler, rss_mib


FULL_SIZES = {"2b/5b 49x480x720": ("cogvideox-5b", (1, 13, 60, 90, 16)),
              "1.5 81x768x1360": ("cogvideox1.5-5b", (1, 21, 96, 170, 16))}


def _decode_program(preset: str, tiled: bool, platform: str | None = None):
    """``(fn(params, z), abstract decoder params, vae)`` as ``VAEDecoder`` builds them."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from configs.vae import get_preset
    from cogvideox_jax.compiler_options import memory_optimized
    from cogvideox_jax.models.vae import AutoencoderKLCogVideoX
    from cogvideox_jax.models.vae.tiling import tiled_decode

    vae = AutoencoderKLCogVideoX(get_preset(preset))
    abstract = jax.eval_shape(lambda k: nn.unbox(vae.init(k, jnp.zeros((1, 1, 8, 8, 3)))["params"]),
                              jax.random.PRNGKey(0))
    abstract = {"decoder": abstract["decoder"]}

    def fn(p, z):
        decode = lambda t: vae.apply({"params": p}, t, method="decode")  # noqa: E731
        return tiled_decode(decode, z, tiled, vae.config)

    return jax.jit(fn, compiler_options=memory_optimized(platform)), abstract, vae


def _memory(compiled) -> dict:
    m = compiled.memory_analysis()
    return dict(temp_mib=m.temp_size_in_bytes / 2**20, args_mib=m.argument_size_in_bytes / 2**20,
                out_mib=m.output_size_in_bytes / 2**20)


def run_one(args) -> dict:
    """One decode (in this process): compile, random decoder weights on the host, decode, measure."""
    import jax
    import numpy as np

    from cogvideox_jax.convert.host_arrays import aligned_empty

    fn, abstract, vae = _decode_program(args.preset, args.tiled)
    zshape = (1, args.latent_frames, args.height // 8, args.width // 8, vae.config.latent_channels)
    z = jax.ShapeDtypeStruct(zshape, np.float32)
    t0 = time.perf_counter()
    compiled = fn.lower(abstract, z).compile()
    compile_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)

    def host_init(s):
        a = aligned_empty(s.shape, np.float32)
        rng.random(dtype=np.float32, out=a)
        a -= 0.5
        a /= np.float32(np.sqrt(max(1, np.prod(s.shape[:-1]))))
        return a

    params = jax.device_put(jax.tree.map(host_init, abstract))
    latents = jax.device_put(rng.standard_normal(zshape).astype(np.float32))
    jax.block_until_ready((params, latents))
    before = rss_mib()
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(params, latents))
        run_s = time.perf_counter() - t0
    return dict(tiled=args.tiled, latents=list(zshape), video=list(out.shape), compile_s=round(compile_s, 1),
                decode_s=round(run_s, 2), rss_before_mib=round(before), peak_rss_mib=round(sampler.peak),
                decode_rss_mib=round(sampler.peak - before), **{k: round(v) for k, v in _memory(compiled).items()})


def compile_full(tiled: bool, preset: str, zshape, tpu: str | None = None) -> dict:
    import jax
    import numpy as np

    fn, abstract, _ = _decode_program(preset, tiled, "tpu" if tpu else None)
    sharding = None
    if tpu:  # one chip of the topology, the program's arrays on it
        from jax.experimental import topologies
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devices = topologies.get_topology_desc(platform="tpu", topology_name=tpu).devices
        sharding = NamedSharding(Mesh(devices[:1], ("data",)), PartitionSpec())
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)
    t0 = time.perf_counter()
    compiled = fn.lower(abstract, jax.ShapeDtypeStruct(zshape, np.float32, sharding=sharding)).compile()
    return dict(tiled=tiled, compile_s=round(time.perf_counter() - t0, 1),
                **{k: round(v) for k, v in _memory(compiled).items()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("run", "compile", "both"), default="both")
    p.add_argument("--preset", default="cogvideox-5b")
    p.add_argument("--latent-frames", type=int, default=1)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=720)
    p.add_argument("--tiled", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)   # a subprocess of --part run
    p.add_argument("--sizes", nargs="+", choices=list(FULL_SIZES), default=list(FULL_SIZES))
    p.add_argument("--tpu", metavar="TOPOLOGY", help="--part compile: AOT-compile for one chip of this TPU "
                                                     "topology (e.g. v5p:2x2x1; needs libtpu)")
    args = p.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return 0
    if args.part in ("run", "both"):
        frames = (args.latent_frames - 1) * 4 + 1
        print(f"## decode on the CPU, {args.preset} VAE, {args.latent_frames} latent frames -> "
              f"{frames}x{args.height}x{args.width}, random decoder weights")
        print("| tiling | XLA temp MiB | args MiB | out MiB | decode RSS MiB | peak RSS MiB | decode s | compile s |")
        print("|---|---|---|---|---|---|---|---|")
        for tiled in (False, True):
            cmd = [sys.executable, os.path.abspath(__file__), "--one", "--preset", args.preset, "--latent-frames",
                   str(args.latent_frames), "--height", str(args.height), "--width", str(args.width)]
            out = subprocess.run(cmd + (["--tiled"] if tiled else []), capture_output=True, text=True)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"| {'on' if tiled else 'off'} | failed: {out.stderr[-400:]!r} |")
                continue
            r = json.loads(line[7:])
            print(f"| {'on' if tiled else 'off'} | {r['temp_mib']} | {r['args_mib']} | {r['out_mib']} | "
                  f"{r['decode_rss_mib']} | {r['peak_rss_mib']} | {r['decode_s']} | {r['compile_s']} |", flush=True)
    if args.part in ("compile", "both"):
        target = f"one chip of TPU {args.tpu} (AOT)" if args.tpu else "the CPU"
        print(f"\n## full sizes, compiled for {target} from abstract params (memory_analysis)")
        print("| size | tiling | XLA temp MiB | args MiB | out MiB | compile s |")
        print("|---|---|---|---|---|---|")
        for name in args.sizes:
            preset, zshape = FULL_SIZES[name]
            for tiled in (False, True):
                r = compile_full(tiled, preset, zshape, args.tpu)
                print(f"| {name} | {'on' if tiled else 'off'} | {r['temp_mib']} | {r['args_mib']} | {r['out_mib']} "
                      f"| {r['compile_s']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
