"""LoRA that travels: a LoRA trained here, exported with ``export --lora-out``, gives in diffusers
(``load_lora_weights``) the video ``from_pretrained(..., lora=FILE)`` gives here; a LoRA made by
diffusers / PEFT loads here and matches diffusers; ``--init-lora`` continues a published LoRA; a LoRA
run's checkpoints hold no base weights and resume bit for bit (refusing a different base)."""
import dataclasses
import os

import jax
import numpy as np
import pytest

from configs.train_config import CheckpointConfig, DataConfig, LoraConfig, OptimizerConfig, StageConfig, TrainConfig
from cogvideox_jax.cli import main
from cogvideox_jax.pipeline import CogVideoXPipeline
from cogvideox_jax.train import lora as lora_lib
from cogvideox_jax.train.trainer import Trainer
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder, to_torch_latents

FRAMES, HEIGHT, WIDTH, STEPS = 9, 32, 48, 2
PROMPT = "a small red circle moves to the left"


@pytest.fixture(scope="module")
def pipeline_2b(tmp_path_factory):
    return make_pipeline_folder(str(tmp_path_factory.mktemp("pipe")), "2b")  # DDIM: deterministic sampling


def lora_cfg(**kw):
    base = TrainConfig(model="auto", mesh="data=2,fsdp=4", batch_size=8, text_len=226, text_dropout=0.0,
                       lora=LoraConfig(rank=4, alpha=8.0), optimizer=OptimizerConfig(lr=3e-2, warmup_steps=1),
                       stages=(StageConfig(steps=3, num_frames=5, height=16, width=16),),
                       checkpoint=CheckpointConfig(every_steps=3, keep_last=2, keep_best=0, async_save=False),
                       data=DataConfig(num_synthetic=8), log_every=1)
    return dataclasses.replace(base, **kw)


def latents_for(seed=0):
    return np.random.default_rng(seed).standard_normal((1, (FRAMES - 1) // 4 + 1, HEIGHT // 8, WIDTH // 8, 4)
                                                       ).astype(np.float32)


def ours(pipe, latents):
    return pipe(PROMPT, num_frames=FRAMES, height=HEIGHT, width=WIDTH, num_inference_steps=STEPS, latents=latents,
                progress=False)


def theirs(ref_pipe, latents):
    out = ref_pipe(prompt=PROMPT, negative_prompt="", num_frames=FRAMES, height=HEIGHT, width=WIDTH,
                   num_inference_steps=STEPS, guidance_scale=6.0, latents=to_torch_latents(latents),
                   output_type="np").frames
    return np.asarray(out, np.float32)


def test_trained_lora_exports_to_diffusers_and_loads_back(tmp_path, pipeline_2b):
    folder, ref_pipe = pipeline_2b
    run = tmp_path / "run"
    tr = Trainer(lora_cfg(init_from=folder), str(run), progress=False)
    tr.fit()
    tr.close()
    # the checkpoint holds the adapters and their optimizer state, not the frozen base
    import orbax.checkpoint as ocp

    with ocp.PyTreeCheckpointer() as ckptr:
        tree = ckptr.metadata(str(run / "checkpoints" / "3" / "state")).item_metadata.tree
    assert tree["frozen"] == {} and sorted(tree["params"]) == sorted(tr.state.params)

    assert main(["export", "--train-workdir", str(run), "--lora-out", str(tmp_path / "lora")]) == 0
    lora_file = str(tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    latents = latents_for()
    base_video = ours(CogVideoXPipeline.from_pretrained(folder), latents)
    got = ours(CogVideoXPipeline.from_pretrained(folder, lora=lora_file), latents)
    ref_pipe.load_lora_weights(lora_file, adapter_name="trained")
    try:
        want = theirs(ref_pipe, latents)
    finally:
        ref_pipe.unload_lora_weights()
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    assert np.abs(got - base_video).max() > 2e-2  # the LoRA changes the video
    # the CLI: sample --lora FILE (--lora-scale 0.5 twice = the full LoRA)
    out = tmp_path / "lora.mp4"
    assert main(["sample", "--diffusers", folder, "--lora", lora_file, "--lora", lora_file, "--lora-scale", "0.5",
                 "--prompt", PROMPT, "--steps", "1", "--frames", str(FRAMES), "--height", str(HEIGHT),
                 "--width", str(WIDTH), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["sample", "--diffusers", folder, "--lora", str(tmp_path / "missing.safetensors"), "--prompt", PROMPT,
              "--out", str(tmp_path / "x.mp4")])
    # the same weights merged by the trainer: the full-model export samples the same video here
    assert main(["export", "--train-workdir", str(run), "--checkpoint-out", str(tmp_path / "merged")]) == 0
    np.testing.assert_allclose(ours(CogVideoXPipeline.from_pretrained(str(tmp_path / "merged")), latents), got,
                               atol=1e-5, rtol=0)


def test_diffusers_lora_loads_here_and_continues_training(tmp_path, pipeline_2b):
    """A LoRA made with PEFT on diffusers' transformer (alpha != rank), saved with save_lora_weights:
    `from_pretrained(lora=)` gives diffusers' video with it; `--init-lora` starts from exactly it."""
    import torch
    from diffusers import CogVideoXPipeline as TorchPipeline
    from peft import LoraConfig as PeftLoraConfig
    from peft.utils import get_peft_model_state_dict

    folder, _ = pipeline_2b
    ref_pipe = TorchPipeline.from_pretrained(folder)
    ref_pipe.transformer.add_adapter(PeftLoraConfig(r=4, lora_alpha=2, init_lora_weights=False,
                                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, p in ref_pipe.transformer.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.3)
    lora_dir = str(tmp_path / "published")
    TorchPipeline.save_lora_weights(lora_dir, transformer_lora_layers=get_peft_model_state_dict(ref_pipe.transformer),
                                    transformer_lora_adapter_metadata=ref_pipe.transformer.peft_config["default"].to_dict())
    latents = latents_for(1)
    want = theirs(ref_pipe, latents)
    got = ours(CogVideoXPipeline.from_pretrained(folder, lora=lora_dir), latents)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    assert np.abs(got - ours(CogVideoXPipeline.from_pretrained(folder), latents)).max() > 2e-2
    # half the LoRA's strength, twice: the full LoRA again
    twice = CogVideoXPipeline.from_pretrained(folder, lora=[lora_dir, lora_dir], lora_scale=[0.5, 0.5])
    np.testing.assert_allclose(ours(twice, latents), got, atol=1e-4, rtol=0)

    # train --init BASE --init-lora FILE: the run starts from the published LoRA (another alpha / rank scale)
    from cogvideox_jax.convert.lora_files import merge_lora_files

    tr = Trainer(lora_cfg(init_from=folder, init_lora=lora_dir, lora=LoraConfig(rank=4, alpha=16.0)),
                 str(tmp_path / "run"), progress=False)
    tr.build_state()
    start = jax.device_get(lora_lib.merge_lora(tr.state.frozen, tr.state.params, tr.lora_scale))
    want_params = merge_lora_files(jax.device_get(tr.state.frozen), tr.spec.module.config, [(lora_dir, 1.0)])
    for a, b in zip(jax.tree_util.tree_leaves(start), jax.tree_util.tree_leaves(want_params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    tr.close()
    with pytest.raises(ValueError, match="rank"):
        Trainer(lora_cfg(init_from=folder, init_lora=lora_dir, lora=LoraConfig(rank=8, alpha=8.0)),
                str(tmp_path / "run8"), progress=False).build_state()


def test_lora_resume_without_base_in_checkpoint_is_bit_exact(tmp_path):
    cfg = lora_cfg(model="tiny-5b", text_len=8, ema_decay=0.9,
                   stages=(StageConfig(steps=4, num_frames=5, height=16, width=16),),
                   checkpoint=CheckpointConfig(every_steps=2, keep_last=2, keep_best=0, async_save=False))
    a = Trainer(cfg, str(tmp_path / "a"), progress=False)
    rec_a = a.fit()
    a.close()
    b = Trainer(cfg, str(tmp_path / "b"), progress=False)
    b.fit(max_steps=2)
    b.close()
    b = Trainer(cfg, str(tmp_path / "b"), progress=False)
    rec_b = b.fit()
    b.close()
    assert b.restored_step == 2
    assert [r["loss"] for r in rec_a[2:]] == [r["loss"] for r in rec_b]
    for x, y in zip(jax.tree_util.tree_leaves(jax.device_get((a.state.params, a.state.opt_state, a.state.ema))),
                    jax.tree_util.tree_leaves(jax.device_get((b.state.params, b.state.opt_state, b.state.ema)))):
        np.testing.assert_array_equal(x, y)
    # the checkpoints are the adapters' size, not the base model's
    base_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(jax.device_get(b.state.frozen)))
    lora_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(jax.device_get(b.state.params)))
    state_dir = tmp_path / "b" / "checkpoints" / "4" / "state"
    stored = sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())
    assert stored < base_bytes + 3 * lora_bytes
    # another base (another seed's random init) is refused
    with pytest.raises(ValueError, match="fingerprint"):
        Trainer(dataclasses.replace(cfg, seed=1), str(tmp_path / "b"), progress=False).fit()


def test_lora_keys_that_match_nothing_are_an_error(tmp_path, pipeline_2b):
    from safetensors.numpy import save_file

    folder, _ = pipeline_2b
    path = str(tmp_path / "bad.safetensors")
    rng = np.random.default_rng(0)
    save_file({"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": rng.standard_normal((2, 32), np.float32),
               "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight": rng.standard_normal((32, 2), np.float32),
               "transformer.transformer_blocks.9.attn1.to_q.lora_A.weight": rng.standard_normal((2, 32), np.float32),
               "transformer.transformer_blocks.9.attn1.to_q.lora_B.weight": rng.standard_normal((32, 2), np.float32)},
              path)
    with pytest.raises(ValueError, match="transformer_blocks.9.attn1.to_q"):
        CogVideoXPipeline.from_pretrained(folder, lora=path)
    pipe = CogVideoXPipeline.from_pretrained(folder, lora=path, lora_ignore_unmatched=True)
    assert os.path.exists(path) and pipe.components.transformer_params is not None
