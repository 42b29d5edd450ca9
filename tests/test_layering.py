"""The package's layers import downward only, and the core knows nothing of the shapes project.

Layers, low to high: base modules (``paths``, ``errors``, ``compiler_options``, ``compile_cache``, ``configs``) <
parallel < models < diffusion < convert < data < pipeline < train < eval < shapes < the top level
(``cli``, ``tpu_aot``). A module imports only from its own layer or lower ones; imports inside
functions count too.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ["base", "parallel", "models", "diffusion", "convert", "data", "pipeline", "train", "eval", "shapes", "top"]
BASE = {"paths", "errors", "compiler_options", "compile_cache", "__init__"}
CORE = ("models", "diffusion", "parallel", "convert", "pipeline", "train", "data")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "configs":
        return "base"
    assert parts[0] == "cogvideox_jax", module
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    return parts[1] if parts[1] in LAYERS else "top"


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of the project's own modules in ``path``."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        else:
            continue
        out += [(node.lineno, n) for n in names if n.split(".")[0] in ("cogvideox_jax", "configs")]
    return out


def project_files():
    return sorted(p for d in ("cogvideox_jax", "configs") for p in (ROOT / d).rglob("*.py"))


def test_the_checker_sees_the_package():
    files = project_files()
    assert len(files) > 100
    assert layer_of("cogvideox_jax.pipeline.cogvideox_pipeline") == "pipeline"
    assert layer_of("cogvideox_jax.cli") == "top" and layer_of("configs.train_config") == "base"
    assert LAYERS.index("pipeline") < LAYERS.index("train") < LAYERS.index("shapes")


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_no_import_runs_up(layer):
    upward = []
    for path in project_files():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if layer_of(module) != layer:
            continue
        for line, target in imports_of(path):
            if LAYERS.index(layer_of(target)) > LAYERS.index(layer):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_core_holds_nothing_of_the_shapes_project():
    for folder in CORE:
        for path in (ROOT / "cogvideox_jax" / folder).rglob("*.py"):
            assert "shapes" not in path.relative_to(ROOT / "cogvideox_jax").parts[1:-1], path
            for line, target in imports_of(path):
                assert not target.startswith("cogvideox_jax.shapes"), f"{path}:{line} imports {target}"
