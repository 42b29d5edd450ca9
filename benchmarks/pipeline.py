"""Tiny end-to-end pipeline, JAX vs diffusers, same run on this machine.

Reports the first call (compile + run) and the steady-state time per call separately for ours, the
steady-state time of diffusers' own pipeline on the same tiny random weights, and the cost of the
per-step progress bar (host callback) measured as steady state with and without it.

    python benchmarks/pipeline.py [--style 5b] [--steps 10] [--frames 9] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--style", default="5b", choices=["2b", "5b", "5b-i2v", "1.5"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import torch

    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder, to_torch_latents

    torch.set_num_threads(os.cpu_count())
    root = tempfile.mkdtemp()
    folder, ref = make_pipeline_folder(root, args.style)
    frames = 17 if args.style == "1.5" else args.frames
    ours = CogVideoXPipeline.from_pretrained(folder)
    kw = dict(num_frames=frames, height=32, width=48, num_inference_steps=args.steps, guidance_scale=6.0)
    t0 = time.perf_counter()
    ours("a red circle moves to the left", **kw, progress=False)
    first = time.perf_counter() - t0
    steady = _time(lambda: ours("a red circle moves to the left", **kw, progress=False), args.repeats)
    ours("a red circle moves to the left", **kw, progress=True)  # compile the variant with the callback
    steady_bar = _time(lambda: ours("a red circle moves to the left", **kw, progress=True), args.repeats)
    lat = np.random.default_rng(0).standard_normal((1, (frames - 1) // 4 + 1, 4, 6, 4)).astype(np.float32)
    ref.set_progress_bar_config(disable=True)
    ref_call = lambda: ref(prompt="a red circle moves to the left", latents=to_torch_latents(lat),  # noqa: E731
                           output_type="np", **kw)
    ref_call()
    ref_steady = _time(ref_call, args.repeats)
    print(f"| pipeline ({args.style}-style tiny, {frames}x32x48, {args.steps} steps) | time |")
    print("|---|---|")
    print(f"| JAX first call (compile + run) | {first:.2f} s |")
    print(f"| JAX steady state, no progress bar | {steady:.3f} s |")
    print(f"| JAX steady state, per-step progress bar | {steady_bar:.3f} s ({(steady_bar - steady) / args.steps * 1e3:+.2f} ms/step) |")
    print(f"| diffusers steady state | {ref_steady:.3f} s |")
    print(f"| ratio JAX / diffusers (steady) | {steady / ref_steady:.2f} |")


if __name__ == "__main__":
    main()
