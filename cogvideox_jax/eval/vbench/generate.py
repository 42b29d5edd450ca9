"""``cogvideox-jax eval generate``: sample every prompt of the VBench suites, resumably.

Files are named ``{prompt}-{i}.mp4`` as VBench expects and saved at 8 fps; each is written to a
temporary name and renamed when complete, so an interrupted run resumes where it stopped and a
half-written file is never counted. Prompts sharing a video index are batched into one pipeline
call (the batch is sharded over the mesh's data axes when ``--mesh`` is given); video ``i`` of every
prompt uses seed ``--seed + i``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cogvideox_jax.eval.vbench.generation_plan import finish, plan_generation
from cogvideox_jax.eval.vbench.prompt_suites import DIMENSIONS, unique_prompts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cogvideox-jax eval generate", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a cogvideox-jax checkpoint")
    src.add_argument("--diffusers", help="a diffusers CogVideoX pipeline folder")
    p.add_argument("--dimensions", nargs="+", default=list(DIMENSIONS), choices=DIMENSIONS)
    p.add_argument("--prompts-file", help="use these prompts (one per line) instead of the VBench suites")
    p.add_argument("--videos-per-prompt", type=int, default=5)
    p.add_argument("--out", required=True, help="output folder of {prompt}-{i}.mp4")
    p.add_argument("--batch-size", type=int, default=1, help="prompts per pipeline call")
    p.add_argument("--frames", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--dynamic-cfg", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=8.0, help="VBench's videos are saved at 8 fps")
    p.add_argument("--mesh", help="device mesh, e.g. data=4,sequence=2")
    p.add_argument("--sequence-parallel", choices=("ulysses", "ring"))
    from cogvideox_jax import compile_cache

    compile_cache.add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cogvideox_jax.compile_cache import configured

    with configured(args):
        return _generate(args)


def _generate(args) -> int:
    import os

    from tqdm.auto import tqdm

    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.data.video_io import save_video

    if args.prompts_file:
        from cogvideox_jax.pipeline.prompts_file import read_prompts

        prompts = read_prompts(args.prompts_file)
    else:
        prompts = unique_prompts(args.dimensions)
    os.makedirs(args.out, exist_ok=True)
    jobs = plan_generation(prompts, args.videos_per_prompt, args.out)
    total = len(dict.fromkeys(prompts)) * args.videos_per_prompt
    print(f"{total - len(jobs)} of {total} videos already done; {len(jobs)} to generate")
    if not jobs:
        return 0
    pipe = CogVideoXPipeline.from_pretrained(args.checkpoint or args.diffusers, mesh=args.mesh,
                                             sequence_parallel=args.sequence_parallel)
    by_index: dict[int, list] = {}
    for job in jobs:
        by_index.setdefault(job.index, []).append(job)
    with tqdm(total=len(jobs), desc="videos", unit="video") as bar:
        for index, group in sorted(by_index.items()):
            for start in range(0, len(group), args.batch_size):
                batch = group[start:start + args.batch_size]
                videos = pipe([j.prompt for j in batch], num_frames=args.frames, height=args.height, width=args.width,
                              num_inference_steps=args.steps, guidance_scale=args.guidance,
                              use_dynamic_cfg=args.dynamic_cfg, seed=args.seed + index, progress=False)
                for job, video in zip(batch, videos):
                    save_video(job.tmp_path, video, args.fps)
                    finish(job)
                    bar.update(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
