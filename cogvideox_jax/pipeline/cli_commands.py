"""``cogvideox-jax convert | sample | info`` (``export``: ``train/cli_export.py``)."""
from __future__ import annotations

import argparse
import os
import sys


def add_parsers(sub) -> None:
    p = sub.add_parser("convert", help="diffusers pipeline folder or SAT checkpoint -> cogvideox-jax checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--diffusers", help="a diffusers CogVideoX pipeline folder (model_index.json, transformer/, ...) "
                                         "or a Hugging Face Hub id (THUDM/CogVideoX-5b)")
    src.add_argument("--sat", help="folder of an original SAT checkpoint (transformer mp_rank_00_model_states.pt)")
    p.add_argument("--revision", help="Hub ids: the branch, tag or commit to download (default main)")
    p.add_argument("--out", required=True, help="output checkpoint directory (must be new or empty)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="dtype the params are stored in")
    p.add_argument("--scan-layers", action="store_true", help="store transformer blocks stacked for nn.scan")
    p.add_argument("--variant", choices=("2b", "5b", "5b-i2v", "1.5", "1.5-i2v"), help="SAT only: model variant")
    p.add_argument("--sat-vae", help="SAT only: VAE checkpoint (.pt / .safetensors)")
    p.add_argument("--text-encoder", help="SAT only: a transformers T5 text_encoder/ folder")
    p.add_argument("--tokenizer", help="SAT only: the T5 tokenizer/ folder")
    p.set_defaults(run=run_convert)

    p = sub.add_parser("sample", help="generate a video from a prompt (and an image for I2V models)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a cogvideox-jax checkpoint (from `convert`); default: the embedded "
                                          "default model")
    src.add_argument("--diffusers", help="a diffusers CogVideoX pipeline folder, or a Hugging Face Hub id "
                                         "(THUDM/CogVideoX-5b: downloaded to the HF cache; HF_HUB_OFFLINE=1: "
                                         "the cache only)")
    p.add_argument("--revision", help="Hub ids: the branch, tag or commit to download (default main)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt")
    what.add_argument("--prompts-file", metavar="FILE",
                      help="one prompt per line (blank lines and lines starting with # skipped): writes "
                           "--out-dir/<index:05d>-<slug>.mp4, skipping videos already there; prompt i uses seed "
                           "--seed + i; batches over the mesh's data axis, and over processes (--coordinator ...)")
    p.add_argument("--out-dir", help="--prompts-file: the output folder (default videos/)")
    p.add_argument("--batch-size", type=_positive_int,
                   help="--prompts-file: prompts per pipeline call on each process (default: the mesh's data axis "
                        "size, else 1)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--image", help="conditioning image (I2V models)")
    p.add_argument("--video", help="video-to-video: the input video (text-to-video models); its frame count is used")
    p.add_argument("--strength", type=_unit_float, default=0.8,
                   help="video-to-video: how much of the schedule is re-run (0 < s <= 1; default 0.8)")
    p.add_argument("--frames", type=_positive_int,
                   help="number of frames (1.0: 8N+1, 1.5: 16N+1); default: the model's")
    p.add_argument("--height", type=_positive_int)
    p.add_argument("--width", type=_positive_int)
    p.add_argument("--steps", type=_positive_int,
                   help="denoising steps (default: the checkpoint's sampling.json, else 50)")
    p.add_argument("--guidance", type=_non_negative_float,
                   help="CFG scale, applied when > 1 (default: the checkpoint's sampling.json, else 6)")
    p.add_argument("--dynamic-cfg", action="store_true")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--latents", help="initial noise .npy in (B, t, h, w, C) layout")
    p.add_argument("--fps", type=_positive_float, default=8.0)
    p.add_argument("--mesh", help="device mesh, e.g. data=2,sequence=4")
    p.add_argument("--sequence-parallel", choices=("ulysses", "ring"))
    p.add_argument("--vae-decode", choices=("diffusers", "whole", "context-parallel"), default="diffusers",
                   help="VAE decode: the reference's frame chunks (default), one pass over the clip, or one "
                        "pass with the frames split over the mesh's sequence axis")
    p.add_argument("--vae-tiling", action="store_true",
                   help="decode (and encode --video) in overlapping spatial tiles, as diffusers' vae.enable_tiling() "
                        "(tiles of 240x360 px for the released VAEs): less memory at large sizes")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="compute dtype")
    p.add_argument("--param-dtype", choices=("fp32", "bf16"), default="fp32",
                   help="dtype the weights are held in (bf16: half the memory; compute stays --dtype)")
    p.add_argument("--max-sequence-length", type=_positive_int,
                   help="T5 prompt length in tokens (default the model's, 226; RoPE models only)")
    p.add_argument("--lora", action="append", metavar="FILE",
                   help="a diffusers / PEFT LoRA file or folder merged into the transformer at load (repeatable)")
    p.add_argument("--lora-scale", action="append", type=_finite_float, metavar="S",
                   help="strength of each --lora (one value for all, or one per --lora; default 1)")
    p.add_argument("--lora-ignore-unmatched", action="store_true",
                   help="merge a LoRA whose modules partly match nothing in the model (listed as a warning)")
    p.add_argument("--out", default="video.mp4", help=".mp4 or .gif")
    p.add_argument("--coordinator", default=None, help="--prompts-file on several hosts: host:port of process 0")
    p.add_argument("--num-processes", type=_positive_int, default=None)
    p.add_argument("--process-id", type=_non_negative_int, default=None)
    from cogvideox_jax.compile_cache import add_arguments as add_compile_cache_arguments

    add_compile_cache_arguments(p)
    p.set_defaults(run=run_sample, sample_parser=p)

    p = sub.add_parser("info", help="variant, parameter counts and dtypes of a checkpoint")
    p.add_argument("checkpoint")
    p.set_defaults(run=run_info)


def _dtype(name: str):
    import jax.numpy as jnp

    return jnp.bfloat16 if name == "bf16" else jnp.float32


def _progress(names):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(names), desc="components", unit="component")
    return bar, lambda name: (bar.set_postfix_str(name), bar.update(1))


def run_convert(args) -> int:
    from cogvideox_jax.convert.pipeline_checkpoint import write_pipeline_checkpoint
    from cogvideox_jax.pipeline.components import PipelineComponents, load_components, local_pipeline

    from cogvideox_jax import paths

    if paths.exists(args.out) and (not paths.isdir(args.out) or any(paths.as_path(args.out).iterdir())):
        # checked again when writing; here so that nothing is loaded for a conversion that cannot be written
        print(f"cogvideox-jax convert: error: --out {args.out!r} exists and is not an empty directory; choose a "
              "new --out directory", file=sys.stderr)
        raise SystemExit(2)
    dtype = _dtype(args.dtype)
    if args.sat:
        from cogvideox_jax.convert.sat_checkpoint import load_sat_components

        missing = [f"--{n.replace('_', '-')}" for n in ("variant", "sat_vae", "text_encoder", "tokenizer")
                   if not getattr(args, n, None)]
        if missing:
            raise SystemExit(f"convert --sat also needs {', '.join(missing)}")
        comps = PipelineComponents(**load_sat_components(args.sat, args.sat_vae, args.variant, args.text_encoder,
                                                         args.tokenizer, scan_layers=args.scan_layers,
                                                         param_dtype=dtype))
    else:
        bar, tick = _progress(["transformer", "vae", "text_encoder"])
        try:
            folder = local_pipeline(args.diffusers, revision=args.revision)
        except FileNotFoundError as e:  # a Hub id neither local nor resolvable (pipeline/hub.py)
            print(f"cogvideox-jax convert: error: {e}", file=sys.stderr)
            raise SystemExit(2)
        comps = load_components(folder, param_dtype=dtype, progress=tick,
                                transformer_overrides={"scan_layers": args.scan_layers})
        bar.close()
    configs = dict(comps.source_configs)
    configs["transformer"] = {**configs["transformer"], "scan_layers": args.scan_layers}
    bar, tick = _progress(["transformer", "vae", "text_encoder"])

    def write(out):
        write_pipeline_checkpoint(
            out, configs=configs, params={n: comps.params(n) for n in ("transformer", "vae", "text_encoder")},
            tokenizer_dir=comps.tokenizer_dir, scheduler_config=comps.scheduler_config.to_diffusers_config(),
            dtype=args.dtype, variant=getattr(args, "variant", None), progress=tick)

    if paths.is_url(args.out):  # written locally, then uploaded (the marker file last)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            write(os.path.join(tmp, "ckpt"))
            paths.upload_tree(os.path.join(tmp, "ckpt"), args.out)
    else:
        write(args.out)
    bar.close()
    print(f"wrote {args.out}")
    return 0


def run_sample(args) -> int:
    from cogvideox_jax.compile_cache import configured

    if args.prompts_file is None:
        for flag, value in (("--out-dir", args.out_dir), ("--batch-size", args.batch_size),
                            ("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
                            ("--process-id", args.process_id)):
            if value is not None:
                _usage_error(args, f"{flag} goes with --prompts-file")
    else:
        if not os.path.isfile(args.prompts_file):
            _usage_error(args, f"--prompts-file {args.prompts_file!r}: no such file")
        for flag, value in (("--latents", args.latents), ("--image", args.image), ("--video", args.video)):
            if value is not None:
                _usage_error(args, f"{flag} is for a single --prompt, not --prompts-file")
        from cogvideox_jax.pipeline.prompts_file import initialize_distributed

        initialize_distributed(args)   # before any JAX backend starts
    with configured(args):
        return _run_sample(args)


def _run_sample(args) -> int:
    """``sample``; a parser extension (``cogvideox_jax/cli.py``) may set ``args.default_checkpoint()`` (the
    model used without --checkpoint / --diffusers) and ``args.sampler(args, settings) -> (sample, group_for)``:
    ``sample(pipe, prompts, **call_kwargs)`` in place of the pipeline call, ``group_for(prompt)`` the key of
    the prompts a --prompts-file batch may mix."""
    from cogvideox_jax.errors import CheckpointFormatError
    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.pipeline.components import local_pipeline, sampling_defaults

    # every check that needs no weights comes before the (long) load
    if args.prompts_file is None:
        _check_video_out(args, args.out)
    default = getattr(args, "default_checkpoint", None)
    if not (args.checkpoint or args.diffusers or default):
        _usage_error(args, "give --checkpoint or --diffusers")
    path = args.checkpoint or args.diffusers or default()
    try:
        path = local_pipeline(path, revision=args.revision)   # Hub ids (pipeline/hub.py), gs://
    except FileNotFoundError as e:
        _usage_error(args, str(e))
    try:
        defaults = sampling_defaults(path)
    except ValueError as e:  # a corrupt sampling.json (not JSON, not UTF-8)
        raise CheckpointFormatError(
            f"{os.path.join(path, 'sampling.json')!r} is not a readable JSON file: {e}") from e
    steps = args.steps if args.steps is not None else defaults.get("steps", 50)
    guidance = args.guidance if args.guidance is not None else defaults.get("guidance_scale", 6.0)
    for name, value, ok, requirement in (("steps", steps, steps >= 1, ">= 1"),
                                         ("guidance_scale", guidance, guidance >= 0, ">= 0")):
        if not ok:  # from sampling.json: the command line's were checked by argparse
            _usage_error(args, f"{name}={value} from {os.path.join(path, 'sampling.json')} must be {requirement}")
    video_in = _load_video(args) if args.video else None
    _check_request(args, path, steps, video_frames=None if video_in is None else len(video_in))
    for lora in args.lora or ():
        if not os.path.exists(lora):
            _usage_error(args, f"--lora {lora!r}: no such file or folder")
    _lora_scales(args)
    latents = _load_latents(args) if args.latents else None
    sampler = getattr(args, "sampler", None)
    sample, group_for = sampler(args, defaults) if sampler else (None, None)

    def load(mesh):
        return CogVideoXPipeline.from_pretrained(
            path, dtype=_dtype(args.dtype), param_dtype=_dtype(args.param_dtype), mesh=mesh,
            sequence_parallel=args.sequence_parallel, vae_decode=args.vae_decode, lora=args.lora or None,
            lora_scale=_lora_scales(args), lora_ignore_unmatched=args.lora_ignore_unmatched,
            vae_tiling=args.vae_tiling)

    call_kwargs = dict(negative_prompt=args.negative_prompt, num_frames=args.frames, height=args.height,
                       width=args.width, num_inference_steps=steps, guidance_scale=guidance,
                       use_dynamic_cfg=args.dynamic_cfg, max_sequence_length=args.max_sequence_length)
    if args.prompts_file is not None:
        from cogvideox_jax.pipeline import prompts_file

        return prompts_file.run(load, args, call_kwargs=dict(call_kwargs, progress=False), sample=sample,
                                group_for=group_for, fps=args.fps)

    pipe = load(args.mesh)
    call = sample or type(pipe).__call__
    video = call(pipe, args.prompt, image=args.image, seed=args.seed, latents=latents, **call_kwargs,
                 **({} if video_in is None else dict(video=video_in, strength=args.strength)))
    from cogvideox_jax.data.video_io import VideoWriteError, save_video

    try:
        save_video(args.out, video[0], args.fps)
    except VideoWriteError as e:
        print(f"cogvideox-jax sample: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({video.shape[1]} frames, {video.shape[2]}x{video.shape[3]})")
    return 0


def _load_video(args):
    """--video as uint8 frames (checked before the weights load)."""
    if not os.path.isfile(args.video):
        _usage_error(args, f"--video {args.video!r}: no such file")
    if args.image is not None:
        _usage_error(args, "--video (video-to-video) and --image (image-to-video) exclude each other")
    from cogvideox_jax.data.video_io import read_video_uint8

    try:
        return read_video_uint8(args.video)
    except Exception as e:  # noqa: BLE001 - ffmpeg's errors vary by format
        _usage_error(args, f"--video {args.video!r} is not a readable video: {e}")


VIDEO_EXTENSIONS = (".mp4", ".gif")


def _lora_scales(args) -> list[float]:
    """One ``--lora-scale`` for every ``--lora`` (a single value applies to all; default 1)."""
    loras, scales = args.lora or [], args.lora_scale or [1.0]
    if len(scales) == 1:
        return scales * len(loras)
    if len(scales) != len(loras):
        _usage_error(args, f"{len(loras)} --lora but {len(scales)} --lora-scale: give one scale, or one per LoRA")
    return scales


def _usage_error(args, message: str):
    """Exit 2 with ``message``, as argparse does for a bad argument."""
    parser = getattr(args, "sample_parser", None)
    if parser is not None:
        parser.error(message)
    print(f"cogvideox-jax sample: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _check_video_out(args, path: str) -> None:
    """``--out`` must end in .mp4 / .gif, not be a directory, and be creatable: its folder (or the nearest
    existing one above it) must be a directory a file can be created in, tried with a temporary file."""
    import tempfile

    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        _usage_error(args, f"--out {path!r} is a directory; give a file name ending in .mp4 or .gif")
    if ext not in VIDEO_EXTENSIONS:
        _usage_error(args, f"--out {path!r}: the video must be {' or '.join(VIDEO_EXTENSIONS)}")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        _usage_error(args, f"--out {path!r}: {existing!r} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cogvideox-jax-probe-", suffix=ext, dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        _usage_error(args, f"--out {path!r}: cannot create files in {existing!r}: {e.strerror or e}")


def _check_request(args, path: str, steps: int, video_frames: int | None = None) -> None:
    """--frames / --height / --width and --image against the model's config.json files (no weights read),
    with the frame rules the pipeline applies, and the step count against the scheduler's; --image must be
    a readable image."""
    from configs.scheduler import SchedulerConfig
    from configs.transformer import TransformerConfig
    from configs.vae import VAEConfig
    from cogvideox_jax.convert.pipeline_checkpoint import is_pipeline_checkpoint
    from cogvideox_jax.convert.safetensors_io import read_config
    from cogvideox_jax.pipeline.frame_rules import plan_frames, plan_video_frames

    if args.image is not None:
        if not os.path.isfile(args.image):
            _usage_error(args, f"--image {args.image!r}: no such file")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(args.image):
                pass
        except (OSError, UnidentifiedImageError) as e:
            _usage_error(args, f"--image {args.image!r} is not a readable image: {e}")
    if not (is_pipeline_checkpoint(path) or os.path.exists(os.path.join(path, "model_index.json"))):
        return  # not a model folder: loading it says so
    # an unreadable config.json is a CheckpointFormatError naming it, raised here rather than after a load
    configs = {name: read_config(os.path.join(path, name)) for name in ("transformer", "vae", "text_encoder")}
    n_train = SchedulerConfig.from_pretrained(path).num_train_timesteps
    try:
        tc = TransformerConfig.from_diffusers_config(configs["transformer"])
        vc = VAEConfig.from_diffusers_config(configs["vae"])
    except (TypeError, ValueError):
        return  # loading the model reports an invalid config with its own error
    if steps > n_train:
        _usage_error(args, f"steps={steps}: the scheduler has {n_train} training timesteps, at most that many steps")
    s = vc.spatial_compression
    kw = dict(patch_size=tc.patch_size, patch_size_t=tc.patch_size_t,
              temporal_compression=int(vc.temporal_compression_ratio), spatial_compression=s)
    height, width = args.height or tc.sample_height * s, args.width or tc.sample_width * s
    try:
        if video_frames is not None:
            if args.frames is not None and args.frames != video_frames:
                raise ValueError(f"--frames {args.frames} but --video has {video_frames} frames")
            plan_video_frames(video_frames, height, width, **kw)
        else:
            plan_frames(args.frames or tc.sample_frames, height, width, **kw)
    except ValueError as e:
        _usage_error(args, f"{e} (--frames / --height / --width; default: the model's)")
    i2v = tc.in_channels == 2 * vc.latent_channels
    if video_frames is not None and i2v:
        _usage_error(args, f"--video (video-to-video) needs a text-to-video model; {path!r} is image-to-video")
    if args.max_sequence_length not in (None, tc.max_text_seq_length) and (
            tc.use_learned_positional_embeddings or not tc.use_rotary_positional_embeddings):
        _usage_error(args, f"--max-sequence-length {args.max_sequence_length}: this model's positional embedding is "
                           f"laid out for {tc.max_text_seq_length} text tokens (only RoPE models take another length)")
    if i2v and args.image is None:
        _usage_error(args, f"{path!r} is an image-to-video model: pass --image")
    if args.image is not None and not i2v:
        _usage_error(args, f"--image given but {path!r} is a text-to-video model")


def _load_latents(args):
    import numpy as np

    if not os.path.isfile(args.latents):
        _usage_error(args, f"--latents {args.latents!r}: no such file")
    try:
        latents = np.load(args.latents, allow_pickle=False)
    except (OSError, ValueError) as e:
        _usage_error(args, f"--latents {args.latents!r} is not a readable .npy array: {e}")
    if not isinstance(latents, np.ndarray):
        _usage_error(args, f"--latents {args.latents!r} must be one .npy array, not an .npz archive")
    return latents


def _finite(value: float) -> bool:
    import math

    return math.isfinite(value)


def _number(convert, ok, requirement: str):
    """An argparse ``type=``: ``convert(text)`` that must satisfy ``ok`` (else "must be {requirement}")."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if convert is int else ' number'}") \
                from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, ">= 1")
_non_negative_int = _number(int, lambda v: v >= 0, ">= 0")
_positive_float = _number(float, lambda v: _finite(v) and v > 0, "a finite number > 0")
_non_negative_float = _number(float, lambda v: _finite(v) and v >= 0, "a finite number >= 0")
_finite_float = _number(float, _finite, "a finite number")
_unit_float = _number(float, lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]")


def run_info(args) -> int:
    from cogvideox_jax.convert.pipeline_checkpoint import (MODEL_COMPONENTS, param_count_and_dtypes, read_component,
                                                           read_marker)

    marker = read_marker(args.checkpoint)
    print(f"checkpoint: {args.checkpoint}")
    print(f"variant: {marker.get('variant') or 'unknown'}   stored dtype: {marker['dtype']}")
    total = 0
    for name in MODEL_COMPONENTS:
        config, params = read_component(args.checkpoint, name)
        n, dtypes = param_count_and_dtypes(params)
        total += n
        print(f"  {name:13s} {n:>15,d} params  {', '.join(f'{k}: {v:,d}' for k, v in dtypes.items())}")
    print(f"  {'total':13s} {total:>15,d} params")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="cogvideox-jax")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args()
    sys.exit(a.run(a))
