"""``cogvideox-jax precompute``: encode a video folder once with the frozen VAE and T5 into a latent
cache (ArrayRecord shards of posterior mean/logvar + T5 embeddings, ``data/latent_cache.py``), which
training then reads with ``--set data.kind=latent_cache --set data.path=CACHE`` instead of decoding
and encoding videos every step (what the reference fine-tuning does for speed).

    cogvideox-jax precompute --data-root /data/clips --pretrained /path/to/CogVideoX-5b \\
        --buckets 49x480x720 --out /data/clips-latents --num-shards 8

Long clips on a pod: ``--mesh fsdp=2,sequence=4 --vae-encode context-parallel`` splits every clip's
frames after the first over ``sequence`` (``cogvideox_jax/models/vae/context_parallel.py``: ~1/P of the VAE's
activations per device, equal to one-pass ``whole`` encoding) and the batch over data / fsdp; the
frozen T5 runs sharded by its parameters' logical names (``parallel/param_sharding.py``).
"""
from __future__ import annotations

import argparse
import math
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
    p.add_argument("--mesh", default=None,
                   help="run the VAE and T5 on a device mesh, e.g. fsdp=2,sequence=4 (parallel/mesh.py syntax); "
                        "default: one device")
    p.add_argument("--vae-encode", choices=VAE_ENCODE_MODES, default="diffusers",
                   help="diffusers: the reference's frame chunks (GroupNorm per chunk; default); whole: one pass "
                        "over the clip (GroupNorm over all of it, the SAT behaviour); context-parallel: whole, "
                        "with the frames split over the mesh's sequence axis (needs --mesh with sequence > 1; "
                        "FRAMES - 1 divisible by 4 x the sequence size)")
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
    mesh = _precompute_mesh(args.mesh, args.vae_encode, args.buckets)
    pretrained = local_pipeline(args.pretrained, ("vae", "text_encoder"))   # gs:// sources: a local copy
    if mesh is None and args.vae_encode == "diffusers":
        enc_post, enc_text, vae_config = frozen_posterior_encoders(pretrained, text_len=args.text_len)
    else:
        enc_post, enc_text, vae_config = precompute_encoders(pretrained, text_len=args.text_len, mesh=mesh,
                                                             vae_encode=args.vae_encode)
    if has_offsets(vae_config):
        raise ValueError(f"{args.pretrained}/vae's config scales latents per channel (latents_mean / latents_std) "
                         "or shifts them; latent caches store one scaling_factor. Train from the videos "
                         "instead (data.kind=videos), which applies the VAE config's scaling as it is.")
    scaling = vae_config.scaling_factor
    batches = iterate_folder_once(paths.localize(args.data_root), args.buckets, args.fps or None, args.batch_size)
    metadata = {"scaling_factor": scaling, "pretrained": paths.absolute(args.pretrained), "buckets": args.buckets,
                "fps": args.fps, "vae_encode": args.vae_encode}

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


VAE_ENCODE_MODES = ("diffusers", "whole", "context-parallel")


def _precompute_mesh(spec: str | None, vae_encode: str, buckets: str):
    """The mesh of ``--mesh`` (None without one), checked against ``--vae-encode`` and the buckets' frames."""
    if vae_encode not in VAE_ENCODE_MODES:
        raise SystemExit(f"cogvideox-jax precompute: error: --vae-encode {vae_encode!r}: one of {VAE_ENCODE_MODES}")
    if not spec:
        if vae_encode == "context-parallel":
            raise SystemExit("cogvideox-jax precompute: error: --vae-encode context-parallel splits the frames over "
                             "a mesh's sequence axis: give --mesh (e.g. --mesh sequence=4)")
        return None
    from cogvideox_jax.parallel.mesh import make_mesh

    mesh = make_mesh(spec)
    shards = mesh.shape.get("sequence", 1)
    if vae_encode == "context-parallel":
        if shards == 1:
            raise SystemExit(f"cogvideox-jax precompute: error: --vae-encode context-parallel needs a sequence axis > 1 "
                             f"in --mesh (got {spec!r})")
        from cogvideox_jax.data.buckets import parse_buckets

        for b in parse_buckets(buckets):
            need = math.lcm(4 * shards, 2)   # the VAE's 4x time compression: whole frame pairs per shard per level
            if (b.frames - 1) % need:
                raise SystemExit(f"cogvideox-jax precompute: error: bucket {b.frames} frames: context-parallel "
                                 f"encoding over sequence={shards} needs FRAMES - 1 divisible by {need} (e.g. "
                                 f"{need + 1}, {2 * need + 1}, ...)")
    return mesh


def precompute_encoders(pretrained_root: str, *, text_len: int = 226, mesh=None, vae_encode: str = "whole"):
    """``(encode_posterior, encode_text, vae_config)`` as ``video_latents.frozen_posterior_encoders`` returns
    them, with the VAE's frame batching ``vae_encode`` (``"diffusers"`` | ``"whole"`` | ``"context-parallel"``)
    and, on ``mesh``, the batch split over data / fsdp, the clip's frames over ``sequence``
    (context-parallel) and T5's weights sharded by their logical names (FSDP / tensor)."""
    import jax

    from cogvideox_jax.compiler_options import memory_optimized
    from cogvideox_jax.models.t5.prompt_encoding import tokenize_prompts
    from cogvideox_jax.pipeline.components import COMPONENT_KINDS, load_components

    comps = load_components(pretrained_root, names=("vae", "text_encoder"))
    vae, t5 = comps.vae, comps.text_encoder
    vae_params, t5_params = comps.vae_params, comps.text_encoder_params

    def moments(post):
        return post.mean, post.logvar

    if mesh is None:
        encode_video = jax.jit(lambda p, v: moments(vae.apply({"params": p}, v, frame_batching=vae_encode,
                                                               method="encode")),
                               compiler_options=memory_optimized())
        encode_ids = jax.jit(lambda p, ids: t5.apply({"params": p}, ids))
    else:
        from jax.sharding import NamedSharding, PartitionSpec

        from cogvideox_jax.parallel.param_sharding import param_shardings, place_params
        from cogvideox_jax.parallel.sharded_apply import batch_sharding, sharded_jit

        # the VAE's weights whole on every device (context-parallel encoding reads them inside shard_map)
        repl = NamedSharding(mesh, PartitionSpec())
        vae_params = place_params(vae_params, jax.tree_util.tree_map(lambda _: repl, vae_params))
        abstract = jax.eval_shape(t5.init, jax.random.PRNGKey(0),
                                  *COMPONENT_KINDS["text_encoder"].dummy_inputs(t5.config))["params"]
        t5_params = place_params(t5_params, param_shardings(abstract, mesh))
        if vae_encode == "context-parallel":
            from cogvideox_jax.models.vae.context_parallel import context_parallel_encode

            video_fn = lambda p, v: moments(context_parallel_encode(vae, p, v, mesh))  # noqa: E731
        else:
            video_fn = lambda p, v: moments(vae.apply({"params": p}, v, frame_batching=vae_encode,  # noqa: E731
                                                      method="encode"))
        video_jit = jax.jit(video_fn, compiler_options=memory_optimized())
        ids_jit = sharded_jit(lambda p, ids: t5.apply({"params": p}, ids), mesh)

        def encode_video(p, v):
            return video_jit(p, jax.device_put(v, batch_sharding(mesh, v.shape)))

        def encode_ids(p, ids):
            return ids_jit(p, jax.device_put(ids, batch_sharding(mesh, ids.shape)))

    def encode_posterior(video):
        return encode_video(vae_params, video)

    def encode_text(prompts):
        return encode_ids(t5_params, tokenize_prompts(comps.tokenizer, list(prompts), text_len))

    return encode_posterior, encode_text, vae.config


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
