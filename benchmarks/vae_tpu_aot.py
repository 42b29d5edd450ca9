"""AOT-compile the CogVideoX-2b VAE decode for one TPU v5p chip (no TPU needed; needs libtpu, e.g. a
venv with ``jax[tpu]``) and print its per-chip HBM use, with the frame loop of the VAE's large-frame
convs on (the package default) or off.

    .venv-tpu/bin/python benchmarks/vae_tpu_aot.py --latents 3x60x90            # 9 x 480 x 720 frames
    .venv-tpu/bin/python benchmarks/vae_tpu_aot.py --latents 3x60x90 --no-frame-loop
"""
from __future__ import annotations

import argparse
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", default="3x60x90", help="latent frames x height x width")
    ap.add_argument("--frame-batching", default="diffusers", choices=["diffusers", "whole"])
    ap.add_argument("--no-frame-loop", action="store_true", help="batched convs on every frame size")
    ap.add_argument("--topology", default="v5p:2x2x1", help="a slice name; the program runs on its first chip")
    args = ap.parse_args()

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from jax.experimental import topologies
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from configs.vae import COGVIDEOX_2B
    from cogvideox_jax.models.vae import AutoencoderKLCogVideoX, conv_weights

    if args.no_frame_loop:
        conv_weights.FRAME_LOOP_MIN_ELEMENTS = 1 << 62
    devices = topologies.get_topology_desc(platform="tpu", topology_name=args.topology).devices
    replicated = NamedSharding(Mesh(devices[:1], ("data",)), PartitionSpec())
    vae = AutoencoderKLCogVideoX(COGVIDEOX_2B)
    shapes = jax.eval_shape(lambda k: nn.unbox(vae.init(k, jnp.zeros((1, 1, 8, 8, 3)))["params"]), jax.random.PRNGKey(0))
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes)
    t, h, w = (int(v) for v in args.latents.split("x"))
    z = jax.ShapeDtypeStruct((1, t, h, w, COGVIDEOX_2B.latent_channels), jnp.float32, sharding=replicated)
    decode = jax.jit(lambda p, v: vae.apply({"params": p}, v, method="decode", frame_batching=args.frame_batching))
    mem = decode.lower(params, z).compile().memory_analysis()
    print(json.dumps(dict(latents=args.latents, frame_loop=not args.no_frame_loop, topology=args.topology,
                          temp_gib=round(mem.temp_size_in_bytes / 2**30, 3),
                          arguments_gib=round(mem.argument_size_in_bytes / 2**30, 3))))


if __name__ == "__main__":
    main()
