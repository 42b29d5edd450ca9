"""Tiny mp4 files for the data-pipeline tests: frame i is a flat grey of level ``gray_level(i)``."""
from __future__ import annotations

import os

import imageio_ffmpeg
import numpy as np


def gray_level(i: int) -> int:
    return 8 + 20 * i


def write_video(path, num_frames: int = 12, height: int = 32, width: int = 48, fps: float = 12.0,
                noise: bool = False, faststart: bool = False) -> str:
    """Flat grey frames (or seeded noise with ``noise``); ``faststart`` puts the index before the data."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    w = imageio_ffmpeg.write_frames(path, (width, height), fps=fps, macro_block_size=1, quality=9,
                                    ffmpeg_log_level="error",
                                    output_params=["-movflags", "+faststart"] if faststart else None)
    w.send(None)
    rng = np.random.default_rng(num_frames)
    for i in range(num_frames):
        frame = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise
                 else np.full((height, width, 3), min(255, gray_level(i)), np.uint8))
        w.send(frame.tobytes())
    w.close()
    return path


def write_folder(root, specs, fmt: str = "txt") -> list[str]:
    """``specs``: list of dicts with write_video kwargs + optional "prompt" and "corrupt": "random" (random
    bytes), "truncate" (first half of the file: the index is lost, unreadable at probe time) or "truncate_stream"
    (a faststart noise video cut to a third: the header probes fine, decoding ends early).

    Writes the videos under ``root/videos`` and prompts.txt/videos.txt (fmt="txt") or metadata.jsonl.
    Returns the prompts.
    """
    import json

    root = os.fspath(root)
    prompts, rels = [], []
    for n, spec in enumerate(specs):
        spec = dict(spec)
        prompt = spec.pop("prompt", f"video number {n}")
        corrupt = spec.pop("corrupt", None)
        rel = f"videos/v{n:03d}.mp4"
        path = os.path.join(root, rel)
        if corrupt == "random":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(np.random.default_rng(n).integers(0, 256, 2000, dtype=np.uint8).tobytes())
        else:
            if corrupt == "truncate_stream":
                spec.update(noise=True, faststart=True)
            write_video(path, **spec)
            if corrupt in ("truncate", "truncate_stream"):
                data = open(path, "rb").read()
                with open(path, "wb") as f:
                    f.write(data[:len(data) // (2 if corrupt == "truncate" else 3)])
        prompts.append(prompt)
        rels.append(rel)
    if fmt == "txt":
        with open(os.path.join(root, "prompts.txt"), "w") as f:
            f.write("\n".join(prompts) + "\n")
        with open(os.path.join(root, "videos.txt"), "w") as f:
            f.write("\n".join(rels) + "\n")
    else:
        with open(os.path.join(root, "metadata.jsonl"), "w") as f:
            for p, r in zip(prompts, rels):
                f.write(json.dumps({"video": r, "caption": p}) + "\n")
    return prompts
