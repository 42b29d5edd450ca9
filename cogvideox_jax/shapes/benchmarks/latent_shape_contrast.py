"""How far apart two shapes are in the shapes VAE's latent space, against how far apart they are in pixels.

    python cogvideox_jax/shapes/benchmarks/latent_shape_contrast.py                     # the package's default model
    python cogvideox_jax/shapes/benchmarks/latent_shape_contrast.py --checkpoint DIR    # a train-shapes checkpoint/ folder
    python cogvideox_jax/shapes/benchmarks/latent_shape_contrast.py --vae DIR           # a train-shapes vae/ or vae_decoder/ folder

Renders one frame of each shape with the same color, center and radius (``--placements`` random
centers, radii 8.5 and 14.5 px at 64x64), encodes it (posterior mean, times the checkpoint's scaling
factor: the transformer's units) and prints, per radius, the squared distance between two shapes
divided by the first shape's own squared distance from the empty background — in the latent and in
pixels. A small latent ratio next to a large pixel ratio means the VAE stores that outline as a small
perturbation of the object's latent, which the transformer's v-loss rewards little (BENCHMARKS.md,
"Latent shape contrast").
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np


def ratio_table(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (S + 1, N): S shapes then the empty frame -> (S, S) ``|a_i − a_j|² / |a_i − empty|²``."""
    shapes, empty = vectors[:-1], vectors[-1]
    dist = np.sum(np.square(shapes[:, None] - shapes[None]), axis=-1)
    return dist / np.sum(np.square(shapes - empty), axis=-1)[:, None]


def main(argv=None) -> None:
    import jax
    import jax.numpy as jnp

    from cogvideox_jax.shapes.dataset.render import ClipSpec, render_clip
    from cogvideox_jax.shapes.dataset.vocabulary import BACKGROUNDS, SHAPES
    from cogvideox_jax.pipeline.components import load_components
    from cogvideox_jax.shapes.default_model import default_checkpoint

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="cogvideox-jax checkpoint (default: the package's model)")
    p.add_argument("--vae", default=None, help="a train-shapes vae/ folder (config.json + params) instead; "
                   "the ratios do not depend on the scaling factor")
    p.add_argument("--placements", type=int, default=12, help="random centers per radius")
    p.add_argument("--color", default="red")
    p.add_argument("--background", default="gray")
    p.add_argument("--out", default=None, help="also write the tables as JSON here")
    args = p.parse_args(argv)

    if args.vae:
        from cogvideox_jax.convert.params_checkpoint import restore_params
        from cogvideox_jax.convert.vae import vae_config_from_folder
        from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX

        vae = AutoencoderKLCogVideoX(vae_config_from_folder(args.vae))
        params = restore_params(os.path.join(args.vae, "params"))
    else:
        comp = load_components(args.checkpoint or default_checkpoint())
        vae, params = comp.vae, comp.vae_params
    scale = float(vae.config.scaling_factor)
    encode = jax.jit(lambda v: vae.apply({"params": params}, v, frame_batching="whole", method="encode").mean)
    rng = np.random.default_rng(0)
    names = list(SHAPES)
    result = {"shapes": names, "scaling_factor": scale}
    for radius in (8.5, 14.5):
        lat, pix = [], []
        for _ in range(args.placements):   # the shapes, then the empty background
            cx, cy = (float(c) for c in rng.uniform(20, 44, 2))
            frames = [render_clip(ClipSpec(args.color, s, "still", "small", args.background, radius, (cx, cy),
                                           (cx, cy), 1)) for s in names]
            frames.append(np.broadcast_to(np.asarray(BACKGROUNDS[args.background], np.uint8), frames[0].shape))
            x = np.stack(frames).astype(np.float32) / 127.5 - 1.0
            z = np.asarray(encode(jnp.asarray(x)), np.float64) * scale
            lat.append(ratio_table(z.reshape(len(x), -1)))
            pix.append(ratio_table(x.reshape(len(x), -1).astype(np.float64)))
        lat, pix = np.mean(lat, 0), np.mean(pix, 0)
        result[f"radius_{radius}"] = {"latent": lat.round(4).tolist(), "pixels": pix.round(4).tolist()}
        print(f"radius {radius} px: |shape_i - shape_j|^2 / |shape_i - empty|^2, latent (pixels)")
        print("          " + "".join(f"{n:>15}" for n in names))
        for i, n in enumerate(names):
            print(f"{n:>10}" + "".join(f"{lat[i, j]:8.3f} ({pix[i, j]:4.2f})" for j in range(len(names))))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
