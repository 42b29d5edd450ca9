"""``cogvideox-jax convert | export | sample | info``."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys


def add_parsers(sub) -> None:
    p = sub.add_parser("convert", help="diffusers pipeline folder or SAT checkpoint -> cogvideox-jax checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--diffusers", help="a diffusers CogVideoX pipeline folder (model_index.json, transformer/, ...)")
    src.add_argument("--sat", help="folder of an original SAT checkpoint (transformer mp_rank_00_model_states.pt)")
    p.add_argument("--out", required=True, help="output checkpoint directory (must be new or empty)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="dtype the params are stored in")
    p.add_argument("--scan-layers", action="store_true", help="store transformer blocks stacked for nn.scan")
    p.add_argument("--variant", choices=("2b", "5b", "5b-i2v", "1.5", "1.5-i2v"), help="SAT only: model variant")
    p.add_argument("--sat-vae", help="SAT only: VAE checkpoint (.pt / .safetensors)")
    p.add_argument("--text-encoder", help="SAT only: a transformers T5 text_encoder/ folder")
    p.add_argument("--tokenizer", help="SAT only: the T5 tokenizer/ folder")
    p.set_defaults(run=run_convert)

    p = sub.add_parser("export", help="cogvideox-jax checkpoint -> diffusers pipeline folder")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--diffusers-out", required=True)
    p.set_defaults(run=run_export)

    p = sub.add_parser("sample", help="generate a video from a prompt (and an image for I2V models)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a cogvideox-jax checkpoint (from `convert`); default: the packaged "
                                          "shapes model (cogvideox_jax/default_model/shapes)")
    src.add_argument("--diffusers", help="a diffusers CogVideoX pipeline folder")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--image", help="conditioning image (I2V models)")
    p.add_argument("--frames", type=int, help="number of frames (1.0: 8N+1, 1.5: 16N+1); default: the model's")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--steps", type=int, help="denoising steps (default: the checkpoint's sampling.json, else 50)")
    p.add_argument("--guidance", type=float, help="CFG scale (default: the checkpoint's sampling.json, else 6)")
    p.add_argument("--dynamic-cfg", action="store_true")
    p.add_argument("--contrast-words", help="comma-separated words of one attribute (e.g. circle,square,star): "
                                            "the prompt is also contrasted with itself naming each other word "
                                            "(default: the checkpoint's sampling.json, else none)")
    p.add_argument("--contrast-scale", type=float,
                   help="contrast guidance scale (0 turns it off; default: the checkpoint's sampling.json, else 0)")
    p.add_argument("--candidates", type=int,
                   help="best-of-N: sample N videos and keep the one the model reads best as its prompt against "
                        "the contrast prompts (1 turns it off; default: the checkpoint's sampling.json, else 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latents", help="initial noise .npy in (B, t, h, w, C) layout")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--mesh", help="device mesh, e.g. data=2,sequence=4")
    p.add_argument("--sequence-parallel", choices=("ulysses", "ring"))
    p.add_argument("--vae-decode", choices=("diffusers", "whole", "context-parallel"), default="diffusers",
                   help="VAE decode: the reference's frame chunks (default), one pass over the clip, or one "
                        "pass with the frames split over the mesh's sequence axis")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="compute dtype")
    p.add_argument("--out", default="video.mp4", help=".mp4 or .gif")
    p.set_defaults(run=run_sample)

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
    from cogvideox_jax.pipeline.components import load_components

    dtype = _dtype(args.dtype)
    if args.sat:
        from cogvideox_jax.convert.sat_checkpoint import load_sat_components

        comps = load_sat_components(args, param_dtype=dtype)
    else:
        bar, tick = _progress(["transformer", "vae", "text_encoder"])
        comps = load_components(args.diffusers, param_dtype=dtype, progress=tick,
                                transformer_overrides={"scan_layers": args.scan_layers})
        bar.close()
    configs = dict(comps.source_configs)
    configs["transformer"] = {**configs["transformer"], "scan_layers": args.scan_layers}
    bar, tick = _progress(["transformer", "vae", "text_encoder"])
    write_pipeline_checkpoint(
        args.out, configs=configs,
        params={n: comps.params(n) for n in ("transformer", "vae", "text_encoder")},
        tokenizer_dir=comps.tokenizer_dir, scheduler_config=comps.scheduler_config.to_diffusers_config(),
        dtype=args.dtype, variant=getattr(args, "variant", None), progress=tick)
    bar.close()
    print(f"wrote {args.out}")
    return 0


def run_export(args) -> int:
    from cogvideox_jax.convert.export_diffusers import t5_state_dict, vae_state_dict, write_component
    from cogvideox_jax.convert.transformer import transformer_state_dict
    from cogvideox_jax.models.vae.latent_scaling import has_offsets
    from cogvideox_jax.pipeline.components import load_components

    comps = load_components(args.checkpoint)
    out = args.diffusers_out
    tcfg = comps.transformer.config
    write_component(os.path.join(out, "transformer"), transformer_state_dict(comps.transformer_params, tcfg),
                    tcfg.to_diffusers_config(), "diffusion_pytorch_model.safetensors")
    write_component(os.path.join(out, "vae"), vae_state_dict(comps.vae_params), comps.source_configs["vae"],
                    "diffusion_pytorch_model.safetensors")
    if has_offsets(comps.vae.config):
        per_channel = comps.vae.config.latents_mean is not None or comps.vae.config.latents_std is not None
        how, inverse = (("per channel (latents_mean / latents_std)", "z * latents_std / scaling_factor + latents_mean")
                        if per_channel else ("with a shift_factor", "z / scaling_factor + shift_factor"))
        print(f"warning: this VAE scales latents {how}; the config keeps those fields, but diffusers' CogVideoX "
              f"pipelines apply scaling_factor only: with diffusers, decode this transformer's latents as "
              f"{inverse} yourself", file=sys.stderr)
    write_component(os.path.join(out, "text_encoder"),
                    t5_state_dict(comps.text_encoder_params, comps.text_encoder.config),
                    comps.source_configs["text_encoder"], "model.safetensors")
    shutil.copytree(comps.tokenizer_dir, os.path.join(out, "tokenizer"), dirs_exist_ok=True)
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    with open(os.path.join(out, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(comps.scheduler_config.to_diffusers_config(), f, indent=2)
    i2v = tcfg.in_channels == 2 * comps.vae.config.latent_channels
    model_index = {
        "_class_name": "CogVideoXImageToVideoPipeline" if i2v else "CogVideoXPipeline",
        "scheduler": ["diffusers", comps.scheduler_config.to_diffusers_config()["_class_name"]],
        "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"],
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump(model_index, f, indent=2)
    print(f"wrote diffusers pipeline folder {out}")
    return 0


def run_sample(args) -> int:
    import numpy as np

    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.pipeline.candidate_selection import CandidateSelection, selection_from_settings
    from cogvideox_jax.pipeline.contrast_prompts import contrast_prompts
    from cogvideox_jax.pipeline.default_model import default_checkpoint, sampling_defaults

    path = args.checkpoint or args.diffusers or default_checkpoint()
    defaults = sampling_defaults(path)
    steps = args.steps if args.steps is not None else defaults.get("steps", 50)
    guidance = args.guidance if args.guidance is not None else defaults.get("guidance_scale", 6.0)
    words = args.contrast_words.split(",") if args.contrast_words else defaults.get("contrast_words", [])
    contrast_scale = args.contrast_scale if args.contrast_scale is not None else defaults.get("contrast_scale", 0.0)
    if args.contrast_words and not contrast_scale:
        raise SystemExit("--contrast-words needs a non-zero contrast scale: pass --contrast-scale (the checkpoint's "
                         "sampling.json sets none, or it was set to 0)")
    selection = selection_from_settings(defaults, args.candidates)
    contrasts = [contrast_prompts(args.prompt, [words])] if words else None
    if contrasts is not None and not contrasts[0]:
        off = [name for name, on in (("contrast guidance", contrast_scale),
                                     ("candidate selection", selection.candidates > 1)) if on]
        if off:
            print(f"{' and '.join(off)} off: the prompt names none (or more than one) of {', '.join(words)}")
    elif selection.candidates > 1 and not words:
        print("candidate selection off: it needs contrast words (--contrast-words, or the checkpoint's)")
    if selection.candidates > 1 and not (contrasts and contrasts[0]):
        selection = CandidateSelection()
    pipe = CogVideoXPipeline.from_pretrained(path, dtype=_dtype(args.dtype), mesh=args.mesh,
                                             sequence_parallel=args.sequence_parallel, vae_decode=args.vae_decode)
    latents = np.load(args.latents) if args.latents else None
    video = pipe(args.prompt, negative_prompt=args.negative_prompt, image=args.image, num_frames=args.frames,
                 height=args.height, width=args.width, num_inference_steps=steps, guidance_scale=guidance,
                 use_dynamic_cfg=args.dynamic_cfg, seed=args.seed, latents=latents, contrast_prompts=contrasts,
                 contrast_scale=contrast_scale, selection=selection)
    save_video(args.out, video[0], args.fps)
    print(f"wrote {args.out} ({video.shape[1]} frames, {video.shape[2]}x{video.shape[3]})")
    return 0


def save_video(path: str, frames, fps: float) -> None:
    """frames: float (T, H, W, 3) in [0, 1] -> .mp4 (libx264) or .gif."""
    import numpy as np

    from cogvideox_jax.data.video_io import to_uint8, write_video

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".gif"):
        import imageio.v2 as imageio

        imageio.mimsave(path, list(to_uint8(np.asarray(frames))), duration=1.0 / fps, loop=0)
    else:
        write_video(path, frames, fps=fps)


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
