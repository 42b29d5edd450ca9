"""``cogvideox-jax export``: get a model out, as a diffusers pipeline folder, a pipeline checkpoint of
ours, or (LoRA runs) a diffusers LoRA file.

    cogvideox-jax export --checkpoint CKPT --diffusers-out DIR          # a `convert` checkpoint
    cogvideox-jax export --train-workdir W [--step N] [--no-ema] \\
        [--checkpoint-out DIR] [--diffusers-out DIR] [--lora-out FILE]  # a `train` run

A train run's model is its EMA's when it keeps one (``--no-ema``: the trained params), a LoRA run's
adapters merged into its base for the full-model outputs; the VAE, T5, tokenizer and scheduler come
from the run's pipeline (its ``--init`` or ``data.pretrained``; ``--pipeline PATH`` otherwise). Each
output is written under a temporary name next to it and renamed into place when complete; an
existing non-empty output is refused before anything is read.
"""
from __future__ import annotations

import argparse
import os
import shutil
import uuid

from cogvideox_jax import paths


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="a checkpoint or a train run -> diffusers folder / checkpoint / LoRA file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a cogvideox-jax pipeline checkpoint (from `convert`)")
    src.add_argument("--train-workdir", help="a `cogvideox-jax train` workdir")
    p.add_argument("--step", type=int, help="train runs: the checkpoint step (default: the latest)")
    p.add_argument("--no-ema", action="store_true", help="train runs: the trained params, not their EMA")
    p.add_argument("--pipeline", help="train runs: the VAE / T5 / tokenizer / scheduler source (a diffusers "
                                      "pipeline folder or checkpoint) when the run records none")
    p.add_argument("--diffusers-out", help="write a diffusers pipeline folder (diffusers' from_pretrained loads it)")
    p.add_argument("--checkpoint-out", help="train runs: write a pipeline checkpoint (sample --checkpoint loads it)")
    p.add_argument("--lora-out", help="LoRA runs: write the adapters as a diffusers LoRA file "
                                      "(pytorch_lora_weights.safetensors; a folder gets that name)")
    p.set_defaults(run=run)
    return p


def _check_args(args) -> list[tuple[str, str]]:
    outs = [(k, getattr(args, k)) for k in ("diffusers_out", "checkpoint_out", "lora_out") if getattr(args, k)]
    if not outs:
        raise SystemExit("export: name an output: --diffusers-out, --checkpoint-out or --lora-out")
    if args.checkpoint:
        bad = [f"--{k.replace('_', '-')}" for k in ("checkpoint_out", "lora_out", "step", "pipeline")
               if getattr(args, k) is not None] + (["--no-ema"] if args.no_ema else [])
        if bad:
            raise SystemExit(f"export --checkpoint takes only --diffusers-out; {', '.join(bad)} are for --train-workdir")
    for key, out in outs:
        target = _lora_file(out) if key == "lora_out" else out
        if paths.exists(target) and (not paths.isdir(target) or any(paths.as_path(target).iterdir())):
            raise SystemExit(f"export: {target} exists; choose a new --{key.replace('_', '-')}")
    return outs


def run(args) -> int:
    outs = _check_args(args)
    if args.checkpoint:
        from cogvideox_jax.pipeline.components import load_components, local_pipeline

        comps = load_components(local_pipeline(args.checkpoint))
        _write_dir(args.diffusers_out, lambda d: write_diffusers(d, comps))
        print(f"wrote diffusers pipeline folder {args.diffusers_out}")
        return 0
    from cogvideox_jax.train import run_workdir

    workdir = args.train_workdir
    manifest = run_workdir.read_manifest(workdir)
    step = run_workdir.pick_step(workdir, args.step)
    wanted = dict(outs)
    if "lora_out" in wanted:
        from cogvideox_jax.convert.lora_files import write_diffusers_lora

        lora, scale, info = run_workdir.lora_weights(workdir, step, use_ema=not args.no_ema)
        target = _lora_file(wanted["lora_out"])
        if paths.is_url(target):
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                local = write_diffusers_lora(os.path.join(tmp, "lora.safetensors"), lora, scale)
                paths.write_atomic(target, open(local, "rb").read())
        else:
            write_diffusers_lora(target, lora, scale)
        print(f"wrote LoRA {target} (step {step}, {info['weights']}, {len(lora)} modules)")
    if "diffusers_out" in wanted or "checkpoint_out" in wanted:
        pipeline = args.pipeline or manifest.get("pipeline")
        if not pipeline:
            raise SystemExit(f"export: {workdir} records no pipeline (VAE / T5 / tokenizer / scheduler): pass "
                             "--pipeline PATH (a diffusers CogVideoX folder or a `convert` checkpoint)")
        comps = run_components(workdir, step, pipeline, use_ema=not args.no_ema)
        if "checkpoint_out" in wanted:
            _write_dir(wanted["checkpoint_out"], lambda d: write_checkpoint(d, comps, manifest))
            print(f"wrote checkpoint {wanted['checkpoint_out']} (step {step})")
        if "diffusers_out" in wanted:
            _write_dir(wanted["diffusers_out"], lambda d: write_diffusers(d, comps))
            print(f"wrote diffusers pipeline folder {wanted['diffusers_out']} (step {step})")
    return 0


def _lora_file(out: str) -> str:
    """A ``--lora-out`` folder (existing, or named without ``.safetensors``) gets diffusers' file name."""
    if out.endswith(".safetensors") and not paths.isdir(out):
        return out
    return paths.join(out, "pytorch_lora_weights.safetensors")


def _write_dir(out: str, write) -> None:
    """``write(tmp)`` into a temporary folder next to ``out``, renamed to ``out`` when it returns (on
    cloud storage: into a local temporary folder, then uploaded)."""
    out = paths.absolute(out)
    if paths.is_url(out):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            write(os.path.join(tmp, "out"))
            paths.upload_tree(os.path.join(tmp, "out"), out)
        return
    parent = paths.as_path(out).parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = str(parent / f".{paths.as_path(out).name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        if paths.exists(out):  # an empty folder
            paths.as_path(out).rmdir()
        paths.as_path(tmp).rename(out)
    except BaseException:
        if paths.exists(tmp):
            paths.as_path(tmp).rmtree()
        raise


def run_components(workdir: str, step: int, pipeline: str, *, use_ema: bool = True):
    """``PipelineComponents``: the run's transformer at ``step`` with ``pipeline``'s VAE, T5, tokenizer
    and scheduler (host arrays)."""
    import dataclasses

    import jax.numpy as jnp

    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
    from cogvideox_jax.pipeline.components import load_components, local_pipeline
    from cogvideox_jax.train.run_workdir import model_weights

    tcfg, params, _info = model_weights(workdir, step, use_ema=use_ema)
    dtype = jnp.dtype(jax_dtype_name(params))
    names = ("vae", "text_encoder")
    comps = load_components(local_pipeline(pipeline, names), names=names, param_dtype=dtype)
    return dataclasses.replace(comps, transformer=CogVideoXTransformer3D(tcfg, param_dtype=dtype),
                               transformer_params=params)


def jax_dtype_name(params) -> str:
    import jax

    return str(jax.tree_util.tree_leaves(params)[0].dtype)


def write_checkpoint(out: str, comps, manifest: dict) -> None:
    from cogvideox_jax.convert.pipeline_checkpoint import write_pipeline_checkpoint

    tcfg = comps.transformer.config
    configs = {"transformer": {**tcfg.to_diffusers_config(), "scan_layers": tcfg.scan_layers},
               "vae": comps.source_configs["vae"], "text_encoder": comps.source_configs["text_encoder"]}
    dtype = "bf16" if jax_dtype_name(comps.transformer_params) == "bfloat16" else "fp32"
    write_pipeline_checkpoint(out, configs=configs,
                              params={n: comps.params(n) for n in ("transformer", "vae", "text_encoder")},
                              tokenizer_dir=comps.tokenizer_dir,
                              scheduler_config=comps.scheduler_config.to_diffusers_config(), dtype=dtype)


def write_diffusers(out: str, comps) -> None:
    """``PipelineComponents`` -> a diffusers pipeline folder (the exact inverse of the loaders)."""
    import json
    import sys

    from cogvideox_jax.convert.export_diffusers import t5_state_dict, vae_state_dict, write_component
    from cogvideox_jax.convert.transformer import transformer_state_dict
    from cogvideox_jax.models.vae.latent_scaling import has_offsets

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
