"""JAX's persistent compilation cache for the command line (``sample``, ``train``, ``eval ...``).

Every command compiles the same programs on every run (the denoising loop, the VAE decode, the T5
encoder, the train step); with the cache a later run loads the compiled executables from disk instead
of compiling them again. ``--compile-cache DIR`` picks the folder, default
``~/.cache/cogvideox_jax/jax_cache`` (under ``$COGVIDEOX_JAX_CACHE`` when set); ``--no-compile-cache``
turns it off. A ``JAX_COMPILATION_CACHE_DIR`` the user set is kept when no ``--compile-cache`` is given.

Entries live in a subfolder per host CPU (its model name and instruction-set flags), so that hosts of
different CPU generations sharing a home directory never load each other's XLA:CPU code. Programs that
compile in under ``MIN_COMPILE_TIME_S`` are not stored; programs with host callbacks (the denoising
loop's per-step progress bar) never are (JAX's rule).

``configured(args)`` sets the cache for the duration of a command and restores JAX's previous settings
afterwards (commands also run in-process, e.g. from the tests).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform

MIN_COMPILE_TIME_S = 0.0   # the embedded model's many small programs add up (see BENCHMARKS.md, "compile cache")
_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")


def default_dir() -> str:
    from cogvideox_jax import paths

    return os.path.join(paths.cache_root(), "jax_cache")


def host_key() -> str:
    """``<machine>-<hash of the CPU model and flags>``: one cache subfolder per CPU type."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        lines = [ln for ln in info.splitlines() if ln.split(":")[0].strip() in ("model name", "flags", "Features",
                                                                                 "CPU part")]
        text += "\n".join(sorted(set(lines)))
    except OSError:
        text += platform.processor()
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def add_arguments(parser) -> None:
    """``--compile-cache DIR`` / ``--no-compile-cache``."""
    parser.add_argument("--compile-cache", metavar="DIR", default=None,
                        help="persistent JAX compilation cache folder: later runs load compiled programs instead "
                             "of compiling them (default: ~/.cache/cogvideox_jax/jax_cache, or "
                             "$JAX_COMPILATION_CACHE_DIR when set)")
    parser.add_argument("--no-compile-cache", action="store_true", help="compile everything afresh (no cache)")


def resolve(directory: str | None = None, *, enabled: bool = True) -> str | None:
    """The folder entries go to (with the host subfolder); ``None`` when off."""
    if not enabled:
        return None
    base = directory or os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_dir()
    return os.path.join(os.path.abspath(os.path.expanduser(base)), host_key())


def _reset_jax_cache() -> None:
    """JAX initialises its cache object once per process: drop it so the new folder is used."""
    try:
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        pass


def enable(directory: str | None = None, *, min_compile_time_s: float = MIN_COMPILE_TIME_S) -> str:
    """Turn the cache on at ``resolve(directory)`` for the rest of the process; returns that folder."""
    import jax

    path = resolve(directory)
    os.makedirs(path, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        _reset_jax_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


@contextlib.contextmanager
def configured(args=None, *, directory: str | None = None, enabled: bool | None = None):
    """The cache as ``args`` (``--compile-cache`` / ``--no-compile-cache``) or the keywords say, for the
    ``with`` block; JAX's previous settings are restored after it. Yields the folder (``None``: off)."""
    import jax

    if args is not None:
        directory = directory or getattr(args, "compile_cache", None)
        enabled = not getattr(args, "no_compile_cache", False) if enabled is None else enabled
    enabled = True if enabled is None else enabled
    before = {name: getattr(jax.config, name) for name in _OPTIONS}
    path = None
    try:
        if enabled:
            try:
                path = enable(directory)
            except OSError as e:  # an unwritable folder costs speed, not the run
                print(f"compile cache off: cannot use {resolve(directory)!r}: {e}")
                path = None
        elif before["jax_compilation_cache_dir"]:
            jax.config.update("jax_compilation_cache_dir", None)
            _reset_jax_cache()
        yield path
    finally:
        changed = any(getattr(jax.config, name) != value for name, value in before.items())
        for name, value in before.items():
            jax.config.update(name, value)
        if changed:
            _reset_jax_cache()


def wrap(run):
    """``run(args)`` under ``configured(args)`` (for a parser's ``set_defaults(run=wrap(run))``)."""
    import functools

    @functools.wraps(run)
    def wrapped(args):
        with configured(args):
            return run(args)

    return wrapped
