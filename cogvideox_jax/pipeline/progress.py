"""A host-side progress bar advanced from inside a compiled loop.

The denoising loop is one ``lax.scan`` (compiled once per shape); ``tick(i)`` in its body is a
``jax.debug.callback`` to the host once per step, which advances whichever bar is open in
``progress_bar(...)``. A compiled function keeps working across calls (the callback looks up the
bar that is open *now*), and without an open bar a tick does nothing. Cost: one small host
round-trip per step (measured in ``benchmarks/pipeline.py``).
"""
from __future__ import annotations

import contextlib

import jax
from tqdm.auto import tqdm

_open_bars: list = []


def _advance(i) -> None:
    if _open_bars:
        _open_bars[-1].update(1)


def tick(i) -> None:
    """Advance the open progress bar by one step (safe inside jit / scan)."""
    jax.debug.callback(_advance, i)  # unordered: also valid in multi-device programs


@contextlib.contextmanager
def progress_bar(total: int, desc: str = "denoising", enabled: bool = True):
    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=not enabled)
    _open_bars.append(bar)
    try:
        yield bar
    finally:
        _open_bars.remove(bar)
        bar.close()
