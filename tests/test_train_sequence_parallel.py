"""Sequence-parallel training (``TrainConfig.execution.sequence_parallel``): on a mesh with a ``sequence``
axis the train step's attention runs Ulysses / ring inside ``shard_map`` (the Trainer hands the mesh to
the transformer), and one step gives the single-device step's loss, gradients and updated parameters.

Tiny 5b-style (RoPE) and 1.5-style (``patch_size_t=2``: the latent frames are padded in the step)
transformers with 4 heads, so Ulysses divides a sequence degree of 4. Timesteps are drawn plainly
uniform (``explicit_uniform_sampling=False``): SAT's explicit-uniform draw depends on the number of
data shards, which is not what is compared here.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from configs import transformer as transformer_presets
from configs.train_config import (CheckpointConfig, DataConfig, LoraConfig, ModelExecutionConfig, OptimizerConfig,
                                  StageConfig, TrainConfig)
from cogvideox_jax.parallel.mesh import local_batch_divisor, make_mesh
from cogvideox_jax.parallel.sharded_apply import sharding_context
from cogvideox_jax.train.train_step import make_loss_and_grads
from cogvideox_jax.train.trainer import Trainer

_TINY = dict(num_attention_heads=4, attention_head_dim=16, num_layers=2, in_channels=4, out_channels=4,
             time_embed_dim=16, text_embed_dim=16, sample_height=4, sample_width=6, sample_frames=9,
             max_text_seq_length=8, use_rotary_positional_embeddings=True)
MODELS = {
    "tiny-sp-5b": (transformer_presets.TransformerConfig(**_TINY),
                   StageConfig(steps=3, num_frames=5, height=32, width=48)),          # latents 2 x 4 x 6
    "tiny-sp-1.5": (transformer_presets.TransformerConfig(**_TINY, patch_size_t=2, patch_bias=False),
                    StageConfig(steps=3, num_frames=9, height=32, width=48)),         # 3 latent frames -> 4
}


@pytest.fixture(autouse=True)
def _tiny_presets(monkeypatch):
    for name, (config, _) in MODELS.items():
        monkeypatch.setitem(transformer_presets.PRESETS, name, config)


def _cfg(model: str, mesh: str = "data=1", scheme: str | None = None, **kw) -> TrainConfig:
    execution = kw.pop("execution", {})
    return TrainConfig(model=model, mesh=mesh, batch_size=2, text_len=8, text_dropout=0.0,
                       explicit_uniform_sampling=False, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=0),
                       stages=(MODELS[model][1],), data=DataConfig(num_synthetic=4), log_every=1,
                       checkpoint=CheckpointConfig(every_steps=1, keep_last=3, keep_best=0, async_save=False),
                       execution=ModelExecutionConfig(sequence_parallel=scheme, **execution), **kw)


def _mesh(spec: str):
    n = int(np.prod([int(item.split("=")[1]) for item in spec.split(",")]))
    return make_mesh(spec, devices=jax.devices()[:n])


_BASES: dict = {}


def _base_params(model: str) -> dict:
    """Host params of ``model`` with every leaf random (the preset's zero-initialised adaLN and output
    layers would leave most gradients exactly zero, and Adam's first step turns a gradient of 1e-12
    into a full-size update)."""
    if model not in _BASES:
        from cogvideox_jax.train.init_source import init_probe
        from cogvideox_jax.train.model_factory import abstract_boxed_params, build_model

        cfg = _cfg(model)
        spec = build_model(cfg)
        shapes = jax.tree_util.tree_leaves_with_path(
            __import__("flax").linen.unbox(abstract_boxed_params(spec, *init_probe(spec, cfg))))
        rng = np.random.default_rng(0)
        leaves = []
        for path, leaf in shapes:
            name = str(getattr(path[-1], "key", path[-1]))
            fan_in = int(np.prod(leaf.shape[:-1])) if name == "kernel" and leaf.ndim > 1 else 400
            x = rng.standard_normal(leaf.shape) / np.sqrt(fan_in) + (1.0 if name == "scale" else 0.0)
            leaves.append(x.astype(np.float32))
        treedef = jax.tree_util.tree_structure(__import__("flax").linen.unbox(
            abstract_boxed_params(spec, *init_probe(spec, cfg))))
        _BASES[model] = jax.tree_util.tree_unflatten(treedef, leaves)
    return _BASES[model]


def _one_step(cfg: TrainConfig, workdir, grads: bool = False) -> dict:
    """Loss, grad norm and updated trainable params (and with ``grads`` the gradients) of one step
    from the same random weights."""
    tr = Trainer(cfg, str(workdir), mesh=_mesh(cfg.mesh), base_params=_base_params(cfg.model), progress=False,
                 stdout=False)
    try:
        state = tr.build_state()
        stage = tr._stage(0, 0, None)
        batch = tr._device_batch(next(stage.data), stage.step_fn.batch_shardings)
        out = {"module": tr.spec.module}
        if grads:
            fn = jax.jit(make_loss_and_grads(tr.spec.module, tr.step_options(), local_batch_divisor(tr.mesh)))
            with sharding_context(tr.mesh):
                out["grads"] = jax.device_get(fn(state, batch)[1])
        new, metrics = stage.step_fn(state, batch)
        return {**out, "loss": float(metrics["loss"]), "metrics": jax.device_get(metrics),
                "params": jax.device_get(new.params)}
    finally:
        tr.close()


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _assert_same_step(got: dict, ref: dict, tol: float = 1e-5):
    assert _rel(got["loss"], ref["loss"]) <= tol, (got["loss"], ref["loss"])
    assert _rel(got["metrics"]["grad_norm"], ref["metrics"]["grad_norm"]) <= tol
    for name in ("grads", "params"):
        if name not in got:
            continue
        flat_g = jax.tree_util.tree_leaves_with_path(got[name])
        flat_r = jax.tree_util.tree_leaves(ref[name])
        assert len(flat_g) == len(flat_r)
        for (path, g), r in zip(flat_g, flat_r):
            assert _rel(g, r) <= tol, (name, jax.tree_util.keystr(path), _rel(g, r))


_REFS: dict = {}


def _reference(model: str, tmp_path_factory) -> dict:
    if model not in _REFS:
        _REFS[model] = _one_step(_cfg(model), tmp_path_factory.mktemp("ref"), grads=True)
    return _REFS[model]


CASES = [  # model, mesh, scheme
    ("tiny-sp-5b", "fsdp=2,sequence=4", "ulysses"),
    ("tiny-sp-1.5", "sequence=4", "ring"),
    pytest.param("tiny-sp-5b", "sequence=4", "ring", marks=pytest.mark.slow),
    pytest.param("tiny-sp-5b", "sequence=4", "ulysses", marks=pytest.mark.slow),
    pytest.param("tiny-sp-5b", "fsdp=2,sequence=4", "ring", marks=pytest.mark.slow),
    pytest.param("tiny-sp-1.5", "sequence=4", "ulysses", marks=pytest.mark.slow),
    pytest.param("tiny-sp-1.5", "fsdp=2,sequence=4", "ulysses", marks=pytest.mark.slow),
    pytest.param("tiny-sp-1.5", "fsdp=2,sequence=4", "ring", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("model,mesh,scheme", CASES)
def test_sequence_parallel_step_equals_single_device(model, mesh, scheme, tmp_path, tmp_path_factory):
    ref = _reference(model, tmp_path_factory)
    got = _one_step(_cfg(model, mesh, scheme), tmp_path, grads=True)
    module = got["module"]
    # the mesh reached the transformer, with the scheme: its attention runs in shard_map over `sequence`
    assert module.config.sequence_parallel == scheme and module.mesh is not None
    assert module.mesh.shape["sequence"] == 4
    _assert_same_step(got, ref)


def test_sequence_parallel_with_remat_bf16_ema_and_accumulation(tmp_path, tmp_path_factory):
    """Remat + scan + bf16-operand matmuls + EMA + two accumulation micro-batches: still the
    single-device step (the same options there). On sequence=4 alone: with fsdp as well, FSDP's
    partial-sum order moves fp32 sums by ~1e-7, which the bf16 rounding of the next matmul's operands
    turns into ~3e-4 differences, with or without sequence parallelism (the fp32 fsdp cases are above)."""
    kw = dict(ema_decay=0.9, execution={"remat_policy": "full", "scan_layers": True, "matmul_dtype": "bfloat16"})
    cfg = _cfg("tiny-sp-5b", **kw)
    cfg = dataclasses.replace(cfg, batch_size=4, optimizer=dataclasses.replace(cfg.optimizer, grad_accum_steps=2))
    ref = _one_step(cfg, tmp_path_factory.mktemp("ref-opts"))
    sp = dataclasses.replace(cfg, mesh="sequence=4",
                             execution=dataclasses.replace(cfg.execution, sequence_parallel="ulysses"))
    _assert_same_step(_one_step(sp, tmp_path), ref)


def test_sequence_parallel_lora(tmp_path, tmp_path_factory):
    """A LoRA run: the adapters' gradients and update through sequence-parallel attention are exact."""
    cfg = _cfg("tiny-sp-1.5", lora=LoraConfig(rank=2, alpha=4.0))
    ref = _one_step(cfg, tmp_path_factory.mktemp("ref-lora"))
    got = _one_step(dataclasses.replace(cfg, mesh="sequence=4",
                                        execution=ModelExecutionConfig(sequence_parallel="ulysses")), tmp_path)
    assert sorted(got["params"]) == sorted(ref["params"]) and len(got["params"]) == 4
    _assert_same_step(got, ref)


def test_resume_across_meshes(tmp_path):
    """Two steps on fsdp=2,sequence=4 (ring), checkpointed, then the third restored onto
    data=2,fsdp=2,tensor=2 without sequence parallelism: the same weights as three uninterrupted
    single-device steps."""
    model = "tiny-sp-5b"
    cfg = lambda *a: dataclasses.replace(_cfg(model, *a), batch_size=4)  # noqa: E731
    kw = dict(base_params=_base_params(model), progress=False, stdout=False)
    straight = Trainer(cfg(), str(tmp_path / "straight"), mesh=_mesh("data=1"), **kw)
    straight_recs = straight.fit(max_steps=3)
    want = jax.device_get(straight.state.params)
    straight.close()
    first = Trainer(cfg("fsdp=2,sequence=4", "ring"), str(tmp_path / "moved"), mesh=_mesh("fsdp=2,sequence=4"), **kw)
    first.fit(max_steps=2)
    first.close()
    second = Trainer(cfg("data=2,fsdp=2,tensor=2"), str(tmp_path / "moved"), mesh=_mesh("data=2,fsdp=2,tensor=2"),
                     **kw)
    recs = second.fit(max_steps=3)
    assert second.restored_step == 2 and [r["step"] for r in recs] == [3]
    got = jax.device_get(second.state.params)
    second.close()
    assert _rel(recs[-1]["loss"], straight_recs[-1]["loss"]) <= 1e-5
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert _rel(g, w) <= 1e-5


def test_sequence_parallel_is_an_execution_option():
    from configs.train_config import apply_overrides
    from cogvideox_jax.train.model_factory import build_model

    cfg = apply_overrides(TrainConfig(model="tiny-5b"), ["execution.sequence_parallel=ring"])
    assert cfg.execution.overrides() == {"sequence_parallel": "ring"}
    mesh = _mesh("sequence=2")
    spec = build_model(cfg, mesh=mesh)
    assert spec.module.config.sequence_parallel == "ring" and spec.module.mesh is mesh
    with pytest.raises(ValueError, match="sequence_parallel"):
        build_model(apply_overrides(TrainConfig(model="tiny-5b"), ["execution.sequence_parallel=zigzag"]))
