"""``cogvideox-jax eval vbench``: score a folder of ``{prompt}-{i}.mp4`` videos on the paper's five
VBench dimensions, write VBench's results JSON and print a Table-1-shaped table.

    cogvideox-jax eval vbench --videos DIR [--dimensions human_action scene ...]
        [--weights-dir W] [--flow-backend auto|raft|vbench|dis] [--out results.json]
        [--vbench-json PATH] [--videos-per-prompt 5] [--device cuda] [--model-name NAME]
        [--with-paper-rows]

Exit status: 0 when every requested dimension was scored, 2 when some could not be (requires
weights / backend / no videos; the JSON says which and why), 1 on a usage error.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Mapping, Sequence

from cogvideox_jax.eval.vbench.appearance_style import evaluate_appearance_style
from cogvideox_jax.eval.vbench.backends.interfaces import RequiresWeights
from cogvideox_jax.eval.vbench.discovery import VIDEOS_PER_PROMPT, discover_dimension, missing_names, num_videos
from cogvideox_jax.eval.vbench.dynamic_degree import evaluate_dynamic_degree
from cogvideox_jax.eval.vbench.human_action import evaluate_human_action
from cogvideox_jax.eval.vbench.multiple_objects import evaluate_multiple_objects
from cogvideox_jax.eval.vbench.prompt_suites import DIMENSIONS
from cogvideox_jax.eval.vbench.results import (
    INFO_KEY,
    dimension_entry,
    format_table,
    is_scored,
    vbench_view,
    write_results,
)
from cogvideox_jax.eval.vbench.scene import evaluate_scene
from cogvideox_jax.eval.vbench.video_io import DecodedVideo, read_video

log = logging.getLogger(__name__)

EVALUATORS = {
    "human_action": evaluate_human_action,
    "scene": evaluate_scene,
    "dynamic_degree": evaluate_dynamic_degree,
    "multiple_objects": evaluate_multiple_objects,
    "appearance_style": evaluate_appearance_style,
}
RULES = "VBench 0.1.5 (Vchitect/VBench@45e79ec) scoring rules"


def evaluate(
    videos_dir: str,
    dimensions: Sequence[str],
    backends: Mapping[str, object],
    videos_per_prompt: int = VIDEOS_PER_PROMPT,
    load: Callable[[str], DecodedVideo] = read_video,
) -> dict:
    """Score ``dimensions`` with the given backends (``RequiresWeights`` entries are reported)."""
    results: dict = {}
    info = {"rules": RULES, "videos_dir": videos_dir, "backends": {}, "num_videos": {}, "missing_videos": {}}
    for dim in dimensions:
        found = discover_dimension(videos_dir, dim, videos_per_prompt)
        info["num_videos"][dim] = num_videos(found)
        info["missing_videos"][dim] = missing_names(found)
        backend = backends[dim]
        if isinstance(backend, RequiresWeights):
            results[dim] = backend.to_json()
            continue
        info["backends"][dim] = backend.info.to_json()
        if num_videos(found) == 0:
            results[dim] = {"status": "no videos", "needs": [f"{videos_dir}/{{prompt}}-{{i}}.mp4 for the {dim} prompts"]}
            continue
        if hasattr(backend, "evaluate"):  # the vbench package evaluates the whole dimension
            score, video_results = backend.evaluate(found)
        else:
            score, video_results = EVALUATORS[dim](found, backend, load)
        results[dim] = dimension_entry(score, video_results)
    results[INFO_KEY] = info
    return results


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--videos", required=True, help="folder of {prompt}-{i}.mp4 files (VBench names)")
    parser.add_argument("--dimensions", nargs="+", choices=DIMENSIONS, default=list(DIMENSIONS))
    parser.add_argument("--weights-dir", default=None, help="model weights in VBench's cache layout (see backends/resolve.py)")
    parser.add_argument(
        "--flow-backend", choices=("auto", "raft", "vbench", "dis"), default="auto",
        help="dynamic degree flow: JAX RAFT port (auto/raft), RAFT in the vbench package (vbench), "
        "or OpenCV DIS (dis; not comparable to VBench)",
    )
    parser.add_argument("--out", default="vbench_eval_results.json", help="results JSON path")
    parser.add_argument(
        "--vbench-json", default=None,
        help="also write only the scored dimensions in VBench's exact {dim: [score, per_video]} shape",
    )
    parser.add_argument("--videos-per-prompt", type=int, default=VIDEOS_PER_PROMPT)
    parser.add_argument("--device", default="cuda", help="torch device for the vbench-package backends")
    parser.add_argument("--model-name", default="this run", help="row name in the printed table")
    parser.add_argument("--with-paper-rows", action="store_true", help="also print the paper's Table 1 rows")
    from cogvideox_jax import compile_cache

    compile_cache.add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from cogvideox_jax.compile_cache import configured

    with configured(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from cogvideox_jax.eval.vbench.backends.resolve import resolve_backend

    backends = {d: resolve_backend(d, args.weights_dir, args.flow_backend, args.device) for d in args.dimensions}
    results = evaluate(args.videos, args.dimensions, backends, args.videos_per_prompt)
    write_results(args.out, results)
    if args.vbench_json:
        write_results(args.vbench_json, vbench_view(results))
    for dim, missing in results[INFO_KEY]["missing_videos"].items():
        if missing:
            print(f"warning: {dim}: {len(missing)} expected videos missing (listed in {args.out})", file=sys.stderr)
    print(format_table(results, args.model_name, args.with_paper_rows))
    print(f"results written to {args.out}")
    return 0 if all(is_scored(results[d]) for d in args.dimensions) else 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register as a sub-command (``eval vbench``); sets ``run`` as the handler."""
    p = subparsers.add_parser("vbench", help="VBench: the five dimensions of the paper's Table 1")
    add_arguments(p)
    p.set_defaults(run=run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="cogvideox-jax eval vbench", description=__doc__.splitlines()[0]))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
