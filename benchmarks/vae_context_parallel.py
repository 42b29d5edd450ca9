"""Benchmark: per-device temporary memory of the context-parallel VAE decode vs single-device ``whole``.

    python benchmarks/vae_context_parallel.py            # 8 simulated CPU devices, nothing executed

Compiles (never runs) a CogVideoX-structured VAE decode of a (1, 17, 16, 16, 16) latent -> 65 frames
at 128x128, once on one device (``frame_batching="whole"``) and with the latent frames split over
``sequence=2/4/8`` (``cogvideox_jax/models/vae/context_parallel.py``), and prints XLA's
``memory_analysis().temp_size_in_bytes`` of each per-device program.
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> int:
    import jax
    import numpy as np

    from configs.vae import VAEConfig
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
    from cogvideox_jax.models.vae.context_parallel import context_parallel_decode
    from cogvideox_jax.parallel.mesh import make_mesh

    cfg = VAEConfig(block_out_channels=(32, 64, 64, 64), layers_per_block=1, latent_channels=16, norm_num_groups=8)
    vae = AutoencoderKLCogVideoX(cfg)
    probe = np.zeros((1, 9, 16, 16, 3), np.float32)
    params = jax.eval_shape(lambda k: vae.init(k, probe, frame_batching="whole")["params"], jax.random.PRNGKey(0))
    z = jax.ShapeDtypeStruct((1, 17, 16, 16, 16), np.float32)
    whole = jax.jit(lambda p, v: vae.apply({"params": p}, v, frame_batching="whole", method="decode"))
    rows = [("whole", 1, whole.lower(params, z).compile().memory_analysis().temp_size_in_bytes)]
    for n in (2, 4, 8):
        mesh = make_mesh(f"sequence={n}", devices=jax.devices()[:n])
        fn = jax.jit(lambda p, v, m=mesh: context_parallel_decode(vae, p, v, m))
        rows.append(("context-parallel", n, fn.lower(params, z).compile().memory_analysis().temp_size_in_bytes))
    print("| decode | devices (sequence) | temp memory per device |\n|---|---|---|")
    for name, n, b in rows:
        print(f"| {name} | {n} | {b / 2**20:.1f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
