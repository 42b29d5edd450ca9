"""Training configuration dataclasses (frozen). Presets live in ``configs/train_<name>.py`` as ``get_config()``.

Progressive training (paper §2/§3: low resolution → high resolution, more frames) is a tuple of
``StageConfig`` run in sequence; each stage may change resolution, frames, steps and lr.
``apply_overrides(cfg, ["optimizer.lr=1e-4", "stages.0.steps=10"])`` implements ``--set``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-5                 # SAT SFT 1e-5; diffusers finetune/ 2e-5
    warmup_steps: int = 100
    schedule: str = "constant"       # "constant" | "cosine" (cosine decays to lr·final_lr_ratio over decay_steps)
    decay_steps: int = 0             # cosine: steps after warmup; 0 → the stage's steps
    final_lr_ratio: float = 0.0
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 1e-4
    grad_clip: float = 1.0           # global norm; 0 disables (SAT 0.1, finetune/ 1.0)
    grad_accum_steps: int = 1        # optax.MultiSteps


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 128
    alpha: float = 64.0
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out")


@dataclass(frozen=True)
class StageConfig:
    name: str = "main"
    steps: int = 1000
    num_frames: int = 49             # pixel frames (latent t = (F − 1)//4 + 1)
    height: int = 480
    width: int = 720
    lr: float | None = None          # None → optimizer.lr


def _execution_options():
    """``TransformerConfig``'s ``EXECUTION_FIELDS``, each ``None`` by default (the preset's value)."""
    from configs.transformer import EXECUTION_FIELDS, TransformerConfig

    hints = typing.get_type_hints(TransformerConfig)
    return [(name, hints[name] | None, field(default=None)) for name in EXECUTION_FIELDS]


ModelExecutionConfig = dataclasses.make_dataclass(
    "ModelExecutionConfig", _execution_options(), frozen=True, namespace={
        "__module__": __name__,
        "__doc__": """How ``TrainConfig.model``'s transformer preset runs: the ``TransformerConfig`` options that
    leave what its weights compute unchanged (``configs/transformer.py``: ``EXECUTION_FIELDS``), ``None``
    keeping the preset's value. Spelled ``--set execution.matmul_dtype=bfloat16`` (``train``; ``train-shapes``:
    ``transformer_train.execution.matmul_dtype``) and ``load_diffusers(folder, matmul_dtype="bfloat16")``.
    ``execution.sequence_parallel=ulysses`` (or ``ring``) with e.g. ``mesh=fsdp=2,sequence=4`` splits every
    clip's tokens over ``sequence``.""",
        "overrides": lambda self: {k: v for k, v in dataclasses.asdict(self).items() if v is not None}})


@dataclass(frozen=True)
class CheckpointConfig:
    directory: str = "checkpoints"
    every_steps: int = 500
    keep_last: int = 3
    keep_best: int = 1               # best by the logged loss (0 disables)
    async_save: bool = True


@dataclass(frozen=True)
class DataConfig:
    kind: str = "synthetic"          # "synthetic" | "precomputed" (latents + text_emb .npy) | "latent_cache"
                                     # (`cogvideox-jax precompute` ArrayRecord shards) | "videos" (grain pipeline)
    path: str = ""                   # precomputed: folder with latents.npy + text_emb.npy; latent_cache: cache
                                     # folder(s), comma-separated; videos: data root
    pretrained: str = ""             # videos: diffusers CogVideoX root (vae/, text_encoder/, tokenizer/)
    shuffle_seed: int = 0
    num_synthetic: int = 16          # synthetic: distinct examples cycled through


@dataclass(frozen=True)
class ValidationConfig:
    """Samples drawn while training (``train/validation.py``): every ``every_steps`` steps (0: off) each
    prompt is sampled with the pipeline's own code from the current weights (the EMA's when EMA is on,
    LoRA merged) and written to ``WORKDIR/validation/step_<N>/<i>.mp4`` and TensorBoard. Needs the
    run's VAE, T5 and tokenizer: ``init_from`` a pipeline (diffusers root or ``convert`` checkpoint),
    or ``data.pretrained``. ``--set validation.prompts='["a, b", "c"]'`` (JSON) or ``prompts_file``."""
    every_steps: int = 0
    prompts: tuple[str, ...] = ()
    prompts_file: str = ""             # one prompt per line (added to ``prompts``)
    images: tuple[str, ...] = ()       # I2V models: one conditioning image per prompt
    negative_prompt: str = ""
    num_frames: int = 0                # 0: the frames / size of the stage being trained
    height: int = 0
    width: int = 0
    steps: int = 50
    guidance_scale: float = 6.0
    use_dynamic_cfg: bool = False
    seed: int = 0
    fps: float = 8.0


@dataclass(frozen=True)
class TrainConfig:
    model: str = "tiny-2b"           # transformer preset name (configs/transformer.py), "standin", or "auto"
                                     # (the architecture of ``init_from``; a named preset is checked against it)
    init_from: str = ""              # start from these weights: a diffusers pipeline root, its transformer/
                                     # folder, a `cogvideox-jax convert` checkpoint or a train workdir (its
                                     # latest step); a workdir's own checkpoint wins when resuming
    init_lora: str = ""              # LoRA runs: start the adapters from this diffusers / PEFT LoRA file
    mesh: str = "fsdp=-1"            # per-slice (ICI) mesh, parallel/mesh.py syntax
    mesh_dcn: str = ""               # multi-slice: across-slice mesh, e.g. "data=2"
    batch_size: int = 8              # global
    seed: int = 0
    snr_shift_scale: float = 1.0     # 2b trains with 3.0
    num_timesteps: int = 1000
    explicit_uniform_sampling: bool = True
    timestep_density: str = "uniform"   # "uniform" | "logit_normal" | "min_snr" (train/timestep_density.py)
    timestep_logit_mean: float = 0.0    # logit_normal: logit(t/T) ~ N(mean, std); mean < 0 favours low noise
    timestep_logit_std: float = 1.0
    min_snr_gamma: float = 5.0          # min_snr: density ∝ min(SNR, γ)/(SNR + 1)
    text_dropout: float = 0.1        # SAT 10 % zero embeddings; finetune/ 0
    image_dropout: float = 0.05      # I2V models: conditioning image zeroed (the reference's 5 %)
    text_len: int = 226
    ema_decay: float = 0.0           # 0 disables EMA
    max_nonfinite_steps: int = 3     # a step with a non-finite loss / gradient norm is not applied; this many
                                     # in a row stop the run (0: never stop)
    param_dtype: str = "float32"
    dtype: str = "float32"
    # the preset's execution options (scan, remat, attention backend, matmul dtype); only for a model
    # built from ``model`` (a Trainer given a model_spec, e.g. the shapes recipe's, rejects them)
    execution: ModelExecutionConfig = field(default_factory=ModelExecutionConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lora: LoraConfig | None = None
    stages: tuple[StageConfig, ...] = (StageConfig(),)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    log_every: int = 10
    log_dir: str = "logs"
    peak_flops_per_device: float = 0.0   # for MFU; 0 → guess from the device kind

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


def _cast(value: str, typ):
    origin = typing.get_origin(typ)
    if typ is bool:
        return value.lower() in ("1", "true", "yes", "on")
    if typ in (int, float, str):
        return typ(value)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if value.lower() == "none":
            return None
        return _cast(value, args[0])
    if origin is tuple:
        elem = typing.get_args(typ)[0] if typing.get_args(typ) else str
        if value.lstrip().startswith("["):  # JSON list: items may contain commas (prompts)
            import json

            return tuple(_cast(str(v), elem) for v in json.loads(value))
        return tuple(_cast(v, elem) for v in value.split(",") if v)
    return value


def apply_overrides(cfg, items):
    """Return ``cfg`` with ``key=value`` overrides (dotted paths; integers index tuples of stages)."""
    for item in items or ():
        key, value = item.split("=", 1)
        cfg = _set(cfg, key.strip().split("."), value.strip())
    return cfg


def _set(obj, path, value):
    head, rest = path[0], path[1:]
    if isinstance(obj, tuple):
        i = int(head)
        return obj[:i] + (_set(obj[i], rest, value),) + obj[i + 1:]
    hints = typing.get_type_hints(type(obj))
    if head not in hints:
        raise KeyError(f"{type(obj).__name__} has no field {head!r}")
    if rest:
        child = getattr(obj, head)
        if child is None and head == "lora":
            child = LoraConfig()
        return dataclasses.replace(obj, **{head: _set(child, rest, value)})
    return dataclasses.replace(obj, **{head: _cast(value, hints[head])})
