"""The shapes project's sampling: contrast guidance and best-of-N candidate selection around the core
``CogVideoXPipeline``, and what they add to ``cogvideox-jax sample`` (the embedded default model, its
``sampling.json``, ``--contrast-words`` / ``--contrast-scale`` / ``--candidates``; composed in by
``cogvideox_jax/cli.py``).

``sample(pipe, prompts, contrast_prompts=..., contrast_scale=w_c, selection=CandidateSelection(N))``:
each prompt's ``N`` candidates are the pipeline's ``num_videos_per_prompt`` (the prompt encoded once;
one seed per prompt draws all of them), the contrast prompts ride along as ``extra_guidance`` rows
(``contrast_prompts.py``), and each prompt keeps the candidate its prompt explains best
(``candidate_selection.py``). With neither, it is the pipeline call itself.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from cogvideox_jax.pipeline.denoise_loop import ExtraGuidance
from cogvideox_jax.shapes.candidate_selection import CandidateSelection, select_candidates, selection_key
from cogvideox_jax.shapes.contrast_prompts import contrast_batch, contrast_guidance, contrast_prompts


def sample(pipe, prompt, negative_prompt="", *, contrast_prompts=None, contrast_scale: float = 0.0,
           selection: CandidateSelection | None = None, seed=0, num_videos_per_prompt: int = 1,
           output_type: str = "np", max_sequence_length: int | None = None, **kwargs):
    """``pipe(prompt, ...)`` with contrast guidance and best-of-N selection.

    ``contrast_prompts``: per prompt, a list of prompts it should be told apart from, used with
    ``contrast_scale`` w_c != 0 (the guided prediction gains ``w_c (v(prompt) − mean v(contrasts))``).
    ``selection``: each prompt sampled ``selection.candidates`` times and the candidate its prompt explains
    best against its ``contrast_prompts`` (needed; used at any ``contrast_scale``) kept. The candidates'
    noise is drawn for the ``B * N`` batch (``latents``: ``(B * N, ...)``, prompt-major); ``seed``: one int,
    or one per prompt. Text-to-video only. Other keywords: the pipeline call's."""
    selection = selection or CandidateSelection()
    n = selection.candidates
    if n == 1 and (contrast_prompts is None or contrast_scale == 0.0):
        return pipe(prompt, negative_prompt, seed=seed, num_videos_per_prompt=num_videos_per_prompt,
                    output_type=output_type, max_sequence_length=max_sequence_length, **kwargs)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
    if len(negatives) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(negatives)} negative prompts")
    nv = int(num_videos_per_prompt)
    prompts, negatives = [p for p in prompts for _ in range(nv)], [p for p in negatives for _ in range(nv)]
    contrast_prompts = None if contrast_prompts is None else [c for c in contrast_prompts for _ in range(nv)]
    if n > 1:
        if kwargs.get("image") is not None:
            raise ValueError("candidate selection is for text-to-video models (image= was given)")
        if contrast_prompts is None:
            raise ValueError("candidate selection needs contrast_prompts: it scores each candidate under its "
                             "prompt against them")
        if pipe.transformer_config.patch_size_t:
            raise ValueError("candidate selection scores the denoised latents, which models with temporal patches "
                             "(1.5) return without their padding frame")
    contrast, mask = contrast_batch(pipe, prompts, contrast_prompts, max_sequence_length)
    if mask is not None:
        contrast, mask = jnp.repeat(contrast, n, axis=1), jnp.repeat(mask, n, axis=1)
    extra = None if mask is None or contrast_scale == 0.0 else ExtraGuidance(
        contrast.reshape((-1,) + contrast.shape[2:]), contrast_guidance, (jnp.float32(contrast_scale), mask))
    cond = pipe.encode_prompt(prompts, max_sequence_length)
    latents = pipe(prompt_embeds=cond, negative_prompt_embeds=pipe.encode_prompt(negatives, max_sequence_length),
                   num_videos_per_prompt=n, seed=seed, extra_guidance=extra, max_sequence_length=max_sequence_length,
                   output_type="latent" if n > 1 else output_type, **kwargs)
    if n == 1:
        return latents
    keys = selection_key(seed) if isinstance(seed, (int, np.integer)) else [selection_key(s) for s in seed]
    kept = select_candidates(pipe, jnp.asarray(latents), jnp.repeat(cond, n, axis=0), contrast, mask, selection, keys)
    return np.asarray(kept) if output_type == "latent" else pipe.latents_to_video(kept, kwargs.get("vae_tiling"))


# ----------------------------------------------------------------------------- cogvideox-jax sample
def extend_sample_parser(parser) -> None:
    """Add the shapes flags and the embedded default model to the ``sample`` parser (``cli_commands.py``)."""
    from cogvideox_jax.pipeline.cli_commands import _finite_float, _positive_int
    from cogvideox_jax.shapes.default_model import default_checkpoint

    parser.add_argument("--contrast-words", help="comma-separated words of one attribute (e.g. circle,square,star): "
                                                 "the prompt is also contrasted with itself naming each other word "
                                                 "(default: the checkpoint's sampling.json, else none)")
    parser.add_argument("--contrast-scale", type=_finite_float,
                        help="contrast guidance scale (0 turns it off; default: the checkpoint's sampling.json, "
                             "else 0)")
    parser.add_argument("--candidates", type=_positive_int,
                        help="best-of-N: sample N videos and keep the one the model reads best as its prompt against "
                             "the contrast prompts (1 turns it off; default: the checkpoint's sampling.json, else 1)")
    parser.set_defaults(default_checkpoint=default_checkpoint, sampler=cli_sampler)


def cli_sampler(args, settings: dict):
    """``(sample, group_for)`` for ``cogvideox-jax sample`` from its flags and the checkpoint's ``settings``
    (``sampling.json``): the call of one batch of prompts, and the batch key of a prompt (prompts are
    batched only with prompts of the same candidate count)."""
    from cogvideox_jax.shapes.candidate_selection import selection_from_settings

    words = args.contrast_words.split(",") if args.contrast_words else settings.get("contrast_words", [])
    scale = args.contrast_scale if args.contrast_scale is not None else settings.get("contrast_scale", 0.0)
    if args.contrast_words and not scale:
        raise SystemExit("--contrast-words needs a non-zero contrast scale: pass --contrast-scale (the checkpoint's "
                         "sampling.json sets none, or it was set to 0)")
    selection = selection_from_settings(settings, args.candidates)
    if selection.candidates < 1:   # from sampling.json: the command line's was checked by argparse
        args.sample_parser.error(f"candidates={selection.candidates} from the checkpoint's sampling.json must be >= 1")

    def contrasts_for(prompt):
        return contrast_prompts(prompt, [words]) if words else []

    def group_for(prompt):
        return selection if selection.candidates > 1 and contrasts_for(prompt) else CandidateSelection()

    def run(pipe, prompts, **kw):
        one = isinstance(prompts, str)
        contrasts = [contrasts_for(p) for p in ([prompts] if one else prompts)]
        return sample(pipe, prompts, contrast_prompts=contrasts if any(contrasts) else None, contrast_scale=scale,
                      selection=group_for(prompts if one else prompts[0]), **kw)

    if selection.candidates > 1 and not words:
        print("candidate selection off: it needs contrast words (--contrast-words, or the checkpoint's)")
    elif args.prompt is not None and words and not contrasts_for(args.prompt):
        off = [name for name, on in (("contrast guidance", scale), ("candidate selection", selection.candidates > 1))
               if on]
        if off:
            print(f"{' and '.join(off)} off: the prompt names none (or more than one) of {', '.join(words)}")
    return run, group_for
