"""Train a CogVideoX 3D causal VAE from a video folder (the ``train-shapes`` recipe's VAE stage).

Clips are decoded once into host memory (uint8) and batches are random ``(frames, size, size)`` crops
— deterministic in ``(seed, step)``. The step is ``jax.jit``-ed with the batch sharded over the
mesh's ``(data, fsdp)`` axes and the params placed by their logical names. Training runs in
phases (e.g. many cheap small crops, then a few full-size clips so GroupNorm sees whole frames),
one AdamW with warmup + cosine over all phases.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from cogvideox_jax.compiler_options import memory_optimized
from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES
from cogvideox_jax.parallel.mesh import make_mesh
from cogvideox_jax.parallel.param_sharding import param_shardings
from cogvideox_jax.train.checkpointing import Checkpointer, abstract_with_shardings
from cogvideox_jax.shapes.vae_objective import VAELossWeights, foreground_mask, make_vae_train_step


def load_clips(data_root: str, limit: int | None = None, progress: bool = True) -> np.ndarray:
    """All clips of a folder dataset (prompts.txt/videos.txt) as uint8 ``(N, T, H, W, 3)`` (equal shapes)."""
    from tqdm.auto import tqdm

    from cogvideox_jax.data.folder_dataset import read_folder
    from cogvideox_jax.data.video_io import read_video_uint8

    records = read_folder(data_root)[:limit]
    clips = [read_video_uint8(r.video) for r in tqdm(records, desc=f"decode {os.path.basename(data_root)}",
                                                     unit="clip", disable=not progress)]
    shapes = {c.shape for c in clips}
    if len(shapes) != 1:
        raise ValueError(f"clips of {data_root!r} have different shapes: {sorted(shapes)[:4]}")
    return np.stack(clips)


def foreground_centroids(clips: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Per uint8 clip, the ``(y, x)`` centroid of its ``foreground_mask`` pixels (any frame; the
    pixels the foreground-weighted loss weighs); the frame center for clips with none. ``(N, 2)``."""
    n, _, h, w, _ = clips.shape
    mask_fn = jax.jit(lambda v: foreground_mask(v.astype(jnp.float32) / 127.5 - 1.0)[..., 0].any(axis=1))
    out = np.empty((n, 2), np.float32)
    for start in range(0, n, batch_size):
        for i, mask in enumerate(np.asarray(mask_fn(clips[start:start + batch_size])), start):
            ys, xs = np.nonzero(mask)
            out[i] = (ys.mean(), xs.mean()) if len(ys) else ((h - 1) / 2, (w - 1) / 2)
    return out


def random_crops(clips: np.ndarray, rng: np.random.Generator, batch: int, frames: int, size: int,
                 centers: np.ndarray | None = None) -> np.ndarray:
    """``batch`` random (frames, size, size) crops in [-1, 1] float32 (whole clips when sizes match).

    With ``centers`` (``(N, 2)``, e.g. ``foreground_centroids``) each crop window is drawn among those
    whose middle half contains the clip's center point, so crops of small objects on flat backgrounds
    show the object instead of mostly background."""
    n, t, h, w, _ = clips.shape
    if (frames - 1) % 8:
        raise ValueError(f"crop frames must be 1 + 8k (an odd number of latent frames), got {frames}")
    if frames > t or size > min(h, w):
        raise ValueError(f"crop ({frames}, {size}, {size}) larger than the clips {clips.shape[1:4]}")
    idx = rng.integers(0, n, batch)
    t0 = rng.integers(0, t - frames + 1, batch)
    if centers is None:
        y0 = rng.integers(0, h - size + 1, batch)
        x0 = rng.integers(0, w - size + 1, batch)
    else:
        # window start in [c - 3/4 size, c - 1/4 size], clipped to the frame
        c = centers[idx] + rng.uniform(-size / 4, size / 4, (batch, 2)) - size / 2
        y0 = np.clip(np.round(c[:, 0]), 0, h - size).astype(int)
        x0 = np.clip(np.round(c[:, 1]), 0, w - size).astype(int)
    out = np.stack([clips[i, a:a + frames, y:y + size, x:x + size] for i, a, y, x in zip(idx, t0, y0, x0)])
    return out.astype(np.float32) / 127.5 - 1.0


def _schedule(cfg) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup_steps, max(cfg.steps, cfg.warmup_steps + 1),
                                              end_value=cfg.lr * cfg.final_lr_ratio)


def reconstruct(vae, params, clips: np.ndarray, batch_size: int = 4, frame_batching: str = "whole") -> np.ndarray:
    """Encode (posterior mode) and decode uint8 clips; returns uint8 reconstructions."""
    fn = jax.jit(lambda p, v: vae.apply({"params": p}, vae.apply({"params": p}, v, frame_batching=frame_batching,
                                                                   method="encode").mode(),
                                        frame_batching=frame_batching, method="decode"),
                 compiler_options=memory_optimized())
    out = []
    for i in range(0, len(clips), batch_size):
        v = clips[i:i + batch_size].astype(np.float32) / 127.5 - 1.0
        y = np.asarray(fn(params, v))
        out.append(np.clip(np.round((y + 1.0) * 127.5), 0, 255).astype(np.uint8))
    return np.concatenate(out)


def train_vae(vae, cfg, train_clips: np.ndarray, *, mesh: str = "data=-1", log_path: str | None = None,
              progress: bool = True, init_params=None, checkpoint_dir: str | None = None):
    """Train ``vae`` (a Linen ``AutoencoderKLCogVideoX``) with ``cfg`` (``cogvideox_jax.shapes.config.VAETrainConfig``)
    on ``mesh`` (built over the largest number of local devices that divides every phase's batch),
    from a random init or from ``init_params`` (e.g. a decoder fine-tune: phases with
    ``train_encoder=False``).

    ``checkpoint_dir``: params + optimizer state are saved there every ``cfg.checkpoint_every`` steps
    (the latest kept), and training resumes from the latest one found; each step's crops and noise
    depend only on ``(cfg.seed, step)``, so a resumed run ends at the uninterrupted run's weights.

    Returns ``(params, history)`` with host (numpy) params and the logged metric records (those of
    this call: a resumed run's start at its checkpoint).
    """
    from tqdm.auto import tqdm

    # the largest device count dividing every phase's batch (single-process; e.g. batch 2 on 8 devices -> 2)
    n_dev = math.gcd(jax.device_count(), *(p.batch_size for p in cfg.phases))
    mesh = make_mesh(mesh, devices=jax.devices()[:n_dev])
    key = jax.random.PRNGKey(cfg.seed)
    first = cfg.phases[0]
    probe = jnp.zeros((1, first.frames, first.size, first.size, 3), jnp.float32)
    boxed = jax.eval_shape(lambda k: vae.init(k, probe, frame_batching="whole"), key)["params"]
    p_sh = param_shardings(boxed, mesh)
    with jax.set_mesh(mesh):
        if init_params is None:
            params = jax.jit(lambda k: nn.unbox(vae.init(k, probe, frame_batching="whole")["params"]),
                             out_shardings=p_sh)(key)
        else:
            params = jax.device_put(init_params, p_sh)
    schedule = _schedule(cfg)
    optimizer = optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                            optax.adamw(schedule, b1=0.9, b2=0.99, weight_decay=0.0))
    opt_state = optimizer.init(params)
    weights = VAELossWeights(cfg.l1_weight, cfg.mse_weight, cfg.kl_weight, cfg.foreground_weight)

    def jitted_step(train_encoder: bool):
        raw_step = make_vae_train_step(vae, optimizer, weights, train_encoder=train_encoder)

        def step(p, s, v, k):
            with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
                return raw_step(p, s, v, k)

        return jax.jit(step, donate_argnums=(0, 1))

    batch_sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    step_fns = {flag: jitted_step(flag) for flag in {p.train_encoder for p in cfg.phases}}
    checkpointer, start = None, 0
    if checkpoint_dir and cfg.checkpoint_every > 0:
        checkpointer = Checkpointer(checkpoint_dir, keep_last=1, keep_best=0, async_save=False)
        if checkpointer.latest_step() is not None:
            state = {"params": params, "opt_state": opt_state}
            replicated = NamedSharding(mesh, PartitionSpec())   # e.g. the optimizer's step count
            shardings = jax.tree.map(lambda x: x.sharding if isinstance(x.sharding, NamedSharding) else replicated,
                                     state)
            state, _, _ = checkpointer.restore(abstract_with_shardings(state, shardings))
            params, opt_state, start = state["params"], state["opt_state"], checkpointer.latest_step()
            print(f"restored step {start} from {checkpointer.directory}", flush=True)
    history = []
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    bar = tqdm(total=cfg.steps, initial=start, desc="vae", unit="step", disable=not progress)
    global_step, t_last = 0, time.time()
    centers = foreground_centroids(train_clips) if cfg.object_crops else None
    for pi, phase in enumerate(cfg.phases):
        jitted = step_fns[phase.train_encoder]
        for _ in range(phase.steps):
            if global_step < start:  # done before the checkpoint this run resumed from
                global_step += 1
                continue
            rng = np.random.default_rng([cfg.seed, global_step])
            host = random_crops(train_clips, rng, phase.batch_size, phase.frames, phase.size, centers)
            video = jax.make_array_from_callback(host.shape, batch_sh, lambda idx, a=host: a[idx])
            with jax.set_mesh(mesh):
                params, opt_state, metrics = jitted(params, opt_state, video,
                                                    jax.random.fold_in(key, global_step))
            global_step += 1
            bar.update(1)
            if global_step % cfg.log_every == 0 or global_step == cfg.steps:
                rec = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.time()
                rec.update(step=global_step, phase=pi, lr=float(schedule(global_step - 1)),
                           step_time=(now - t_last) / cfg.log_every)
                t_last = now
                history.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", psnr=f"{rec['psnr']:.1f}")
                if log:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
            if checkpointer and global_step % cfg.checkpoint_every == 0:
                checkpointer.save(global_step, {"params": params, "opt_state": opt_state})
    bar.close()
    if log:
        log.close()
    if checkpointer:
        checkpointer.close()
    return jax.device_get(params), history


def save_vae(out_dir: str, vae_config, params) -> None:
    """``out_dir/config.json`` (diffusers-style) + ``out_dir/params`` (orbax)."""
    from cogvideox_jax.convert.params_checkpoint import save_params

    os.makedirs(out_dir, exist_ok=True)
    save_params(os.path.join(out_dir, "params"), params)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(vae_config_json(vae_config), f, indent=2, sort_keys=True)


def vae_config_json(vae_config) -> dict:
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(vae_config).items()}
    return {"_class_name": "AutoencoderKLCogVideoX", **d}
