"""Training metrics reach stdout, the JSONL log and TensorBoard event files (read back here)."""
from __future__ import annotations

import glob
import json
import os
import struct

import pytest

from cogvideox_jax.train.metrics_logging import MetricsLogger


def _tb_scalars(log_dir: str) -> dict:
    """{tag: [(step, value), ...]} from the TFRecord-framed Event protos tensorboardX wrote."""
    from tensorboardX.proto import event_pb2

    out: dict = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_metrics_go_to_stdout_jsonl_and_tensorboard(tmp_path, capsys):
    log = MetricsLogger(str(tmp_path), flops_per_step=2e12, tokens_per_step=1000, peak_flops=1e14, num_devices=2)
    assert log.tensorboard
    log.log(1, {"loss": 0.5, "lr": 1e-4}, step_time=2.0)
    log.log(2, {"loss": 0.25, "lr": 2e-4}, step_time=1.0)
    log.close()
    out = capsys.readouterr().out
    assert "step 2 | loss 0.25" in out and "tokens_per_s 1000" in out
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["loss"] for r in rows] == [0.5, 0.25]
    assert rows[1]["mfu"] == pytest.approx(2e12 / 1.0 / (1e14 * 2))
    tb = _tb_scalars(str(tmp_path))
    assert tb["train/loss"] == [(1, 0.5), (2, 0.25)]
    assert [s for s, _ in tb["train/tokens_per_s"]] == [1, 2]
    assert tb["train/tokens_per_s"][0][1] == pytest.approx(500.0)
