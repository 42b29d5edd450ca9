"""Test helper: read back the TensorBoard event files tensorboardX wrote (no tensorboard install)."""
from __future__ import annotations

import glob
import os
import struct


def read_summaries(log_dir: str) -> list[tuple[int, object]]:
    """``[(step, summary value proto), ...]`` from the TFRecord-framed Event protos in ``log_dir``."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            out.extend((event.step, v) for v in event.summary.value)
    return out


def scalars(log_dir: str) -> dict:
    """``{tag: [(step, value), ...]}`` of the scalar summaries."""
    out: dict = {}
    for step, v in read_summaries(log_dir):
        if v.HasField("simple_value"):
            out.setdefault(v.tag, []).append((step, v.simple_value))
    return out


def images(log_dir: str) -> dict:
    """``{tag: [(step, (height, width)), ...]}`` of the image summaries."""
    out: dict = {}
    for step, v in read_summaries(log_dir):
        if v.HasField("image"):
            out.setdefault(v.tag, []).append((step, (v.image.height, v.image.width)))
    return out
