"""``cogvideox-jax sample --prompts-file prompts.txt --out-dir videos/``: many prompts, resumable, many hosts.

* One prompt per line (blank lines and ``#`` comments skipped); prompt ``i`` (0-based, counting prompts
  only) is written to ``<out-dir>/<i:05d>-<slug>.mp4`` with seed ``--seed + i``: names and videos do
  not depend on batching, on the number of hosts or on what an earlier run finished. The pipeline's
  per-video seeds (``seed=[...]``) make each video the one ``sample --prompt <p> --seed <s>`` gives
  (up to floating-point noise from the batch).
* Resumable: a video whose file exists is skipped; files are written under a temporary name and
  renamed, so a killed run leaves no partial video under its final name.
* Batches of ``--batch-size`` prompts (default: the mesh's ``data`` axis size) per pipeline call,
  the batch split over the mesh's ``data`` axis.
* Several hosts (``--coordinator/--num-processes/--process-id``, or a TPU pod's own environment):
  ``jax.distributed`` is initialised (``parallel/distributed.py``); process ``p`` of ``P`` owns the prompts
  with ``i % P == p`` and samples them on its own devices (``--mesh`` is the per-host mesh), so every
  video is written exactly once; the processes meet at a barrier at the end.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptJob:
    index: int
    prompt: str
    path: str


def read_prompts(path: str) -> list[str]:
    """The prompts of ``path``: one per line, blank lines and lines starting with ``#`` skipped."""
    from cogvideox_jax import paths

    lines = paths.read_text(path).splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def slug(prompt: str, max_chars: int = 60) -> str:
    """A file-name-safe, stable short form of ``prompt`` (lowercase ASCII words joined by ``-``)."""
    s = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    s = s[:max_chars].rstrip("-")
    return s or "prompt"


def video_name(index: int, prompt: str, ext: str = ".mp4") -> str:
    return f"{index:05d}-{slug(prompt)}{ext}"


def plan(prompts: list[str], out_dir: str, process_index: int = 0, process_count: int = 1
         ) -> tuple[list[PromptJob], int]:
    """This process's prompts still to sample, and how many of its share are already done."""
    mine = [PromptJob(i, p, os.path.join(out_dir, video_name(i, p))) for i, p in enumerate(prompts)
            if i % process_count == process_index]
    todo = [j for j in mine if not os.path.exists(j.path)]
    return todo, len(mine) - len(todo)


def initialize_distributed(args) -> None:
    """``jax.distributed`` from ``--coordinator/--num-processes/--process-id`` (or the environment / a TPU
    pod), before any backend starts."""
    from cogvideox_jax.parallel.distributed import initialize

    initialize(args.coordinator, args.num_processes, args.process_id)


def run(pipe_factory, args, *, call_kwargs: dict, fps: float, sample=None, group_for=None) -> int:
    """Sample this process's share of ``args.prompts_file`` into ``args.out_dir``.

    ``pipe_factory(mesh)`` loads the pipeline (called only when something is left to do);
    ``call_kwargs`` are the pipeline call's shared keywords; ``sample(pipe, prompts, **kwargs)`` replaces
    the pipeline call (default: the call), and ``group_for(prompt)`` keys the prompts a batch may mix
    (e.g. so that each video is the one its single-prompt call gives; default: all)."""
    import jax
    from tqdm.auto import tqdm

    from cogvideox_jax.data.video_io import VideoWriteError, save_video

    out_dir = args.out_dir or "videos"
    prompts = read_prompts(args.prompts_file)
    pid, count = jax.process_index(), jax.process_count()
    os.makedirs(out_dir, exist_ok=True)
    todo, done = plan(prompts, out_dir, pid, count)
    who = f"process {pid}/{count}: " if count > 1 else ""
    print(f"{who}{done} of {done + len(todo)} videos already in {out_dir}; {len(todo)} to sample", flush=True)
    written, failed = [], []
    if todo:
        mesh = None
        if args.mesh:
            from cogvideox_jax.parallel.mesh import make_mesh

            mesh = make_mesh(args.mesh, devices=jax.local_devices())
        pipe = pipe_factory(mesh)
        batch_size = args.batch_size or (mesh.shape.get("data", 1) if mesh is not None else 1)
        groups: dict = {}
        for job in todo:  # keep the order; batch prompts of one group together
            groups.setdefault(group_for(job.prompt) if group_for else None, []).append(job)
        with tqdm(total=len(todo), desc="videos", unit="video", disable=not sys.stderr.isatty()) as bar:
            for jobs in groups.values():
                for start in range(0, len(jobs), batch_size):
                    batch = jobs[start:start + batch_size]
                    videos = (sample or type(pipe).__call__)(pipe, [j.prompt for j in batch],
                                                             seed=[args.seed + j.index for j in batch], **call_kwargs)
                    for job, video in zip(batch, videos):
                        try:
                            save_video(job.path, video, fps)
                            written.append(os.path.basename(job.path))
                        except VideoWriteError as e:
                            print(f"cogvideox-jax sample: error: {e}", file=sys.stderr)
                            failed.append(job.path)
                        bar.update(1)
    print(f"{who}wrote {len(written)} videos to {out_dir}" + (f", {len(failed)} failed" if failed else "")
          + (f": {' '.join(written)}" if written else ""), flush=True)
    if count > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("cogvideox-jax sample --prompts-file done")
    return 1 if failed else 0
