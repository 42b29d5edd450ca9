"""VBench prompt suites for the five CogVideoX Table-1 dimensions, shipped as package data.

Derived from VBench's ``VBench_full_info.json`` (Vchitect/VBench, Apache-2.0; vbench 0.1.5 on PyPI,
identical to Vchitect/VBench@45e79ec); see ``data/NOTICE``. Entry order is the order of the source
file, which is the order VBench itself walks when it builds its video lists.

Sizes: human_action 100, scene 86, dynamic_degree 72 (the subject_consistency prompts),
multiple_objects 82, appearance_style 90 (9 styles x 10 prompts).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from typing import Iterable

DIMENSIONS: tuple[str, ...] = (
    "human_action",
    "scene",
    "dynamic_degree",
    "multiple_objects",
    "appearance_style",
)

# Key of the auxiliary string each dimension's scorer needs (None: the prompt alone).
AUX_KEY: dict[str, str | None] = {
    "human_action": None,
    "scene": "scene",
    "dynamic_degree": None,
    "multiple_objects": "object",
    "appearance_style": "appearance_style",
}

SUITES_FILE = "vbench_prompt_suites.json"
KINETICS_FILE = "kinetics_400_categories.json"


@dataclasses.dataclass(frozen=True)
class PromptEntry:
    """One VBench prompt of a dimension; ``aux`` is the scene / object pair / style phrase."""

    dimension: str
    prompt: str
    aux: str | None = None


def _read_data(name: str) -> dict:
    text = resources.files("cogvideox_jax.eval.vbench").joinpath("data", name).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def _suites() -> dict:
    return _read_data(SUITES_FILE)["suites"]


def load_suite(dimension: str) -> tuple[PromptEntry, ...]:
    """The prompts of one dimension, in VBench_full_info.json order."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown VBench dimension {dimension!r}; known: {DIMENSIONS}")
    key = AUX_KEY[dimension]
    return tuple(
        PromptEntry(dimension, item["prompt"], item[key] if key else None) for item in _suites()[dimension]
    )


def unique_prompts(dimensions: Iterable[str] = DIMENSIONS) -> list[str]:
    """Prompts of several dimensions, de-duplicated, first-seen order (what to generate)."""
    seen: dict[str, None] = {}
    for dim in dimensions:
        for entry in load_suite(dim):
            seen.setdefault(entry.prompt, None)
    return list(seen)


@functools.lru_cache(maxsize=None)
def load_kinetics400_categories() -> tuple[str, ...]:
    """Kinetics-400 class names (lower-case) indexed by the UMT classifier's output index."""
    cats = tuple(_read_data(KINETICS_FILE)["categories"])
    if len(cats) != 400:
        raise ValueError(f"expected 400 Kinetics classes, found {len(cats)}")
    return cats
