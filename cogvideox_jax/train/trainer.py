"""The training loop: model + mesh + state + data + checkpoints + metrics, stage after stage.

``Trainer(cfg, workdir=…).fit()`` builds (or restores) the state, then runs every progressive stage
(its own latent shape and data iterator; one optimizer and lr schedule joined over all stages).
Checkpoints hold the state and the data iterator's position, so a killed run resumes on exactly the
batches, timesteps and noise an uninterrupted run uses.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

import jax
import numpy as np
from flax import traverse_util

from cogvideox_jax.parallel.mesh import make_mesh, mesh_shape_str
from cogvideox_jax.parallel.param_sharding import param_shardings, place_params
from cogvideox_jax.train import lora as lora_lib
from cogvideox_jax.train.checkpointing import Checkpointer, abstract_with_shardings
from cogvideox_jax.train.diffusion_loss import training_alphas_cumprod
from cogvideox_jax.train.latent_batches import ArrayLatentBatches, FirstLatentFrameImages, SyntheticLatentBatches
from cogvideox_jax.train.metrics_logging import (MetricsLogger, StepTimer, peak_flops_for, sequence_lengths,
                                                 transformer_train_flops)
from cogvideox_jax.train.model_factory import (ModelSpec, abstract_boxed_params, build_model, init_params,
                                                text_batch_key)
from cogvideox_jax.train.optimizer import make_optimizer
from cogvideox_jax.train.timestep_density import timestep_probabilities
from cogvideox_jax.train.train_state import TrainState, create_train_state, state_shardings
from cogvideox_jax.train.train_step import StepOptions, make_train_step

VAE_TEMPORAL, VAE_SPATIAL = 4, 8


def latent_shape(stage, channels: int) -> tuple[int, int, int, int]:
    """Per-example latent shape ``(t, h, w, C)`` of a stage's pixel size."""
    return ((stage.num_frames - 1) // VAE_TEMPORAL + 1, stage.height // VAE_SPATIAL, stage.width // VAE_SPATIAL,
            channels)


def stage_at(stages, step: int) -> tuple[int, int]:
    """(stage index, first step of that stage) for global ``step`` (the last stage past the end)."""
    start = 0
    for i, s in enumerate(stages):
        if step < start + s.steps:
            return i, start
        start += s.steps
    return len(stages) - 1, start - stages[-1].steps


def default_data(cfg, stage_index: int, lat_shape, text_shape, batch_size: int):
    d = cfg.data
    if d.kind == "synthetic":
        return SyntheticLatentBatches(d.num_synthetic, lat_shape, text_shape, batch_size,
                                      seed=d.shuffle_seed + stage_index)
    if d.kind == "precomputed":  # text_emb.npy, or text_ids.npy for a model that takes token ids
        key = text_batch_key(text_shape)
        lat = np.load(os.path.join(d.path, "latents.npy"), mmap_mode="r")
        txt = np.load(os.path.join(d.path, f"{key}.npy"), mmap_mode="r")
        contrast = None
        if cfg.caption_contrast_weight > 0:
            path = os.path.join(d.path, f"contrast_{key}.npy")
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"caption_contrast_weight > 0 needs {path}: per example, its caption with one word swapped "
                    f"(N, K, ...) (the shapes recipe's latents stage writes it)")
            contrast = np.load(path, mmap_mode="r")
        return ArrayLatentBatches(lat, txt, batch_size, seed=d.shuffle_seed + stage_index, text_key=key,
                                  contrast=contrast)
    if d.kind == "latent_cache":
        from cogvideox_jax.train.cli_precompute import latent_cache_data

        return latent_cache_data(cfg, stage_index, batch_size)
    if d.kind == "videos":
        from cogvideox_jax.train.video_latents import video_data_factory
        return video_data_factory(cfg, stage_index, lat_shape, text_shape, batch_size)
    raise ValueError(f"unknown data.kind={d.kind!r} (synthetic | precomputed | latent_cache | videos)")


@dataclass
class _Stage:
    index: int
    start: int
    step_fn: Callable
    data: object
    lat_shape: tuple
    text_shape: tuple


class Trainer:
    """Runs ``cfg`` in ``workdir`` (checkpoints in ``workdir/checkpoints``, logs in ``workdir/logs``).

    ``base_params``: host (numpy) params to start from (pretrained weights); default random init.
    ``data_factory(cfg, stage_index, latent_shape, text_shape, batch_size)`` → batch iterator.
    ``stdout``: print metric lines (and the progress bar); ``progress``: the progress bar alone.
    """

    def __init__(self, cfg, workdir: str, *, mesh=None, base_params=None, data_factory=None,
                 model_spec: ModelSpec | None = None, stdout: bool = True, progress: bool = True):
        self.cfg = cfg
        self.workdir = workdir
        self.mesh = make_mesh(mesh if mesh is not None else cfg.mesh, dcn=(cfg.mesh_dcn or None) if mesh is None else None)
        if model_spec is not None and cfg.execution.overrides():
            raise ValueError(f"execution options {sorted(cfg.execution.overrides())} apply to the model built from "
                             "cfg.model; this Trainer was given a model_spec: set them on its TransformerConfig")
        self.spec = model_spec or build_model(cfg)
        if cfg.caption_contrast_weight > 0 and data_factory is None and cfg.data.kind != "precomputed":
            raise ValueError("caption_contrast_weight > 0 needs data.kind='precomputed' (with contrast_text_emb.npy) "
                             f"or a data_factory whose batches carry swapped captions; got {cfg.data.kind!r}")
        self.data_factory = data_factory or default_data
        self.alphas_cumprod = training_alphas_cumprod(cfg.num_timesteps, snr_shift_scale=cfg.snr_shift_scale)
        self.timestep_probabilities = (None if cfg.timestep_density == "uniform" else timestep_probabilities(
            cfg.timestep_density, self.alphas_cumprod, cfg.timestep_logit_mean, cfg.timestep_logit_std,
            cfg.min_snr_gamma))
        self.optimizer, self.schedule = make_optimizer(cfg.optimizer, cfg.stages)
        self.lora_scale = lora_lib.lora_scale(cfg.lora.rank, cfg.lora.alpha) if cfg.lora else None
        self.is_main = jax.process_index() == 0
        ck = cfg.checkpoint
        self.checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep_last=ck.keep_last,
                                         keep_best=ck.keep_best, async_save=ck.async_save)
        self.log_dir = os.path.join(workdir, "logs")
        self.stdout = stdout
        self.progress = progress
        self._base_params = base_params
        self.state: TrainState | None = None
        self.state_shardings = None
        self.restored_step: int | None = None

    # ------------------------------------------------------------------ state
    def _shapes(self, stage):
        lat = latent_shape(stage, self.spec.latent_channels)
        return lat, self.spec.text_shape(self.cfg.text_len)

    def build_state(self) -> TrainState:
        cfg = self.cfg
        lat, txt = self._shapes(cfg.stages[0])
        probe = (1, *lat), (1, *txt)
        boxed = abstract_boxed_params(self.spec, *probe)
        base_sh = param_shardings(boxed, self.mesh)
        key = jax.random.PRNGKey(cfg.seed)
        k_init, k_lora, k_state = jax.random.split(key, 3)
        if self._base_params is None:
            init = jax.jit(lambda k: init_params(self.spec, k, *probe), out_shardings=base_sh)
            with jax.set_mesh(self.mesh):
                base = init(k_init)
        else:
            base = place_params(self._base_params, base_sh)
        if cfg.lora:
            stack = lora_lib.stack_axes_from_names(_logical_names(boxed))
            lora_host = lora_lib.init_lora_params(k_lora, _shape_tree(boxed), cfg.lora.rank, cfg.lora.targets, stack)
            lora_sh = lora_lib.lora_shardings(lora_host, base_sh, self.mesh)
            trainable, trainable_sh = place_params(jax.device_get(lora_host), lora_sh), lora_sh
            frozen, frozen_sh = base, base_sh
        else:
            trainable, trainable_sh, frozen, frozen_sh = base, base_sh, None, None
        state = create_train_state(trainable, self.optimizer, jax.random.key_data(k_state), frozen=frozen,
                                   use_ema=cfg.ema_decay > 0)
        self.state_shardings = state_shardings(jax.eval_shape(lambda: state), self.optimizer, trainable_sh,
                                               self.mesh, frozen_shardings=frozen_sh)
        self.state = jax.device_put(state, self.state_shardings)
        return self.state

    def restore(self, step: int | None = None) -> dict | None:
        """Restore the latest (or ``step``) checkpoint onto this trainer's mesh; returns the data state."""
        if self.state is None:
            self.build_state()
        if (step if step is not None else self.checkpointer.latest_step()) is None:
            return None
        abstract = abstract_with_shardings(jax.eval_shape(lambda: self.state), self.state_shardings)
        self.state, data_state, _meta = self.checkpointer.restore(abstract, step)
        self.restored_step = int(jax.device_get(self.state.step))
        return data_state

    # ------------------------------------------------------------------- loop
    def _stage(self, index: int, start: int, data_state: dict | None) -> _Stage:
        cfg = self.cfg
        stage = cfg.stages[index]
        lat, txt = self._shapes(stage)
        data = self.data_factory(cfg, index, lat, txt, cfg.batch_size)
        if self.spec.image_conditioned and not getattr(data, "provides_image_latents", False):
            data = FirstLatentFrameImages(data)
        if data_state and data_state.get("stage") == index and "iter" in data_state:
            data.set_state(data_state["iter"])
        opts = StepOptions(self.alphas_cumprod, text_dropout=cfg.text_dropout,
                           explicit_uniform=cfg.explicit_uniform_sampling,
                           timestep_probabilities=self.timestep_probabilities,
                           grad_accum_steps=cfg.optimizer.grad_accum_steps, ema_decay=cfg.ema_decay,
                           lora_scale=self.lora_scale, null_text_emb=self._null_text_emb(),
                           image_dropout=cfg.image_dropout if self.spec.image_conditioned else None,
                           ofs=self.spec.ofs, object_loss_weight=cfg.object_loss_weight,
                           object_threshold=cfg.object_threshold, rollout_fraction=cfg.rollout_fraction,
                           rollout_max_jump=cfg.rollout_max_jump, rollout_min_t=cfg.rollout_min_t,
                           rollout_start_step=cfg.rollout_start_step,
                           caption_contrast_weight=cfg.caption_contrast_weight,
                           caption_contrast_sharpness=cfg.caption_contrast_sharpness,
                           caption_contrast_start_step=cfg.caption_contrast_start_step)
        ndims = {"latents": 5, self.spec.text_key: 1 + len(txt),
                 **({f"contrast_{self.spec.text_key}": 1 + len(txt)} if cfg.caption_contrast_weight > 0 else {}),
                 **({"image_latents": 5} if self.spec.image_conditioned else {})}
        step_fn = make_train_step(self.spec.module, self.optimizer, self.schedule, opts, self.mesh,
                                  self.state_shardings, batch_ndims=ndims)
        return _Stage(index, start, step_fn, data, (cfg.batch_size, *lat), (cfg.batch_size, *txt))

    def _null_text_emb(self):
        """Precomputed data may carry ``null_text_emb.npy`` (the encoded empty prompt; ``null_text_ids.npy``,
        its token ids, for a token-id model): caption dropout then uses it instead of zeros."""
        d = self.cfg.data
        path = os.path.join(d.path, f"null_{self.spec.text_key}.npy")
        if d.kind == "precomputed" and os.path.exists(path):
            return np.load(path).astype(np.float32)
        return None

    def _device_batch(self, batch: dict, shardings: dict, process_local: bool = False) -> dict:
        """Global numpy batch → sharded arrays (each device takes its rows); ``process_local``: the
        batch is this process's slice (pixel pipelines shard by process)."""
        out = {}
        for k, sh in shardings.items():
            arr = np.asarray(batch[k], np.float32)
            if process_local:
                out[k] = jax.make_array_from_process_local_data(sh, arr)
            else:
                out[k] = jax.make_array_from_callback(arr.shape, sh, lambda idx, a=arr: a[idx])
        return out

    def fit(self, max_steps: int | None = None) -> list[dict]:
        """Train until the end of the last stage (or ``max_steps`` global steps); returns logged records."""
        cfg = self.cfg
        data_state = self.restore()
        step = int(jax.device_get(self.state.step))
        if self.restored_step is not None and self.is_main:
            print(f"restored step {self.restored_step} from {self.checkpointer.directory}", flush=True)
        end = cfg.total_steps if max_steps is None else min(max_steps, cfg.total_steps)
        logger = None
        records: list[dict] = []
        current = None
        timer = StepTimer()
        last_loss = None
        from tqdm.auto import tqdm

        bar = tqdm(total=end, initial=step, desc="train", unit="step",
                   disable=not (self.is_main and self.stdout and self.progress), file=sys.stderr)
        while step < end:
            index, start = stage_at(cfg.stages, step)
            if current is None or current.index != index:
                current = self._stage(index, start, data_state)
                data_state = None
                if logger:
                    logger.close()
                logger = self._logger(current)
                timer = StepTimer()
            batch = self._device_batch(next(current.data), current.step_fn.batch_shardings,
                                       getattr(current.data, "process_local", False))
            self.state, metrics = current.step_fn(self.state, batch)
            step += 1
            bar.update(1)
            save = step % cfg.checkpoint.every_steps == 0 or step == end
            if step % cfg.log_every == 0 or save or step == end:
                host = {k: float(v) for k, v in jax.device_get(metrics).items()}
                last_loss = host["loss"]
                rec = logger.log(step, {**host, "stage": index}, timer.lap() / _steps_since(records, step,
                                                                                             cfg.log_every))
                records.append(rec)
                bar.set_postfix(loss=f"{last_loss:.4g}", stage=index)
            if save:
                self.checkpointer.save(step, self.state, {"stage": index, "iter": current.data.get_state()},
                                       metrics={"loss": last_loss} if last_loss is not None else None,
                                       meta={"mesh": mesh_shape_str(self.mesh), "model": cfg.model})
        bar.close()
        self.checkpointer.wait()
        if logger:
            logger.close()
        return records

    def _logger(self, st: _Stage) -> MetricsLogger:
        flops = transformer_train_flops(self.spec, st.lat_shape, self.cfg.text_len)
        n_txt, n_vid = sequence_lengths(self.spec, st.lat_shape, self.cfg.text_len)
        peak = self.cfg.peak_flops_per_device or peak_flops_for(jax.devices()[0].device_kind)
        return MetricsLogger(self.log_dir, flops_per_step=flops, tokens_per_step=st.lat_shape[0] * (n_txt + n_vid),
                             peak_flops=peak, num_devices=jax.device_count(), stdout=self.stdout,
                             is_main=self.is_main)

    def close(self) -> None:
        self.checkpointer.close()


def _steps_since(records, step, log_every) -> int:
    prev = records[-1]["step"] if records else None
    return max(1, step - prev) if prev is not None else max(1, min(step, log_every))


def _logical_names(boxed):
    import flax.linen as nn
    return nn.get_partition_spec(boxed)


def _shape_tree(boxed):
    import flax.linen as nn
    return nn.unbox(boxed)


def host_tree(tree):
    """Full numpy copy of a (possibly multi-process sharded) pytree on every process."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(one, tree)


def params_checksum(params) -> float:
    """Float64 sum of |p| over all leaves in a fixed order (cross-process / cross-run comparison)."""
    flat = traverse_util.flatten_dict(host_tree(params), sep="/")
    return float(sum(np.abs(np.asarray(flat[k], np.float64)).sum() for k in sorted(flat)))


__all__ = ["Trainer", "latent_shape", "stage_at", "params_checksum", "host_tree"]
