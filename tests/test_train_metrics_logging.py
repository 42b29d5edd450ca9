"""Training metrics reach stdout, the JSONL log and TensorBoard event files (read back here)."""
from __future__ import annotations

import json

import pytest

from cogvideox_jax.train.metrics_logging import MetricsLogger
from tests.tensorboard_events import scalars as tb_scalars


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
    tb = tb_scalars(str(tmp_path))
    assert tb["train/loss"] == [(1, 0.5), (2, 0.25)]
    assert [s for s, _ in tb["train/tokens_per_s"]] == [1, 2]
    assert tb["train/tokens_per_s"][0][1] == pytest.approx(500.0)
