"""``cogvideox-jax precompute``: encode a video folder once with the frozen VAE and T5 into a latent
cache (ArrayRecord shards of posterior mean/logvar + T5 embeddings, ``data/latent_cache.py``), which
training then reads with ``--set data.kind=latent_cache --set data.path=CACHE`` instead of decoding
and encoding videos every step (what the reference fine-tuning does for speed).

    cogvideox-jax precompute --data-root /data/clips --pretrained /path/to/CogVideoX-5b \\
        --buckets 49x480x720 --out /data/clips-latents --num-shards 8
"""
from __future__ import annotations

import argparse
import os


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("precompute", help="encode a video folder into a latent cache (VAE + T5)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder with prompts.txt + videos.txt (or metadata.jsonl)")
    p.add_argument("--pretrained", required=True, help="diffusers CogVideoX folder (vae/, text_encoder/, tokenizer/) "
                                                       "or `convert` checkpoint; local or gs://")
    p.add_argument("--out", required=True, help="new latent cache folder (local or gs://)")
    p.add_argument("--buckets", default="49x480x720",
                   help="comma-separated FRAMESxHEIGHTxWIDTH buckets each clip is cropped/resized to (the frame pack)")
    p.add_argument("--fps", type=float, default=8.0, help="frames are sampled at this rate (0: every frame)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--text-len", type=int, default=226, help="T5 sequence length (the model's max_text_seq_length)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from tqdm.auto import tqdm

    from cogvideox_jax.data.latent_cache import iterate_folder_once, precompute_records
    from cogvideox_jax.models.vae.latent_scaling import has_offsets
    from cogvideox_jax.train.video_latents import frozen_posterior_encoders

    from cogvideox_jax import paths
    from cogvideox_jax.pipeline.components import local_pipeline

    if paths.exists(args.out) and any(paths.as_path(args.out).iterdir()):
        raise SystemExit(f"cogvideox-jax precompute: error: --out {args.out} exists and is not empty")
    pretrained = local_pipeline(args.pretrained, ("vae", "text_encoder"))   # gs:// sources: a local copy
    enc_post, enc_text, vae_config = frozen_posterior_encoders(pretrained, text_len=args.text_len)
    if has_offsets(vae_config):
        raise ValueError(f"{args.pretrained}/vae's config scales latents per channel (latents_mean / latents_std) "
                         "or shifts them; latent caches store one scaling_factor. Train from the videos "
                         "instead (data.kind=videos), which applies the VAE config's scaling as it is.")
    scaling = vae_config.scaling_factor
    batches = iterate_folder_once(paths.localize(args.data_root), args.buckets, args.fps or None, args.batch_size)
    metadata = {"scaling_factor": scaling, "pretrained": paths.absolute(args.pretrained), "buckets": args.buckets,
                "fps": args.fps}

    def write(out):
        return precompute_records(enc_post, enc_text, tqdm(batches, desc="precompute", unit="batch"), out,
                                  num_shards=args.num_shards, metadata=metadata)

    if paths.is_url(args.out):  # ArrayRecord shards are written locally, then uploaded
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            index = write(os.path.join(tmp, "cache"))
            paths.upload_tree(os.path.join(tmp, "cache"), args.out)
    else:
        index = write(args.out)
    print(f"wrote {index['num_records']} records to {args.out}")
    return 0


def latent_cache_data(cfg, stage_index: int, batch_size: int):
    """``Trainer`` data source for ``data.kind="latent_cache"``: per-process batches (posterior samples ×
    the scaling factor stored in the cache) from the comma-separated cache folders in ``data.path``."""
    import jax

    from cogvideox_jax.data.latent_cache import make_latent_iterator, read_index

    dirs = [d for d in cfg.data.path.split(",") if d]
    if not dirs:
        raise ValueError("data.kind=latent_cache needs data.path (a `cogvideox-jax precompute` folder)")
    scaling = {float(read_index(d).get("scaling_factor", 1.0)) for d in dirs}
    if len(scaling) != 1:
        raise ValueError(f"latent caches {dirs} were written with different VAE scaling factors {sorted(scaling)}")
    it = make_latent_iterator(dirs, batch_size // jax.process_count(), scaling_factor=scaling.pop(),
                              seed=cfg.data.shuffle_seed + stage_index)
    it.process_local = True
    return it
