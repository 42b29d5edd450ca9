"""The persistent compilation cache of the command line (``cogvideox_jax/compile_cache.py``): ``sample``
writes compiled programs to ``--compile-cache DIR`` (a subfolder per host CPU) and a second run loads
them; ``--no-compile-cache`` writes none; JAX's settings are restored after a command; ``train`` and the
``eval`` commands take the flags."""
import os

import jax
import pytest

from cogvideox_jax import compile_cache
from cogvideox_jax.cli import build_parser, main

pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder  # noqa: E402


def _entries(root):
    return sorted(n for _, _, files in os.walk(root) for n in files if not n.startswith("."))


def test_configured_sets_and_restores_jax_settings(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    with compile_cache.configured(directory=str(tmp_path)) as path:
        assert path == os.path.join(str(tmp_path), compile_cache.host_key())
        assert jax.config.jax_compilation_cache_dir == path and os.path.isdir(path)
        assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_TIME_S
    assert jax.config.jax_compilation_cache_dir == before
    with compile_cache.configured(enabled=False) as path:
        assert path is None and not jax.config.jax_compilation_cache_dir
    assert compile_cache.default_dir() == os.path.join(os.environ["COGVIDEOX_JAX_CACHE"], "jax_cache")


def test_sample_fills_the_cache_and_a_second_run_loads_it(tmp_path):
    folder, _ = make_pipeline_folder(tmp_path, "5b")
    cache = tmp_path / "cache"
    args = ["sample", "--diffusers", folder, "--prompt", "a red circle", "--steps", "2", "--out",
            str(tmp_path / "v.mp4")]
    assert main(args + ["--no-compile-cache"]) == 0
    assert not cache.exists()
    assert main(args + ["--compile-cache", str(cache)]) == 0
    first = _entries(cache)   # (in one process: the programs this pipeline compiled, e.g. its VAE decode)
    assert first and os.listdir(cache) == [compile_cache.host_key()]
    hits = []

    def listen(event, **kw):
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    jax.monitoring.register_event_listener(listen)
    try:
        assert main(args + ["--compile-cache", str(cache)]) == 0
    finally:
        jax.monitoring.unregister_event_listener(listen)
    assert len(hits) >= 1 and _entries(cache) == first   # loaded, nothing new written


@pytest.mark.parametrize("argv", [
    ["train", "--config", "c.py"],
    ["eval", "generate", "--checkpoint", "c", "--out", "o"],
    ["eval", "vbench", "--videos", "v"],
])
def test_train_and_eval_take_the_flags(argv):
    if argv[0] == "eval":
        import importlib

        from cogvideox_jax.cli import ARGV_COMMANDS

        module = importlib.import_module(ARGV_COMMANDS["eval"][argv[1]][0])
        parser = module.build_parser() if hasattr(module, "build_parser") else module.add_arguments(
            __import__("argparse").ArgumentParser())
        parsed = parser.parse_args(argv[2:] + ["--compile-cache", "/tmp/x", "--no-compile-cache"])
    else:
        parsed = build_parser().parse_args(argv + ["--compile-cache", "/tmp/x", "--no-compile-cache"])
    assert parsed.compile_cache == "/tmp/x" and parsed.no_compile_cache


def test_progress_under_the_cache_is_stored_and_bit_identical(tmp_path):
    """With the cache on, ``progress=True`` steps the loop from the host (the scan's progress callback would
    keep the loop's program out of the cache): the step program is stored, and the embedded model's video
    is bit-identical to the one compiled scan's."""
    import numpy as np

    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.shapes.candidate_selection import CandidateSelection
    from cogvideox_jax.shapes.contrast_prompts import contrast_prompts
    from cogvideox_jax.shapes.default_model import default_checkpoint
    from cogvideox_jax.shapes.sampling import sample

    pipe = CogVideoXPipeline.from_pretrained(default_checkpoint())
    p = "a red circle moves to the left"
    kw = dict(num_inference_steps=4, guidance_scale=6.0, seed=0, contrast_scale=4.0,
              contrast_prompts=[contrast_prompts(p, [("circle", "square", "star")])],
              selection=CandidateSelection(candidates=2, timesteps=(100, 300), repeats=1))
    scan = sample(pipe, p, progress=False, **kw)
    with compile_cache.configured(directory=str(tmp_path)) as path:
        stepped = sample(pipe, p, progress=True, **kw)
        assert any(k[0] == "step" for k in pipe._compiled if isinstance(k, tuple))   # the host-stepped loop ran
    np.testing.assert_array_equal(stepped, scan)
    assert _entries(path)
