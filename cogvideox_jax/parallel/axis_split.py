"""A trace-time switch: "this tensor dimension is split ``size`` ways over mesh axis ``axis``".

The VAE's modules read it while they are traced inside ``jax.shard_map`` (like flax's
``logical_axis_rules``): ``parallel/time_context.py`` (frames) and ``parallel/height_split.py`` (rows)
each own one ``AxisSplitSwitch``. Outside its ``with`` block a switch is off and nothing changes.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator, Optional


@dataclass(frozen=True)
class AxisSplit:
    axis: str
    size: int


class AxisSplitSwitch:
    def __init__(self, name: str):
        self._var: contextvars.ContextVar[Optional[AxisSplit]] = contextvars.ContextVar(name, default=None)

    @contextlib.contextmanager
    def __call__(self, axis: str, size: int) -> Iterator[AxisSplit]:
        token = self._var.set(AxisSplit(axis, size))
        try:
            yield self._var.get()
        finally:
            self._var.reset(token)

    def active(self) -> Optional[AxisSplit]:
        return self._var.get()
