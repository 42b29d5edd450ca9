"""The embedded-default-model recipe (``cogvideox-jax train-shapes``) end to end at a toy size:
dataset -> tokenizer -> T5 -> VAE training -> decoder fine-tune -> latents -> transformer training -> checkpoint -> eval,
then resume (every stage skipped), an interrupted transformer stage resumed from its checkpoint, and sampling from the
written checkpoint through the CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import chex
import jax
import numpy as np
import pytest

from cogvideox_jax.shapes.config import DatasetConfig, EvalConfig, SamplingConfig, VAEPhase, get_config
from configs.train_config import ModelExecutionConfig, StageConfig
from configs.vae import VAEConfig


def _toy_recipe():
    r = get_config()
    tt = r.transformer_train
    return dataclasses.replace(
        r,
        dataset=DatasetConfig(num_train=8, num_heldout=4, num_frames=9, size=64, seed=3),
        vae=VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                      sample_height=64, sample_width=64, scaling_factor=1.0),
        vae_train=dataclasses.replace(r.vae_train, phases=(VAEPhase(3, 2, 1, 32), VAEPhase(1, 1, 9, 64)),
                                      eval_clips=2, log_every=1),
        vae_decoder_train=dataclasses.replace(r.vae_decoder_train, phases=(VAEPhase(2, 1, 9, 64, train_encoder=False),),
                                              eval_clips=2, log_every=1),
        transformer=dataclasses.replace(r.transformer, in_channels=4, out_channels=4, num_layers=1),
        transformer_train=dataclasses.replace(
            tt, batch_size=8, stages=(StageConfig(name="toy", steps=3, num_frames=9, height=64, width=64),),
            checkpoint=dataclasses.replace(tt.checkpoint, every_steps=3, async_save=False), log_every=1),
        sampling=SamplingConfig(steps=2, guidance_scale=6.0),
        evaluation=EvalConfig(num_prompts=2, seeds=(0,)),
    )


@pytest.mark.slow  # every stage of train-shapes at toy size, interrupted and resumed (~5 min on 2 cores)
def test_recipe_runs_end_to_end_and_resumes(tmp_path, capsys):
    from cogvideox_jax.cli import main as cli_main
    from cogvideox_jax.convert.params_checkpoint import restore_params
    from cogvideox_jax.data.video_io import read_video_uint8
    from cogvideox_jax.shapes.recipe import STAGES, run

    work = str(tmp_path / "work")
    timings = run(_toy_recipe(), work, progress=False)
    assert set(STAGES) <= set(timings)
    for stage in STAGES:
        assert os.path.exists(os.path.join(work, stage, ".done")), stage
    lat = np.load(os.path.join(work, "latents", "latents.npy"))
    chex.assert_shape(lat, (8, 3, 8, 8, 4))
    np.testing.assert_allclose(lat.std(), 1.0, rtol=1e-3)  # scaled by the measured scaling factor
    txt = np.load(os.path.join(work, "latents", "text_emb.npy"))
    chex.assert_shape(txt, (8, 24, 64))
    # the decoder fine-tune kept the encoder (so the latents) and moved the decoder
    vae, tuned = (restore_params(os.path.join(work, d, "params")) for d in ("vae", "vae_decoder"))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(vae["encoder"]), jax.tree.leaves(tuned["encoder"])))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(vae["decoder"]), jax.tree.leaves(tuned["decoder"])))
    vae_cfg = json.load(open(os.path.join(work, "checkpoint", "vae", "config.json")))
    scaling = json.load(open(os.path.join(work, "latents", "scaling.json")))["scaling_factor"]
    assert vae_cfg["scaling_factor"] == pytest.approx(scaling) and vae_cfg["latents_mean"] is None
    # the checkpoint ships the transformer stage's weights
    stage, shipped = (restore_params(os.path.join(work, *d)) for d in (("transformer", "params"),
                                                                       ("checkpoint", "transformer", "params")))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stage), jax.tree.leaves(shipped)))
    summary = json.load(open(os.path.join(work, "eval", "summary.json")))
    assert summary["samples"]["num_videos"] == 2 and summary["num_prompts"] == 2
    assert set(summary["samples"]["accuracy"]) >= {"color", "shape", "direction"}
    assert np.isfinite(summary["vae_psnr_heldout"])
    assert os.path.exists(os.path.join(work, "eval", "samples.png"))
    # the ground-truth held-out clips score perfectly on the evaluator (its own validation)
    assert summary["ground_truth_heldout"]["accuracy"]["color"] == 1.0

    # the evaluation also samples training captions (the generalization gap), and says which split
    from cogvideox_jax.shapes.recipe import stage_eval

    toy = _toy_recipe()
    paths = {s: os.path.join(work, s) for s in STAGES}
    train_eval = str(tmp_path / "eval_train")
    stage_eval(dataclasses.replace(toy, evaluation=EvalConfig(num_prompts=2, seeds=(0,), split="train")),
               train_eval, paths, False)
    captions = open(os.path.join(work, "dataset", "train", "prompts.txt")).read().splitlines()[:2]
    sampled = [json.loads(line)["caption"] for line in open(os.path.join(train_eval, "samples", "metadata.jsonl"))]
    assert sampled == captions
    assert json.load(open(os.path.join(train_eval, "summary.json")))["split"] == "train"
    assert summary["split"] == "heldout"

    # a second run skips every stage
    capsys.readouterr()
    run(_toy_recipe(), work, progress=False)
    out = capsys.readouterr().out
    assert all(f"[{s}] done already" in out for s in STAGES)
    # changed evaluation settings redo the evaluation only
    toy = _toy_recipe()
    run(dataclasses.replace(toy, evaluation=dataclasses.replace(toy.evaluation, seeds=(1,))), work, progress=False)
    out = capsys.readouterr().out
    assert all(f"[{s}] done already" in out for s in STAGES[:-1])
    assert "[eval] its settings or an input stage changed since it ran: redoing it" in out
    sampled = [json.loads(line)["seed"] for line in open(os.path.join(work, "eval", "samples", "metadata.jsonl"))]
    assert sampled == [1, 1]

    # an interrupted transformer stage resumes from its last checkpoint and ends at the uninterrupted
    # run's weights; with changed settings it starts over instead
    resumed = str(tmp_path / "resumed")
    for s in STAGES[:STAGES.index("transformer")]:
        shutil.copytree(os.path.join(work, s), os.path.join(resumed, s))
    toy = _toy_recipe()
    every_step = dataclasses.replace(toy, transformer_train=dataclasses.replace(
        toy.transformer_train, checkpoint=dataclasses.replace(toy.transformer_train.checkpoint, every_steps=1,
                                                              keep_last=3)))
    stage_dir = os.path.join(resumed, "transformer")
    run(every_step, resumed, stop_after="transformer", progress=False)
    for leftover in (".done", "run/checkpoints/2", "run/checkpoints/3"):  # as if killed after step 1's checkpoint
        path = os.path.join(stage_dir, leftover)
        os.remove(path) if os.path.isfile(path) else shutil.rmtree(path)
    capsys.readouterr()
    timings = run(every_step, resumed, stop_after="transformer", progress=False)
    out = capsys.readouterr().out
    assert "[transformer] resuming the interrupted run" in out and "restored step 1" in out
    t = timings["transformer"]
    assert t["resumed"] and t["seconds_before_resume"] > 0.0   # the killed run's time to its step-1 checkpoint
    assert t["seconds"] == pytest.approx(t["seconds_this_run"] + t["seconds_before_resume"], abs=0.11)
    uninterrupted, resumed_params = (restore_params(os.path.join(d, "transformer", "params")) for d in (work, resumed))
    chex.assert_trees_all_equal(resumed_params, uninterrupted)
    os.remove(os.path.join(stage_dir, ".done"))
    other_lr = dataclasses.replace(every_step, transformer_train=dataclasses.replace(
        every_step.transformer_train, optimizer=dataclasses.replace(every_step.transformer_train.optimizer, lr=5e-4)))
    timings = run(other_lr, resumed, stop_after="transformer", progress=False)
    out = capsys.readouterr().out
    assert "[transformer] its settings or inputs changed since the interrupted run: starting it over" in out
    assert "resumed" not in timings["transformer"] and "restored step" not in out

    # the checkpoint samples through the CLI with its stored sampling defaults (2 steps)
    video = str(tmp_path / "v.mp4")
    assert cli_main(["sample", "--checkpoint", os.path.join(work, "checkpoint"), "--prompt",
                     "a red circle moves to the left", "--out", video]) == 0
    assert read_video_uint8(video).shape == (9, 64, 64, 3)



def test_stage_keys_follow_the_settings_each_stage_reads():
    from configs.train_config import apply_overrides
    from cogvideox_jax.shapes.stage_folders import STAGES, stage_record

    def keys(recipe):
        out = {}
        for stage in STAGES:
            out[stage] = stage_record(recipe, stage, out)["key"]
        return out

    base = keys(get_config())
    assert keys(get_config()) == base

    def changed(override):
        new = keys(apply_overrides(get_config(), [override]))
        return [s for s in STAGES if new[s] != base[s]]

    after_vae = STAGES[STAGES.index("vae"):]
    assert changed("vae_train.lr=5e-4") == list(after_vae)
    assert changed("vae_decoder_train.lr=5e-4") == [s for s in after_vae if s != "vae"]
    assert changed("transformer_train.seed=1") == ["transformer", "checkpoint", "eval"]
    assert changed("transformer.num_layers=3") == ["transformer", "checkpoint", "eval"]
    assert changed("object_loss_weight=2.0") == ["transformer", "checkpoint", "eval"]
    assert changed("transformer.max_text_seq_length=32") == list(STAGES[STAGES.index("latents"):])
    assert changed("sampling.contrast_scale=2.0") == ["checkpoint", "eval"]
    assert changed("evaluation.seeds=2,3") == ["eval"]
    assert changed("dataset.seed=5") == list(STAGES)  # the T5's init seed is the dataset's + 17
    # an option added after stage keys changes them only when used (older workdirs keep their stages)
    # the preset trains with bf16 matmuls; a stage's execution options enter its key only when set
    assert changed("transformer_train.execution.matmul_dtype=float32") == ["transformer", "checkpoint", "eval"]
    fp32 = apply_overrides(get_config(), ["transformer_train.execution.matmul_dtype=float32"])
    assert stage_record(fp32, "transformer", {"latents": "x"})["settings"]["transformer_train"]["execution"] == {
        **dataclasses.asdict(ModelExecutionConfig()), "matmul_dtype": "float32"}
    settings = stage_record(get_config(), "transformer", {"latents": "x"})["settings"]
    assert settings["transformer"]["matmul_dtype"] == "bfloat16"
    assert "execution" not in settings["transformer_train"]


def test_transformer_stage_weights_the_object_cells(tmp_path, monkeypatch):
    """The transformer stage gives the core Trainer the recipe's object loss weights (its loss_weights hook)."""
    import jax.numpy as jnp

    from cogvideox_jax.shapes.recipe import stage_transformer
    from cogvideox_jax.train import trainer

    def stop(cfg, workdir, **kw):
        raise InterruptedError(kw["loss_weights"])

    monkeypatch.setattr(trainer, "Trainer", stop)
    with pytest.raises(InterruptedError) as got:
        stage_transformer(get_config(), str(tmp_path), str(tmp_path))
    x0 = jnp.zeros((1, 1, 2, 2, 16)).at[0, 0, 0, 0].set(10.0)   # one object cell on a flat background
    np.testing.assert_array_equal(got.value.args[0](x0)[0, 0, :, :, 0], [[5.0, 1.0], [1.0, 1.0]])


def test_an_interrupted_stage_resumes_only_under_its_key(tmp_path):
    from cogvideox_jax.shapes.stage_folders import SETTINGS, prepare_stage, stage_record

    recipe = get_config()
    keys = {"latents": "0123456789abcdef"}
    record = stage_record(recipe, "transformer", keys)
    path = tmp_path / "transformer"
    (path / "run" / "checkpoints" / "1500").mkdir(parents=True)
    (path / SETTINGS).write_text(json.dumps(record))
    assert prepare_stage("transformer", str(path), record)
    assert (path / "run" / "checkpoints" / "1500").is_dir()
    # the same settings on other latents (a redone latents stage): start over
    other = stage_record(recipe, "transformer", {"latents": "fedcba9876543210"})
    assert other["settings"] == record["settings"] and other["key"] != record["key"]
    assert not prepare_stage("transformer", str(path), other)
    assert not (path / "run").exists() and json.loads((path / SETTINGS).read_text()) == other


def test_eval_split_and_execution_are_checked_before_any_stage_runs(tmp_path):
    from configs.train_config import apply_overrides
    from cogvideox_jax.shapes.recipe import run

    work = tmp_path / "work"
    with pytest.raises(ValueError, match="num_prompts"):
        run(apply_overrides(get_config(), ["evaluation.split=train"]), str(work), progress=False)
    with pytest.raises(ValueError, match="one of"):
        run(apply_overrides(get_config(), ["evaluation.split=test"]), str(work), progress=False)
    with pytest.raises(ValueError, match="transformer_train.execution.matmul_dtype"):
        run(apply_overrides(get_config(), ["transformer.matmul_dtype=float32"]), str(work), progress=False)
    assert not work.exists()
    ev = apply_overrides(get_config(), ["evaluation.split=train", "evaluation.num_prompts=4"]).evaluation
    ev.check()
    assert (ev.split, ev.num_prompts) == ("train", 4)


def test_install_default_model_copies_a_checkpoint(tmp_path):
    from cogvideox_jax.errors import CheckpointFormatError
    from cogvideox_jax.shapes.default_model import install_default_model

    src = tmp_path / "ck"
    src.mkdir()
    with pytest.raises(CheckpointFormatError):
        install_default_model(str(src), str(tmp_path / "target"))
    (src / "cogvideox_jax.json").write_text(json.dumps({"version": 1}))
    (src / ".done").write_text("{}")
    (src / "settings.json").write_text("{}")  # the stage folder's key: not part of the model
    (src / "sampling.json").write_text(json.dumps({"steps": 7}))
    (src / "tokenizer").mkdir()
    (src / "tokenizer" / "settings.json").write_text("{}")
    (src / "tokenizer" / "spiece.model").write_text("x")
    target = install_default_model(str(src), str(tmp_path / "target"))
    assert sorted(os.listdir(target)) == ["cogvideox_jax.json", "sampling.json", "tokenizer"]
    assert os.listdir(os.path.join(target, "tokenizer")) == ["spiece.model"]


def test_a_resumed_stage_counts_the_time_before_its_interruption(tmp_path):
    from cogvideox_jax.shapes.stage_folders import ATTEMPT, seconds_before_interruption

    path = tmp_path / "transformer"
    started = 1_000_000.0
    for step, written in ((1500, started + 100.0), (3000, started + 250.0)):  # the newest counts
        folder = path / "run" / "checkpoints" / str(step)
        folder.mkdir(parents=True)
        (folder / "params").write_text("x")
        os.utime(folder / "params", (written, written))
    assert seconds_before_interruption("transformer", str(path)) is None   # a folder from before attempt.json
    (path / ATTEMPT).write_text(json.dumps({"started": started, "earlier_seconds": 40.0}))
    assert seconds_before_interruption("transformer", str(path)) == 290.0  # 40 before + 250 to step 3000
    shutil.rmtree(path / "run" / "checkpoints")
    assert seconds_before_interruption("transformer", str(path)) is None   # nothing to resume from
