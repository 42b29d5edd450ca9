"""The training loop: model + mesh + state + data + checkpoints + metrics, stage after stage.

``Trainer(cfg, workdir=…).fit()`` builds (or restores) the state, then runs every progressive stage
(its own latent shape and data iterator; one optimizer and lr schedule joined over all stages).
Checkpoints hold the state and the data iterator's position, so a killed run resumes on exactly the
batches, timesteps and noise an uninterrupted run uses.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cogvideox_jax import paths
from cogvideox_jax.parallel.mesh import local_batch_divisor, make_mesh, mesh_shape_str
from cogvideox_jax.parallel.param_sharding import param_shardings, place_params
from cogvideox_jax.train import lora as lora_lib
from cogvideox_jax.train.checkpointing import Checkpointer, abstract_with_shardings
from cogvideox_jax.train.diffusion_loss import training_alphas_cumprod
from cogvideox_jax.train.init_source import (init_probe, load_init_params, random_base_params, reads_shards,
                                             resolve_init)
from cogvideox_jax.train.latent_batches import ArrayLatentBatches, FirstLatentFrameImages, SyntheticLatentBatches
from cogvideox_jax.train.metrics_logging import (MetricsLogger, drop_records_after, StepTimer, peak_flops_for, sequence_lengths,
                                                 transformer_train_flops)
from cogvideox_jax.train.model_factory import ModelSpec, abstract_boxed_params, build_model
from cogvideox_jax.train.optimizer import make_optimizer
from cogvideox_jax.train.params_fingerprint import params_fingerprint
from cogvideox_jax.train.run_workdir import write_manifest
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
    if d.kind == "precomputed":
        lat = np.load(os.path.join(d.path, "latents.npy"), mmap_mode="r")
        txt = np.load(os.path.join(d.path, "text_emb.npy"), mmap_mode="r")
        return ArrayLatentBatches(lat, txt, batch_size, seed=d.shuffle_seed + stage_index)
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
    ``loss_weights(x0) -> weights``: per-element v-loss weights (``train_step.StepOptions.loss_weights``).
    """

    def __init__(self, cfg, workdir: str, *, mesh=None, base_params=None, data_factory=None,
                 model_spec: ModelSpec | None = None, stdout: bool = True, progress: bool = True,
                 loss_weights: Callable | None = None):
        self.workdir = paths.absolute(workdir)
        if not cfg.init_from and model_spec is None and base_params is None:
            cfg = _resumed_init(cfg, self.workdir)
        self.cfg = cfg
        # everything checkable without weights is checked before the workdir is touched
        self.init = None
        if cfg.init_from:
            if model_spec is not None or base_params is not None:
                raise ValueError("init_from and a Trainer given model_spec / base_params exclude each other")
            self.init = resolve_init(cfg.init_from)
        if cfg.init_lora and not cfg.lora:
            raise ValueError("init_lora continues a LoRA: the config needs a lora block (--set lora.rank=...)")
        if cfg.init_lora and not paths.exists(cfg.init_lora):
            raise FileNotFoundError(f"init_lora {cfg.init_lora}: no such file or folder")
        self.mesh = make_mesh(mesh if mesh is not None else cfg.mesh, dcn=(cfg.mesh_dcn or None) if mesh is None else None)
        if cfg.batch_size % local_batch_divisor(self.mesh):
            raise ValueError(f"batch_size {cfg.batch_size} does not split over the mesh's data x fsdp = "
                             f"{local_batch_divisor(self.mesh)} devices ({mesh_shape_str(self.mesh)}): use a multiple")
        if model_spec is not None and cfg.execution.overrides():
            raise ValueError(f"execution options {sorted(cfg.execution.overrides())} apply to the model built from "
                             "cfg.model; this Trainer was given a model_spec: set them on its TransformerConfig")
        self.spec = model_spec or build_model(cfg, self.init, mesh=self.mesh)
        self.loss_weights = loss_weights
        self.pipeline_root = (self.init.pipeline if self.init is not None else None) or cfg.data.pretrained or None
        self.validator = None
        if cfg.validation.every_steps > 0:
            from cogvideox_jax.train.validation import Validator

            self.validator = Validator(cfg.validation, self.pipeline_root, self.spec, self.mesh, self.workdir)
        self.data_factory = data_factory or default_data
        self.alphas_cumprod = training_alphas_cumprod(cfg.num_timesteps, snr_shift_scale=cfg.snr_shift_scale)
        self.timestep_probabilities = (None if cfg.timestep_density == "uniform" else timestep_probabilities(
            cfg.timestep_density, self.alphas_cumprod, cfg.timestep_logit_mean, cfg.timestep_logit_std,
            cfg.min_snr_gamma))
        self.optimizer, self.schedule = make_optimizer(cfg.optimizer, cfg.stages)
        self.lora_scale = lora_lib.lora_scale(cfg.lora.rank, cfg.lora.alpha) if cfg.lora else None
        self.is_main = jax.process_index() == 0
        ck = cfg.checkpoint
        self.checkpointer = Checkpointer(paths.join(self.workdir, "checkpoints"), keep_last=ck.keep_last,
                                         keep_best=ck.keep_best, async_save=ck.async_save)
        self.log_dir = paths.join(self.workdir, "logs")
        self.stdout = stdout
        self.progress = progress
        self._base_params = base_params
        self.base_info: dict | None = None   # LoRA runs: where the frozen base came from, its fingerprint
        self.state: TrainState | None = None
        self.state_shardings = None
        self.restored_step: int | None = None
        self._merge = None

    # ------------------------------------------------------------------ state
    def _shapes(self, stage):
        lat = latent_shape(stage, self.spec.latent_channels)
        return lat, (self.cfg.text_len, self.spec.text_dim)

    def _param_plan(self):
        """(boxed abstract params, their shardings): nothing is allocated."""
        boxed = abstract_boxed_params(self.spec, *init_probe(self.spec, self.cfg))
        return boxed, param_shardings(boxed, self.mesh)

    def _keys(self):
        return jax.random.split(jax.random.PRNGKey(self.cfg.seed), 3)   # init, LoRA init, state

    def _base(self, base_sh):
        """The starting (LoRA: frozen) transformer on the mesh: given host params, ``init_from``, or random."""
        if self._base_params is not None:
            return place_params(self._base_params, base_sh)
        if self.init is not None:
            if self.is_main:
                how = ("each process reads its shards" if reads_shards(self.init, self.spec.module) else
                       "from a host copy, placed shard by shard")
                print(f"initialising from {self.init.path} ({self.init.kind}; {how})", flush=True)
            return load_init_params(self.init, self.spec.module, base_sh, jnp.dtype(self.cfg.param_dtype))
        with jax.set_mesh(self.mesh):
            return random_base_params(self.spec, self.cfg, base_sh)

    def _lora_plan(self, boxed, base_sh):
        """(host LoRA tree, its shardings): fresh (B = 0), or continued from ``init_lora``."""
        stack = lora_lib.stack_axes_from_names(_logical_names(boxed))
        lora_host = jax.device_get(lora_lib.init_lora_params(self._keys()[1], _shape_tree(boxed), self.cfg.lora.rank,
                                                             self.cfg.lora.targets, stack))
        if self.cfg.init_lora:
            from cogvideox_jax.convert.lora_files import lora_tree_from_file

            lora_host = lora_tree_from_file(paths.localize(self.cfg.init_lora), lora_host, self.lora_scale)
        return lora_host, lora_lib.lora_shardings(lora_host, base_sh, self.mesh)

    def _set_state_shardings(self, state, trainable_sh, frozen_sh):
        self.state_shardings = state_shardings(jax.eval_shape(lambda: state), self.optimizer, trainable_sh,
                                               self.mesh, frozen_shardings=frozen_sh)

    def build_state(self) -> TrainState:
        """A fresh state: the base from ``init_from`` (or given host params, or a random init), for LoRA
        runs the adapters, the optimizer state and the EMA."""
        cfg = self.cfg
        boxed, base_sh = self._param_plan()
        base = self._base(base_sh)
        if cfg.lora:
            lora_host, lora_sh = self._lora_plan(boxed, base_sh)
            trainable, trainable_sh = place_params(lora_host, lora_sh), lora_sh
            frozen, frozen_sh = base, base_sh
            self.base_info = self._describe_base(frozen)
        else:
            trainable, trainable_sh, frozen, frozen_sh = base, base_sh, None, None
        state = create_train_state(trainable, self.optimizer, jax.random.key_data(self._keys()[2]), frozen=frozen,
                                   use_ema=cfg.ema_decay > 0)
        self._set_state_shardings(state, trainable_sh, frozen_sh)
        self.state = jax.device_put(state, self.state_shardings)
        return self.state

    def _describe_base(self, frozen) -> dict:
        source = self.init.describe() if self.init is not None else (
            {"path": None, "kind": "given"} if self._base_params is not None else
            {"path": None, "kind": "random", "seed": self.cfg.seed})
        return {**source, "fingerprint": params_fingerprint(frozen)}

    def _abstract_state(self):
        """The state's shapes with their target shardings, without allocating it (a LoRA run's frozen
        base is loaded: checkpoints do not hold it)."""
        cfg = self.cfg
        boxed, base_sh = self._param_plan()
        params = abstract_with_shardings(_shape_tree(boxed), base_sh)
        if cfg.lora:
            lora_host, lora_sh = self._lora_plan(boxed, base_sh)
            trainable, trainable_sh = abstract_with_shardings(lora_host, lora_sh), lora_sh
            frozen = self._base(base_sh)
            self.base_info = self._describe_base(frozen)
        else:
            trainable, trainable_sh, frozen = params, base_sh, None
        abstract = jax.eval_shape(lambda t: create_train_state(t, self.optimizer, jnp.zeros((2,), jnp.uint32),
                                                               use_ema=cfg.ema_decay > 0), trainable)
        self._set_state_shardings(abstract, trainable_sh, None)
        return abstract_with_shardings(abstract, self.state_shardings), frozen, (base_sh if cfg.lora else None)

    def restore(self, step: int | None = None) -> dict | None:
        """Restore the latest (or ``step``) checkpoint onto this trainer's mesh; returns the data state.
        Without a checkpoint, builds a fresh state (``build_state``) and returns ``None``."""
        if (step if step is not None else self.checkpointer.latest_step()) is None:
            if self.state is None:
                self.build_state()
            return None
        abstract, frozen, frozen_sh = self._abstract_state()
        state, data_state, meta = self.checkpointer.restore(abstract, step)
        if frozen is not None:
            recorded = meta.get("base") or {}
            if recorded.get("fingerprint") and recorded["fingerprint"] != self.base_info["fingerprint"]:
                raise ValueError(
                    f"this LoRA run's checkpoints were trained on a base with fingerprint {recorded['fingerprint']} "
                    f"({recorded.get('path') or recorded.get('kind')}); the base loaded now "
                    f"({self.base_info.get('path') or self.base_info.get('kind')}) has {self.base_info['fingerprint']}: "
                    "resume on the same base weights")
            state = state.replace(frozen=frozen)
            self._set_state_shardings(state, self.state_shardings.params, frozen_sh)
        self.state = state
        self.restored_step = int(jax.device_get(self.state.step))
        return data_state

    # ------------------------------------------------------------------- loop
    def _stage(self, index: int, start: int, data_state: dict | None) -> _Stage:
        cfg = self.cfg
        stage = cfg.stages[index]
        lat, txt = self._shapes(stage)
        data = self.data_factory(self._data_cfg(), index, lat, txt, cfg.batch_size)
        if self.spec.image_conditioned and not getattr(data, "provides_image_latents", False):
            data = FirstLatentFrameImages(data)
        if data_state and data_state.get("stage") == index and "iter" in data_state:
            data.set_state(data_state["iter"])
        return _Stage(index, start, self.make_step(index), data, (cfg.batch_size, *lat), (cfg.batch_size, *txt))

    def step_options(self) -> StepOptions:
        """What the jitted step does besides the model (``train_step.StepOptions``): the config and what
        this trainer derives from it."""
        return StepOptions(self.cfg, self.alphas_cumprod, timestep_probabilities=self.timestep_probabilities,
                           lora_scale=self.lora_scale, null_text_emb=self._null_text_emb(),
                           image_conditioned=self.spec.image_conditioned, ofs=self.spec.ofs,
                           patch_size_t=self.spec.patch_size_t, loss_weights=self.loss_weights)

    def batch_shapes(self, stage_index: int = 0) -> dict:
        """The shape of every array a batch of stage ``stage_index`` carries (its batch dimension is sharded
        over data / fsdp)."""
        lat, txt = self._shapes(self.cfg.stages[stage_index])
        b = self.cfg.batch_size
        return {"latents": (b, *lat), "text_emb": (b, *txt),
                **({"image_latents": (b, 1, *lat[1:])} if self.spec.image_conditioned else {})}

    def make_step(self, stage_index: int = 0):
        """The jitted ``step(state, batch) -> (state, metrics)`` of stage ``stage_index`` on this trainer's
        mesh, with its state shardings (``build_state`` / ``restore`` / ``abstract_step`` set them): what
        ``fit`` runs."""
        if self.state_shardings is None:
            raise RuntimeError("make_step needs the state's shardings: build_state(), restore() or abstract_step() first")
        return make_train_step(self.spec.module, self.optimizer, self.schedule, self.step_options(), self.mesh,
                               self.state_shardings, self.batch_shapes(stage_index))

    def abstract_step(self, stage_index: int = 0):
        """``(step, abstract state, abstract batch)`` of stage ``stage_index`` without allocating or reading
        any weights (a LoRA run's frozen base abstract too): ``step.jitted.lower(state, batch)`` under
        ``jax.set_mesh(self.mesh)`` is the program ``fit`` runs (``cogvideox-jax aot --job train`` compiles
        it for TPU topologies)."""
        if self.cfg.lora:
            boxed, base_sh = self._param_plan()
            lora_host, lora_sh = self._lora_plan(boxed, base_sh)
            trainable = abstract_with_shardings(lora_host, lora_sh)
            frozen = abstract_with_shardings(_shape_tree(boxed), base_sh)
            abstract = jax.eval_shape(lambda t, f: create_train_state(
                t, self.optimizer, jnp.zeros((2,), jnp.uint32), frozen=f, use_ema=self.cfg.ema_decay > 0),
                trainable, frozen)
            self._set_state_shardings(abstract, lora_sh, base_sh)
            abstract = abstract_with_shardings(abstract, self.state_shardings)
        else:
            abstract, _, _ = self._abstract_state()
        step = self.make_step(stage_index)
        batch = {k: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=step.batch_shardings[k])
                 for k, shape in self.batch_shapes(stage_index).items()}
        return step, abstract, batch

    def _data_cfg(self):
        """``cfg`` as the data sources read it: the run's pipeline (``--init``'s) encodes videos, and data
        on cloud storage is read from a local copy (``paths.localize``)."""
        d = self.cfg.data
        pretrained = self.pipeline_root or ""
        if pretrained and d.kind == "videos":
            from cogvideox_jax.pipeline.components import local_pipeline

            pretrained = local_pipeline(pretrained, ("vae", "text_encoder"))
        data_path = ",".join(paths.localize(p) if paths.is_url(p) else p for p in d.path.split(",")) if d.path else ""
        if (pretrained, data_path) == (d.pretrained, d.path):
            return self.cfg
        return dataclasses.replace(self.cfg, data=dataclasses.replace(d, pretrained=pretrained, path=data_path))

    def _null_text_emb(self):
        """Precomputed data may carry ``null_text_emb.npy`` (the encoded empty prompt): caption dropout
        then uses it instead of zeros."""
        d = self._data_cfg().data
        path = os.path.join(d.path, "null_text_emb.npy")
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
        if self.is_main:
            write_manifest(self.workdir, self.manifest())
            drop_records_after(self.log_dir, step)  # a crash after the last checkpoint logged steps redone now
        every_val = cfg.validation.every_steps if self.validator is not None else 0
        logger = None
        records: list[dict] = []
        current = None
        timer = StepTimer()
        last_loss = None
        from tqdm.auto import tqdm

        bar = tqdm(total=end, initial=step, desc="train", unit="step",
                   disable=not (self.is_main and self.stdout and self.progress), file=sys.stderr)
        flags, streak, skipped = [], 0, 0   # non-finite steps: since the last log, in a row, in this run
        try:
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
                flags.append(metrics["nonfinite"])
                step += 1
                bar.update(1)
                save = step % cfg.checkpoint.every_steps == 0 or step == end
                validate = bool(every_val) and step % every_val == 0
                if step % cfg.log_every == 0 or save or step == end or validate:
                    for f in jax.device_get(flags):  # no host sync per step: the flags wait for the log
                        streak = streak + 1 if f else 0
                        skipped += int(bool(f))
                    flags = []
                    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    last_loss = host["loss"]
                    rec = logger.log(step, {**host, "stage": index, "nonfinite_steps": skipped,
                                            **_data_skips(current.data)},
                                     timer.lap() / _steps_since(records, step, cfg.log_every))
                    records.append(rec)
                    bar.set_postfix(loss=f"{last_loss:.4g}", stage=index)
                    if cfg.max_nonfinite_steps and streak >= cfg.max_nonfinite_steps:
                        raise NonFiniteTrainingError(
                            f"training stopped at step {step}: the loss or the gradient norm was not finite for "
                            f"{streak} steps in a row (steps {step - streak + 1}-{step}; none of them was "
                            f"applied). The last checkpoint in {self.checkpointer.directory} holds finite weights; "
                            "lower optimizer.lr (or check the data) and rerun to resume from it.")
                if save:
                    self._save(step, index, current, last_loss)
                if validate:  # outside the step-time metric: the timer restarts after it
                    self.validator.run(step, self.validation_params(), cfg.stages[index], logger)
                    timer = StepTimer()
        finally:
            bar.close()
            self.checkpointer.wait()
            if logger:
                logger.close()
        return records

    def _save(self, step: int, index: int, current: _Stage, last_loss) -> None:
        """Checkpoint the state, unless the step's loss was not finite or the weights hold a non-finite value
        (then the previous checkpoint stays the latest, and ``keep_best`` only ever ranks finite losses).
        A LoRA run's checkpoints hold the adapters, not the frozen base (its fingerprint instead)."""
        why = ("its loss was not finite (the step was not applied)" if last_loss is not None and not np.isfinite(last_loss)
               else None if _all_finite((self.state.params, self.state.ema)) else "the weights hold non-finite values")
        if why:
            if self.is_main:
                print(f"step {step}: not checkpointed: {why}", file=sys.stderr, flush=True)
            return
        self.checkpointer.save(step, self.state.replace(frozen={}), {"stage": index, "iter": current.data.get_state()},
                               metrics={"loss": last_loss} if last_loss is not None else None,
                               meta={"mesh": mesh_shape_str(self.mesh), "model": self.cfg.model,
                                     **({"base": self.base_info} if self.base_info else {})})

    def validation_params(self):
        """The weights samples are drawn from: the EMA's when the run keeps one, LoRA merged (on the mesh)."""
        trainable = self.state.ema if self.cfg.ema_decay > 0 else self.state.params
        if self.lora_scale is None:
            return trainable
        if self._merge is None:
            scale = self.lora_scale
            self._merge = jax.jit(lambda base, lora: lora_lib.merge_lora(base, lora, scale),
                                  out_shardings=self.state_shardings.frozen)
        with jax.set_mesh(self.mesh):
            return self._merge(self.state.frozen, trainable)

    def manifest(self) -> dict:
        """What ``WORKDIR/run.json`` records (``train/run_workdir.py``)."""
        module = self.spec.module
        transformer = None
        if hasattr(module, "config") and hasattr(module.config, "to_diffusers_config"):
            transformer = {**module.config.to_diffusers_config(), "scan_layers": module.config.scan_layers}
        return {"config": dataclasses.asdict(self.cfg), "transformer": transformer, "param_dtype": self.cfg.param_dtype,
                "init": self.init.describe() if self.init is not None else None,
                "pipeline": paths.absolute(self.pipeline_root) if self.pipeline_root else None,
                "lora": dataclasses.asdict(self.cfg.lora) if self.cfg.lora else None, "base": self.base_info}

    def _logger(self, st: _Stage) -> MetricsLogger:
        flops = transformer_train_flops(self.spec, st.lat_shape, self.cfg.text_len)
        n_txt, n_vid = sequence_lengths(self.spec, st.lat_shape, self.cfg.text_len)
        peak = self.cfg.peak_flops_per_device or peak_flops_for(jax.devices()[0].device_kind)
        return MetricsLogger(self.log_dir, flops_per_step=flops, tokens_per_step=st.lat_shape[0] * (n_txt + n_vid),
                             peak_flops=peak, num_devices=jax.device_count(), stdout=self.stdout,
                             is_main=self.is_main)

    def close(self) -> None:
        self.checkpointer.close()


def _resumed_init(cfg, workdir: str):
    """A workdir resumed without ``init_from``: the run's recorded init source (its weights' architecture,
    and a LoRA run's frozen base, come from there)."""
    from cogvideox_jax.train.run_workdir import checkpoint_steps, is_train_workdir, read_manifest

    if not (is_train_workdir(workdir) and checkpoint_steps(workdir)):
        return cfg
    init = (read_manifest(workdir).get("init") or {}).get("path")
    if not init:
        return cfg
    if jax.process_index() == 0:
        print(f"resuming {workdir}: its weights started from {init} (init_from)", flush=True)
    return dataclasses.replace(cfg, init_from=init)


class NonFiniteTrainingError(RuntimeError):
    """Training stopped: ``TrainConfig.max_nonfinite_steps`` steps in a row had a non-finite loss or gradient."""


@jax.jit
def _finite_tree(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _all_finite(tree) -> bool:
    return bool(jax.device_get(_finite_tree(tree)))


def _data_skips(data) -> dict:
    """``{"data_skipped": n}`` when the data source counts the videos it skipped (unreadable / undecodable)."""
    for _ in range(4):  # adapters wrap the pipeline's iterator in .source
        if data is None:
            break
        if hasattr(data, "num_skipped"):
            return {"data_skipped": int(data.num_skipped)}
        data = getattr(data, "source", None)
    return {}


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
