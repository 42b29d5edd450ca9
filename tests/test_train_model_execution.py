"""``TrainConfig.execution``: the transformer preset's execution options (scan, remat, attention
backend, matmul dtype) set from a training config / ``--set``, without touching the preset."""
import dataclasses

import pytest

from configs.train_config import ModelExecutionConfig, TrainConfig, apply_overrides
from configs.transformer import EXECUTION_FIELDS, get_preset
from cogvideox_jax.train.model_factory import build_model
from cogvideox_jax.train.trainer import Trainer


def test_unset_options_keep_the_preset():
    assert ModelExecutionConfig().overrides() == {}
    # only options that leave the weights' meaning alone (sequence_parallel: the Trainer hands its mesh
    # to the transformer; tests/test_train_sequence_parallel.py)
    assert set(f.name for f in dataclasses.fields(ModelExecutionConfig)) <= set(EXECUTION_FIELDS)
    assert build_model(TrainConfig(model="tiny-5b")).module.config == get_preset("tiny-5b")


def test_set_options_reach_the_built_transformer_and_nothing_else():
    cfg = apply_overrides(TrainConfig(model="tiny-5b"), ["execution.matmul_dtype=bfloat16",
                                                         "execution.scan_layers=false",
                                                         "execution.remat_policy=full"])
    assert cfg.execution.overrides() == {"matmul_dtype": "bfloat16", "scan_layers": False, "remat_policy": "full"}
    built = build_model(cfg).module.config
    assert (built.matmul_dtype, built.scan_layers, built.remat_policy) == ("bfloat16", False, "full")
    preset = get_preset("tiny-5b")
    assert dataclasses.replace(built, matmul_dtype=preset.matmul_dtype, scan_layers=preset.scan_layers,
                               remat_policy=preset.remat_policy) == preset
    # "none" on the command line is the option unset, not a value
    assert apply_overrides(cfg, ["execution.matmul_dtype=none"]).execution.matmul_dtype is None


def test_bad_or_misplaced_options_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="matmul_dtype"):
        build_model(apply_overrides(TrainConfig(model="tiny-5b"), ["execution.matmul_dtype=fp8"]))
    with pytest.raises(ValueError, match="standin"):
        build_model(apply_overrides(TrainConfig(model="standin"), ["execution.matmul_dtype=bfloat16"]))
    cfg = apply_overrides(TrainConfig(model="tiny-5b", mesh="data=-1"), ["execution.matmul_dtype=bfloat16"])
    spec = build_model(TrainConfig(model="tiny-5b"))
    with pytest.raises(ValueError, match="model_spec"):
        Trainer(cfg, str(tmp_path), model_spec=spec, progress=False)
