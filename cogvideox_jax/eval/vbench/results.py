"""Results JSON (VBench's ``{dimension: [score, video_results]}`` shape) and a Table-1-shaped table.

The JSON holds, per dimension, either VBench's ``[score, per_video_results]`` pair or a status
object (``{"status": "requires weights", "needs": [...]}``, ``{"status": "no videos"}``), plus one
extra key ``"_info"`` (not a dimension: it starts with an underscore) with the backend of every
dimension (``comparable_to_vbench`` false for a non-VBench model such as OpenCV DIS), the videos
counted and the expected videos that were missing.
"""
from __future__ import annotations

import json
import math

from cogvideox_jax.eval.vbench.prompt_suites import DIMENSIONS

INFO_KEY = "_info"
COLUMNS = {
    "human_action": "Human Action",
    "scene": "Scene",
    "dynamic_degree": "Dynamic Degree",
    "multiple_objects": "Multiple Objects",
    "appearance_style": "Appearance Style",
}
# The paper's Table 1 (percent), for side-by-side printing.
PAPER_TABLE1 = {
    "T2V-Turbo": (95.2, 55.58, 49.17, 54.65, 24.42),
    "AnimateDiff": (92.6, 50.19, 40.83, 36.88, 22.42),
    "VideoCrafter-2.0": (95.0, 55.29, 42.50, 40.66, 25.13),
    "OpenSora V1.2": (85.8, 42.47, 47.22, 58.41, 23.89),
    "Show-1": (95.6, 47.03, 44.44, 55.47, 23.06),
    "Gen-2": (89.2, 48.91, 18.89, 55.47, 19.34),
    "Pika": (88.0, 44.80, 37.22, 46.69, 21.89),
    "LaVie-2": (96.4, 49.59, 31.11, 64.88, 25.09),
    "CogVideoX (paper)": (96.75, 55.23, 61.89, 70.15, 24.32),
    # The CogVideoX authors' own numbers (arXiv 2408.06072, Table 3), for reference.
    "CogVideoX-2B (arXiv)": (96.6, 55.35, 66.39, 57.68, 24.37),
    "CogVideoX-5B (arXiv)": (96.8, 55.44, 62.22, 70.95, 24.44),
}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy scalars
        return x.item()
    if isinstance(x, (set, frozenset)):
        return sorted(x)
    return x


def dimension_entry(score: float, video_results: list) -> list:
    return [float(score), _jsonable(video_results)]


def is_scored(entry) -> bool:
    return isinstance(entry, list) and len(entry) == 2


def vbench_view(results: dict) -> dict:
    """Only the scored dimensions, exactly ``{dimension: [score, video_results]}`` (for VBench's tools,
    which expect every key to be a dimension)."""
    return {k: v for k, v in results.items() if not k.startswith("_") and is_scored(v)}


def write_results(path: str, results: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_jsonable(results), f, indent=2, ensure_ascii=False)


def _cell(dim: str, results: dict) -> tuple[str, str | None]:
    entry = results.get(dim)
    if entry is None:
        return "-", None
    if not is_scored(entry):
        return f"n/a ({entry.get('status', '?')})", None
    score = entry[0]
    text = "nan" if score is None or (isinstance(score, float) and math.isnan(score)) else f"{100.0 * score:.2f}"
    backend = results.get(INFO_KEY, {}).get("backends", {}).get(dim)
    if backend and not backend.get("comparable_to_vbench", True):
        return text + "*", f"{COLUMNS[dim]}: {backend.get('name')} - not comparable to VBench"
    return text, None


def format_table(results: dict, model_name: str = "this run", with_paper: bool = False) -> str:
    """Markdown table with the paper's Table 1 columns; scores in percent."""
    header = ["Models"] + [COLUMNS[d] for d in DIMENSIONS]
    rows, notes = [], []
    if with_paper:
        rows += [[name] + [f"{v:.2f}" for v in vals] for name, vals in PAPER_TABLE1.items()]
    cells = []
    for d in DIMENSIONS:
        text, note = _cell(d, results)
        cells.append(text)
        if note:
            notes.append(note)
    rows.append([model_name] + cells)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    lines = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in rows]
    lines += [f"* {n}" for n in notes]
    return "\n".join(lines)
