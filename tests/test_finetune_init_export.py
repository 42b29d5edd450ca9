"""Fine-tuning a public checkpoint end to end on tiny random diffusers folders: ``--init`` starts from the
source weights exactly (every variant, every kind of source), a wrong ``--init`` is a clear error before
anything is compiled or a workdir is touched, validation samples are written while training, and
``export --train-workdir`` gets the model out (diffusers folder that diffusers loads, pipeline
checkpoint that ``sample`` loads; a learning-rate-0 run holds the init weights bit for bit)."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from configs.train_config import CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig, ValidationConfig
from cogvideox_jax.cli import main
from cogvideox_jax.convert.safetensors_io import read_folder
from cogvideox_jax.train.init_source import InitError
from cogvideox_jax.train.trainer import Trainer
from tests.tensorboard_events import images as tb_images
from cogvideox_jax_oracles.transformer_oracle import VARIANTS, make_torch_transformer

MESH = "data=2,fsdp=4"


def init_cfg(init_from, **kw):
    base = TrainConfig(model="auto", init_from=str(init_from), mesh=MESH, batch_size=8, text_len=226, text_dropout=0.0,
                       ema_decay=0.0, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1),
                       stages=(StageConfig(steps=2, num_frames=5, height=16, width=16),),
                       checkpoint=CheckpointConfig(every_steps=2, keep_last=2, keep_best=0, async_save=False),
                       data=DataConfig(num_synthetic=8), log_every=1)
    return base.__class__(**{**base.__dict__, **kw})


def host(tree):
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape, path
        np.testing.assert_array_equal(x, y, err_msg=str(path))


@pytest.fixture(scope="module")
def pipeline_5b(tmp_path_factory):
    from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder

    folder, pipe = make_pipeline_folder(str(tmp_path_factory.mktemp("pipe")), "5b")
    return folder, pipe


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_init_from_transformer_folder_reproduces_weights(tmp_path, variant):
    """Every variant: the state's params are the folder's weights, in both block layouts and in bf16."""
    from cogvideox_jax.convert.transformer import load_transformer

    folder = str(tmp_path / "transformer")
    make_torch_transformer(variant).save_pretrained(folder)
    frames = 9 if variant.startswith("1.5") else 5  # 1.5: 3 latent frames, padded to patch_size_t = 2 in training
    cfg = init_cfg(folder, text_len=7, stages=(StageConfig(steps=1, num_frames=frames, height=32, width=48),))
    _, want = load_transformer(folder)
    tr = Trainer(cfg, str(tmp_path / "run"), progress=False)
    from configs.transformer import TransformerConfig  # the architecture is the folder's

    folder_cfg = TransformerConfig.from_diffusers_config(json.load(open(os.path.join(folder, "config.json"))))
    assert tr.spec.module.config.to_diffusers_config() == folder_cfg.to_diffusers_config()
    tr.build_state()
    assert_trees_equal(host(tr.state.params), want)
    if variant == "1.5":
        assert np.isfinite(tr.fit()[-1]["loss"])
    tr.close()
    if variant == "5b":  # unrolled blocks and bf16 params: the same weights, relaid and cast
        from configs.train_config import ModelExecutionConfig

        cfg = cfg.__class__(**{**cfg.__dict__, "param_dtype": "bfloat16",
                               "execution": ModelExecutionConfig(scan_layers=False)})
        _, want = load_transformer(folder, scan_layers=False, param_dtype="bfloat16")
        tr = Trainer(cfg, str(tmp_path / "run16"), progress=False)
        tr.build_state()
        assert_trees_equal(host(tr.state.params), want)
        tr.close()


def test_init_errors_are_clear_and_leave_workdir_alone(tmp_path, pipeline_5b):
    folder, _ = pipeline_5b
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "7").mkdir(parents=True)
    (workdir / "checkpoints" / "7" / "marker").write_text("keep me")
    before = sorted(str(p) for p in workdir.rglob("*"))

    def fails(cfg, *words):
        with pytest.raises((InitError, ValueError, FileNotFoundError)) as e:
            Trainer(cfg, str(workdir), progress=False)
        for w in words:
            assert w in str(e.value), str(e.value)
        assert sorted(str(p) for p in workdir.rglob("*")) == before  # nothing created, cleaned or removed

    fails(init_cfg(tmp_path / "nowhere"), "no such file or folder")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    fails(init_cfg(tmp_path / "other"), "UNet2DModel", "CogVideoXTransformer3DModel")
    (tmp_path / "empty").mkdir()
    fails(init_cfg(tmp_path / "empty"), "model_index.json", "run.json")
    fails(init_cfg(folder, model="tiny-5b"), "tiny-5b", "max_text_seq_length", "model=auto")
    fails(init_cfg(folder, model="cogvideox-5b"), "num_layers: preset 42, init 2")
    # truncated weights: a clear error naming the file, before any compile
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    weights = bad / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    tr = Trainer(init_cfg(bad), str(tmp_path / "run2"), progress=False)
    with pytest.raises(Exception, match="diffusion_pytorch_model.safetensors"):
        tr.build_state()
    tr.close()


def test_finetune_validate_export_and_sample(tmp_path, pipeline_5b, capsys):
    """A full fine-tune from a pipeline root, with validation every 2 steps and EMA: the videos and the
    TensorBoard strips are written; the exported diffusers folder loads in diffusers and its transformer
    gives our model's output on the run's (EMA) weights; the exported checkpoint samples."""
    import torch
    from diffusers import CogVideoXPipeline as TorchPipeline

    from cogvideox_jax.train.run_workdir import model_weights
    from cogvideox_jax_oracles.transformer_oracle import reference_forward

    folder, _ = pipeline_5b
    run = tmp_path / "run"
    val = ValidationConfig(every_steps=2, prompts=("a red fox, running", "a cat"), steps=2, num_frames=9, height=32,
                           width=48)
    tr = Trainer(init_cfg(folder, ema_decay=0.5, stages=(StageConfig(steps=4, num_frames=5, height=16, width=16),),
                          validation=val), str(run), progress=False)
    tr.fit()
    tr.close()
    for step in (2, 4):
        assert sorted(os.listdir(run / "validation" / f"step_{step}")) == ["0.mp4", "1.mp4"]
    events = [json.loads(x) for x in open(run / "logs" / "metrics.jsonl")]
    assert [e["step"] for e in events if e.get("event") == "validation"] == [2, 4]
    assert all(e["validation_time_s"] > 0 for e in events if e.get("event") == "validation")
    strips = tb_images(str(run / "logs"))
    assert strips["validation/0"] == strips["validation/1"] == [(2, (32, 8 * 48)), (4, (32, 8 * 48))]

    out_d, out_c = tmp_path / "exp_diffusers", tmp_path / "exp_ckpt"
    assert main(["export", "--train-workdir", str(run), "--diffusers-out", str(out_d),
                 "--checkpoint-out", str(out_c)]) == 0
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    tcfg, ours, info = model_weights(str(run))
    assert info["weights"] == "ema" and info["step"] == 4
    back = TorchPipeline.from_pretrained(str(out_d))
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((2, 2, 2, 2, 4)).astype(np.float32)
    txt = rng.standard_normal((2, 226, 32)).astype(np.float32)
    ts = np.array([10, 700], np.int64)
    want = reference_forward(back.transformer.float(), lat, txt, ts)
    module = tr.spec.module
    got = np.asarray(module.apply({"params": ours}, lat, txt, ts))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert not np.allclose(got, np.asarray(module.apply({"params": host(load_init(folder, module))}, lat, txt, ts)))
    # the VAE, T5 and tokenizer are the init pipeline's
    assert torch.equal(back.vae.decoder.conv_out.conv.weight, TorchPipeline.from_pretrained(folder).vae.decoder.conv_out.conv.weight)

    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(out_c), "--prompt", "a fox", "--steps", "2", "--frames", "9",
                 "--height", "32", "--width", "48", "--out", str(tmp_path / "v.mp4")]) == 0
    assert (tmp_path / "v.mp4").stat().st_size > 0
    # the run's latest step, as `--init WORKDIR` sees it: the exported model
    tr2 = Trainer(init_cfg(run), str(tmp_path / "run2"), progress=False)
    tr2.build_state()
    assert_trees_equal(host(tr2.state.params), ours)
    tr2.close()


def load_init(folder, module):
    from cogvideox_jax.convert.transformer import transformer_params_from_state

    return transformer_params_from_state(read_folder(os.path.join(folder, "transformer")), module, "test")


def test_lr0_export_holds_init_weights_bit_for_bit(tmp_path, pipeline_5b):
    """A run that cannot move (lr 0, EMA on) exports exactly the source weights, from every init kind:
    the pipeline root and the `convert` checkpoint of it."""
    folder, _ = pipeline_5b
    ckpt = tmp_path / "ckpt"
    assert main(["convert", "--diffusers", folder, "--out", str(ckpt)]) == 0
    src = read_folder(os.path.join(folder, "transformer"))
    for name, init in (("root", folder), ("ckpt", str(ckpt))):
        run = tmp_path / f"run_{name}"
        cfg = init_cfg(init, ema_decay=0.9, optimizer=OptimizerConfig(lr=0.0, warmup_steps=1),
                       stages=(StageConfig(steps=1, num_frames=5, height=16, width=16),),
                       checkpoint=CheckpointConfig(every_steps=1, keep_last=1, keep_best=0, async_save=False))
        tr = Trainer(cfg, str(run), progress=False)
        tr.fit()
        tr.close()
        out = tmp_path / f"exp_{name}"
        assert main(["export", "--train-workdir", str(run), "--diffusers-out", str(out)]) == 0
        got = read_folder(str(out / "transformer"))
        assert sorted(got) == sorted(src)
        for k in src:
            np.testing.assert_array_equal(got[k], src[k], err_msg=k)
        assert json.load(open(out / "transformer" / "config.json")) == {
            k: v for k, v in json.load(open(os.path.join(folder, "transformer", "config.json"))).items()
            if not k.startswith("_") or k == "_class_name"}
    # a second export to the same place is refused before anything is read
    with pytest.raises(SystemExit, match="exists"):
        main(["export", "--train-workdir", str(tmp_path / "run_root"), "--diffusers-out", str(tmp_path / "exp_root")])


def test_init_from_safetensors_reads_only_each_devices_slices(tmp_path, monkeypatch):
    """With FSDP over 8 devices each device's shard is read on its own: no read of a sharded weight
    covers the whole tensor (on a pod, a process reads only what its devices hold)."""
    from cogvideox_jax.convert.safetensors_io import SafetensorsTensors

    folder = str(tmp_path / "transformer")
    make_torch_transformer("5b").save_pretrained(folder)
    reads = []
    original = SafetensorsTensors.read_slice

    def recording(self, key, index):
        out = original(self, key, index)
        reads.append((key, out.size, int(np.prod(self.shape(key)))))
        return out

    monkeypatch.setattr(SafetensorsTensors, "read_slice", recording)
    cfg = init_cfg(folder, mesh="fsdp=8", text_len=7, stages=(StageConfig(steps=1, num_frames=5, height=32, width=48),))
    tr = Trainer(cfg, str(tmp_path / "run"), progress=False)
    tr.build_state()
    tr.close()
    q = [(size, full) for key, size, full in reads if key == "transformer_blocks.0.attn1.to_q.weight"]
    assert len(q) == 8 and all(size * 8 == full for size, full in q)  # (32, 32) split 8 ways
