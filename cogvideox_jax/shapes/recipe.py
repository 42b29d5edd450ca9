"""``cogvideox-jax train-shapes``: train the embedded default model end to end with the project's code.

Stages (each writes one folder of ``--workdir`` and is skipped when that folder is complete and was
written with the same settings and inputs, so an interrupted run resumes at the stage it was in, and
a run with changed settings redoes only the stages they reach: ``--set transformer_train.seed=1`` on
a finished workdir retrains the transformer and redoes the stages after it, not the dataset or the
VAE (``shapes_stage_folders.STAGE_DEPENDENCIES``, each folder's ``settings.json``); the VAE and transformer stages resume
from their last checkpoint, every 250 / 1500 steps; ``timings.json`` records each stage's wall time,
for a resumed stage the interrupted runs' time up to that checkpoint plus the resumed run's):

1. ``dataset/``      the synthetic shapes clips (``make-dataset shapes``), train + held-out split;
2. ``tokenizer/``    a sentencepiece T5 tokenizer trained on the training captions;
3. ``text_encoder/`` a tiny T5 encoder, frozen at its random init (the transformer learns to read it);
4. ``vae/``          a small CogVideoX 3D causal VAE (reconstruction + KL, ``cogvideox_jax/shapes/vae_objective.py``);
5. ``vae_decoder/``  that VAE with its decoder fine-tuned, the encoder frozen (same latents);
6. ``latents/``      posterior means scaled to unit variance (one scaling factor) and T5 embeddings of
                     every training clip;
7. ``transformer/``  the expert transformer on those latents (the project's ``Trainer``, v-loss weighted
                     toward the object's latent cells: ``object_loss_weight.py``);
8. ``checkpoint/``   a cogvideox-jax pipeline checkpoint (what ``sample --checkpoint`` reads);
9. ``eval/``         samples for the held-out prompts (or, ``evaluation.split=train``, training
                     captions) and their shapes-evaluator scores + VAE PSNR.

``--install`` copies ``checkpoint/`` into the package as the default model of ``cogvideox-jax sample``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from cogvideox_jax.shapes.stage_folders import (ATTEMPT, CHECKPOINTED_STAGES, STAGES, mark_done, prepare_stage,
                                                    seconds_before_interruption, stage_record, up_to_date,
                                                    write_record)


# ----------------------------------------------------------------------------------------- helpers
def _captions(split_root: str) -> list[str]:
    with open(os.path.join(split_root, "prompts.txt"), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _train_clips(dataset: str, progress: bool) -> np.ndarray:
    """The training clips as uint8 (N, T, H, W, 3), decoded once and kept next to the dataset."""
    from cogvideox_jax.shapes.vae_trainer import load_clips

    cache = os.path.join(dataset, "train_clips_uint8.npy")
    if os.path.exists(cache):
        return np.load(cache)
    clips = load_clips(os.path.join(dataset, "train"), progress=progress)
    np.save(cache + ".tmp.npy", clips)
    os.replace(cache + ".tmp.npy", cache)
    return clips


def t5_config_json(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return {"architectures": ["T5EncoderModel"], "model_type": "t5", **d}


# ------------------------------------------------------------------------------------------ stages
def stage_dataset(recipe, out: str) -> dict:
    from cogvideox_jax.shapes.dataset.make_dataset import ShapesConfig, make_dataset

    d = recipe.dataset
    summary = make_dataset(out, ShapesConfig(num_train=d.num_train, num_heldout=d.num_heldout,
                                             num_frames=d.num_frames, height=d.size, width=d.size, seed=d.seed))
    return {"counts": summary["counts"]}


def stage_tokenizer(recipe, out: str, dataset: str) -> dict:
    from cogvideox_jax.models.t5.prompt_encoding import load_tokenizer
    from cogvideox_jax.models.t5.tokenizer_training import train_t5_tokenizer

    train_t5_tokenizer(_captions(os.path.join(dataset, "train")), out, vocab_size=recipe.tokenizer.vocab_size,
                       model_type=recipe.tokenizer.model_type)
    n = len(load_tokenizer(out))
    if n > recipe.t5.vocab_size:
        raise ValueError(f"tokenizer has {n} ids > T5 vocab_size {recipe.t5.vocab_size}")
    return {"tokens": n}


def _load_t5(recipe, folder: str):
    from cogvideox_jax.convert.params_checkpoint import restore_params
    from cogvideox_jax.models.t5.t5_encoder import T5EncoderModel

    return T5EncoderModel(recipe.t5), restore_params(os.path.join(folder, "params"))


def stage_text_encoder(recipe, out: str) -> dict:
    import jax
    import jax.numpy as jnp
    import flax.linen as nn

    from cogvideox_jax.convert.params_checkpoint import save_params
    from cogvideox_jax.models.t5.t5_encoder import T5EncoderModel

    t5 = T5EncoderModel(recipe.t5)
    params = nn.unbox(t5.init(jax.random.PRNGKey(recipe.dataset.seed + 17), jnp.zeros((1, 4), jnp.int32))["params"])
    save_params(os.path.join(out, "params"), jax.device_get(params))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(t5_config_json(recipe.t5), f, indent=2, sort_keys=True)
    return {"params": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))}


def stage_vae(recipe, out: str, dataset: str, progress: bool, init_dir: str | None = None) -> dict:
    """Train the VAE with ``recipe.vae_train``, or (``init_dir``: the ``vae/`` stage) fine-tune that
    VAE's decoder with ``recipe.vae_decoder_train``."""
    from cogvideox_jax.convert.params_checkpoint import restore_params
    from cogvideox_jax.shapes.eval.psnr import psnr
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
    from cogvideox_jax.shapes.vae_trainer import load_clips, reconstruct, save_vae, train_vae

    vae = AutoencoderKLCogVideoX(recipe.vae)
    clips = _train_clips(dataset, progress)
    train_cfg = recipe.vae_train if init_dir is None else recipe.vae_decoder_train
    init = None if init_dir is None else restore_params(os.path.join(init_dir, "params"))
    params, history = train_vae(vae, train_cfg, clips, log_path=os.path.join(out, "log.jsonl"),
                                progress=progress, init_params=init, checkpoint_dir=os.path.join(out, "checkpoints"))
    save_vae(out, recipe.vae, params)
    held = load_clips(os.path.join(dataset, "heldout"), limit=train_cfg.eval_clips, progress=False)
    rec = reconstruct(vae, params, held)
    value = psnr(rec, held)
    print(f"VAE PSNR on {len(held)} held-out clips: {value:.2f} dB", flush=True)
    return {"heldout_psnr": value, "final": history[-1] if history else {}}


def stage_latents(recipe, out: str, dataset: str, vae_dir: str, tok_dir: str, t5_dir: str,
                  progress: bool) -> dict:
    import jax
    from tqdm.auto import tqdm

    from cogvideox_jax.compiler_options import memory_optimized
    from cogvideox_jax.convert.params_checkpoint import restore_params
    from cogvideox_jax.models.t5.prompt_encoding import encode_prompts_jit, load_tokenizer, tokenize_prompts
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
    from cogvideox_jax.models.vae.latent_scaling import scale_latents

    vae = AutoencoderKLCogVideoX(recipe.vae)
    vparams = restore_params(os.path.join(vae_dir, "params"))
    enc = jax.jit(lambda p, v: vae.apply({"params": p}, v, frame_batching="whole", method="encode").mean,
                  compiler_options=memory_optimized())
    train = os.path.join(dataset, "train")
    clips = _train_clips(dataset, progress)
    means = []
    for i in tqdm(range(0, len(clips), 16), desc="encode latents", disable=not progress):
        means.append(np.asarray(enc(vparams, clips[i:i + 16].astype(np.float32) / 127.5 - 1.0)))
    means = np.concatenate(means)
    scaling = {"scaling_factor": float(1.0 / means.std())}   # one factor to unit variance (the CogVideoX way)
    np.save(os.path.join(out, "latents.npy"),
            np.asarray(scale_latents(means, dataclasses.replace(recipe.vae, **scaling)), np.float32))
    tok = load_tokenizer(tok_dir)
    t5, tparams = _load_t5(recipe, t5_dir)
    L = recipe.transformer.max_text_seq_length

    def encode(prompts):
        ids = tokenize_prompts(tok, prompts, L)
        return np.concatenate([np.asarray(encode_prompts_jit(t5, tparams, ids[i:i + 256]))
                               for i in range(0, len(ids), 256)]).astype(np.float32)

    np.save(os.path.join(out, "text_emb.npy"), encode(_captions(train)))
    np.save(os.path.join(out, "null_text_emb.npy"), encode([""])[0])
    with open(os.path.join(out, "scaling.json"), "w") as f:
        json.dump(scaling, f)
    return {**scaling, "latents": list(means.shape)}


def stage_transformer(recipe, out: str, latents_dir: str, progress: bool = True) -> dict:
    """Train the transformer by ``recipe.transformer_train`` on the cached latents and the frozen T5's
    embeddings, from a random init, the v-loss weighted by ``object_loss_weights``; writes ``params``
    (the EMA's when it keeps one)."""
    import functools

    import jax.numpy as jnp

    from cogvideox_jax.convert.params_checkpoint import save_params
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.train.model_factory import spec_for_transformer
    from cogvideox_jax.shapes.object_loss_weight import object_loss_weights
    from cogvideox_jax.train.trainer import Trainer, host_tree

    cfg = recipe.transformer_train
    model = recipe.transformer.replace(**cfg.execution.overrides())   # the stage's execution options
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, kind="precomputed", path=latents_dir),
                              execution=type(cfg.execution)())
    mesh = make_mesh(cfg.mesh, dcn=cfg.mesh_dcn or None)   # the model runs on it (execution.sequence_parallel)
    spec = spec_for_transformer(CogVideoXTransformer3D(model, dtype=jnp.dtype(cfg.dtype),
                                                       param_dtype=jnp.dtype(cfg.param_dtype), mesh=mesh))
    weights = (functools.partial(object_loss_weights, extra=recipe.object_loss_weight,
                                 threshold=recipe.object_threshold) if recipe.object_loss_weight > 0 else None)
    trainer = Trainer(cfg, os.path.join(out, "run"), mesh=mesh, model_spec=spec, progress=progress,
                      loss_weights=weights)
    records = trainer.fit()
    state = trainer.state
    params = host_tree(state.ema if cfg.ema_decay > 0 else state.params)
    trainer.close()
    save_params(os.path.join(out, "params"), params)
    last = records[-1] if records else {}
    return {"steps": cfg.total_steps, "final_loss": last.get("loss"),
            "ema": cfg.ema_decay > 0}


def stage_checkpoint(recipe, out: str, p: dict) -> dict:
    from configs.scheduler import SchedulerConfig
    from cogvideox_jax.convert.params_checkpoint import restore_params
    from cogvideox_jax.convert.pipeline_checkpoint import write_pipeline_checkpoint
    from cogvideox_jax.shapes.vae_trainer import vae_config_json

    with open(os.path.join(p["latents"], "scaling.json")) as f:
        scaling = json.load(f)
    vae_cfg = dataclasses.replace(recipe.vae, **scaling)
    configs = {"transformer": recipe.transformer.to_diffusers_config(), "vae": vae_config_json(vae_cfg),
               "text_encoder": t5_config_json(recipe.t5)}
    params = {"transformer": restore_params(os.path.join(p["transformer"], "params")),
              "vae": restore_params(os.path.join(p["vae_decoder"], "params")),
              "text_encoder": restore_params(os.path.join(p["text_encoder"], "params"))}
    sched = SchedulerConfig(kind=recipe.sampling.scheduler, snr_shift_scale=recipe.transformer_train.snr_shift_scale)
    write_pipeline_checkpoint(out, configs=configs, params=params, tokenizer_dir=p["tokenizer"],
                              scheduler_config=sched.to_diffusers_config(), dtype="fp32", variant="shapes")
    with open(os.path.join(out, "sampling.json"), "w") as f:
        json.dump(dataclasses.asdict(recipe.sampling), f, indent=1)
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, files in os.walk(out) for n in files)
    return {"megabytes": round(size / 2 ** 20, 2)}


def split_prompts(dataset: str, split: str = "heldout", limit: int | None = None) -> list[dict]:
    """The first ``limit`` records (caption + attributes) of a dataset split (``"heldout"`` or
    ``"train"``), the prompts the evaluation samples."""
    with open(os.path.join(dataset, split, "metadata.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:limit]


SAMPLE_BATCH = 20   # prompts per pipeline call in the evaluation's sampling


def batch_seed(seed: int, start: int) -> int:
    """The pipeline seed of the evaluation's batch that starts at prompt ``start``, for sampling seed ``seed``."""
    return seed * 100003 + start


def sample_prompts(checkpoint: str, rows: list[dict], seeds, out: str, steps: int, guidance: float,
                   batch_size: int = SAMPLE_BATCH, progress: bool = True, contrast_scale: float = 0.0,
                   contrast_words: tuple[str, ...] = (), selection=None) -> list[dict]:
    """Sample every (prompt, seed) into ``out`` (mp4 + metadata.jsonl with the target attributes);
    with ``contrast_scale`` > 0, each prompt contrasted with itself naming each other ``contrast_words``;
    ``selection`` (a ``CandidateSelection``): each video the best of that many candidates."""
    from tqdm.auto import tqdm

    from cogvideox_jax.data.video_io import write_video
    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.shapes.contrast_prompts import contrast_prompts
    from cogvideox_jax.shapes.sampling import sample

    pipe = CogVideoXPipeline.from_pretrained(checkpoint)
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    meta = []
    bar = tqdm(total=len(rows) * len(seeds), desc="sample prompts", unit="video", disable=not progress)
    for seed in seeds:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            captions = [r["caption"] for r in chunk]
            contrasts = [contrast_prompts(c, [contrast_words]) for c in captions]   # guidance and/or selection
            videos = sample(pipe, captions, num_inference_steps=steps, guidance_scale=guidance,
                            seed=batch_seed(seed, start), progress=False, contrast_prompts=contrasts,
                            contrast_scale=contrast_scale, selection=selection)
            for i, (r, v) in enumerate(zip(chunk, np.asarray(videos)), start):
                rel = f"videos/{i:05d}_seed{seed}.mp4"
                write_video(os.path.join(out, rel), v, fps=8.0)
                meta.append({"video": rel, "caption": r["caption"], "seed": seed,
                             **{k: r.get(k) for k in ("color", "shape", "direction", "size", "background")}})
            bar.update(len(chunk))
    bar.close()
    with open(os.path.join(out, "metadata.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(m) + "\n" for m in meta)
    return meta


def _write_strip(samples: str, path: str, rows: int) -> None:
    """Frame strip of the first ``rows`` samples (the README picture)."""
    from cogvideox_jax.data.video_io import read_video_uint8
    from cogvideox_jax.shapes.eval.frame_strip import write_frame_strip

    with open(os.path.join(samples, "metadata.jsonl"), encoding="utf-8") as f:
        meta = [json.loads(line) for line in f if line.strip()][:rows]
    write_frame_strip(path, [read_video_uint8(os.path.join(samples, m["video"])) for m in meta])
    with open(os.path.splitext(path)[0] + ".txt", "w", encoding="utf-8") as f:
        f.writelines(m["caption"] + "\n" for m in meta)


def stage_eval(recipe, out: str, p: dict, progress: bool) -> dict:
    from cogvideox_jax.convert.params_checkpoint import restore_params
    from cogvideox_jax.shapes.eval.evaluator import evaluate_folder
    from cogvideox_jax.shapes.eval.psnr import psnr
    from cogvideox_jax.models.vae.autoencoder import AutoencoderKLCogVideoX
    from cogvideox_jax.shapes.candidate_selection import selection_from_settings
    from cogvideox_jax.shapes.vae_trainer import load_clips, reconstruct

    ev = recipe.evaluation
    rows = split_prompts(p["dataset"], ev.split, ev.num_prompts)
    sample_prompts(p["checkpoint"], rows, ev.seeds, os.path.join(out, "samples"), recipe.sampling.steps,
                   recipe.sampling.guidance_scale, progress=progress, contrast_scale=recipe.sampling.contrast_scale,
                   contrast_words=recipe.sampling.contrast_words,
                   selection=selection_from_settings(dataclasses.asdict(recipe.sampling)))
    records, summary = evaluate_folder(os.path.join(out, "samples"))
    _write_strip(os.path.join(out, "samples"), os.path.join(out, "samples.png"), ev.strip_rows)
    _, gt_summary = evaluate_folder(os.path.join(p["dataset"], "heldout"))
    held = load_clips(os.path.join(p["dataset"], "heldout"), progress=False)
    vae = AutoencoderKLCogVideoX(recipe.vae)
    rec = reconstruct(vae, restore_params(os.path.join(p["vae_decoder"], "params")), held)
    result = {"samples": summary, "ground_truth_heldout": gt_summary,
              "vae_psnr_heldout": psnr(rec, held), "num_prompts": len(rows), "split": ev.split,
              "seeds": list(ev.seeds)}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out, "records.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return {"accuracy": summary["accuracy"], "temporal_consistency": summary["temporal_consistency"],
            "vae_psnr_heldout": result["vae_psnr_heldout"]}


# -------------------------------------------------------------------------------------------- main
def run(recipe, workdir: str, stop_after: str | None = None, progress: bool = True) -> dict:
    recipe.evaluation.check()
    from configs.transformer import EXECUTION_FIELDS
    from cogvideox_jax.shapes.config import SHAPES_TRANSFORMER

    changed = [f for f in EXECUTION_FIELDS if getattr(recipe.transformer, f) != getattr(SHAPES_TRANSFORMER, f)]
    if changed:
        raise ValueError(f"transformer.{changed[0]}: execution options are set per training stage as in `train`, "
                         f"e.g. --set transformer_train.execution.{changed[0]}=...")
    os.makedirs(workdir, exist_ok=True)
    tpath = os.path.join(workdir, "timings.json")
    timings = json.load(open(tpath)) if os.path.exists(tpath) else {}
    p = {s: os.path.join(workdir, s) for s in STAGES}
    actions = {
        "dataset": lambda: stage_dataset(recipe, p["dataset"]),
        "tokenizer": lambda: stage_tokenizer(recipe, p["tokenizer"], p["dataset"]),
        "text_encoder": lambda: stage_text_encoder(recipe, p["text_encoder"]),
        "vae": lambda: stage_vae(recipe, p["vae"], p["dataset"], progress),
        "vae_decoder": lambda: stage_vae(recipe, p["vae_decoder"], p["dataset"], progress, init_dir=p["vae"]),
        "latents": lambda: stage_latents(recipe, p["latents"], p["dataset"], p["vae_decoder"], p["tokenizer"],
                                         p["text_encoder"], progress),
        "transformer": lambda: stage_transformer(recipe, p["transformer"], p["latents"], progress),
        "checkpoint": lambda: stage_checkpoint(recipe, p["checkpoint"], p),
        "eval": lambda: stage_eval(recipe, p["eval"], p, progress),
    }
    keys = {}
    for stage in STAGES:
        record = stage_record(recipe, stage, keys)
        keys[stage] = record["key"]
        current = up_to_date(p[stage], record)
        if current:
            print(f"[{stage}] done already ({timings.get(stage, {}).get('seconds', '?')} s)", flush=True)
        else:
            if current is False:
                print(f"[{stage}] its settings or an input stage changed since it ran: redoing it", flush=True)
            else:
                print(f"[{stage}] ...", flush=True)
            t0 = time.time()
            resumed = prepare_stage(stage, p[stage], record)   # a resumed folder keeps its checkpoints
            earlier = seconds_before_interruption(stage, p[stage]) if resumed else None
            if stage in CHECKPOINTED_STAGES:  # so that a resumed run can count the time before it
                with open(os.path.join(p[stage], ATTEMPT), "w") as f:
                    json.dump({"started": t0, "earlier_seconds": earlier or 0.0}, f)
            info = actions[stage]()
            this_run = round(time.time() - t0, 1)
            if resumed:  # the stage's seconds: this run's and those before it up to its checkpoint
                info = {**info, "resumed": True, "seconds_this_run": this_run, "seconds_before_resume": earlier}
            seconds = round(this_run + (earlier or 0.0), 1)
            timings[stage] = {"seconds": seconds, **info}
            write_record(p[stage], record)
            mark_done(p[stage], info)
            with open(tpath, "w") as f:
                json.dump(timings, f, indent=1)
            print(f"[{stage}] {seconds} s {info}", flush=True)
        if stage == stop_after:
            break
    timings["total_seconds"] = round(sum(v["seconds"] for k, v in timings.items() if isinstance(v, dict)), 1)
    with open(tpath, "w") as f:
        json.dump(timings, f, indent=1)
    return timings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cogvideox-jax train-shapes",
                                description="Train the embedded default model (shapes dataset, T5, VAE, "
                                            "transformer) and optionally install it as the package default.")
    p.add_argument("--workdir", required=True, help="folder for every stage's output (resumable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. vae_train.lr=5e-4 or transformer_train.stages.0.steps=100")
    p.add_argument("--stop-after", choices=STAGES, help="stop after this stage")
    p.add_argument("--install", action="store_true", help="copy checkpoint/ into the package as the default model")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str]) -> int:
    from cogvideox_jax.shapes.config import get_config
    from configs.train_config import apply_overrides

    args = build_parser().parse_args(argv)
    recipe = apply_overrides(get_config(), args.set)
    timings = run(recipe, args.workdir, args.stop_after, progress=not args.no_progress)
    print(json.dumps(timings, indent=1))
    if args.install:
        from cogvideox_jax.shapes.default_model import install_default_model

        print(f"installed the default model into {install_default_model(os.path.join(args.workdir, 'checkpoint'))}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
