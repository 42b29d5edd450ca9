"""Ahead-of-time (AOT) compilation for real TPU topologies from any host (no TPU needed, only libtpu).

    report = compile_job(AOTJob(job="train", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4"))
    print(report.summary_line())

``jax.experimental.topologies.get_topology_desc`` gives abstract TPU devices of a named slice
("v5p:2x2x1" = v5p-8, "v6e:2x2", "v5e:2x2", ...); a ``Mesh`` over them plus ``jit(...).lower(
ShapeDtypeStructs with shardings).compile()`` runs the real XLA:TPU compiler, whose
``memory_analysis()`` / ``cost_analysis()`` give per-chip bytes and FLOPs. Nothing is allocated.

The programs compiled are the project's own, built by the code that runs them:

* ``train``: the trainer's jitted step. A ``TrainConfig`` (``--config`` / ``--set`` as ``cogvideox-jax
  train`` takes them, the job's flags on top: model, mesh, batch, one stage of the job's size, execution
  options) goes through ``Trainer.abstract_step``: ``train_step.make_train_step`` with the Trainer's
  state shardings, its ``StepOptions`` and batch shardings (v-loss, latent-frame padding for 1.5,
  forward + backward with the config's remat, clipping + AdamW, fp32 master weights).
* ``sample``: the pipeline's denoising function (``CogVideoXPipeline._denoise_fn``: the whole
  ``lax.scan`` over the steps, CFG batch ``[uncond, cond]``, guidance, the DPM-Solver++ step) on the
  mesh with its transformer built as ``from_pretrained(mesh=..., sequence_parallel=...)`` builds it;
  weights bf16.

Attention is the model's own (``models/attention.py``): ``splash`` (on a multi-device mesh per
(batch, head) shard inside ``shard_map``, and as Ulysses' local attention), ``xla``, or ``auto``
(splash on TPU). The model picks the Mosaic kernel, not interpret mode, because the compiled-for
platform is the mesh's (``attention.target_platform``).

Needs ``libtpu`` (the ``aot`` extra, ``jax[tpu]``; keep it in its own venv, e.g. ``.venv-tpu``). Without it
``cogvideox-jax aot`` exits with status 2 and says what to install.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

GiB = 1024**3
HBM_GIB = {"v5p": 95.0, "v6e": 32.0, "v5e": 16.0, "v4": 32.0}
VARIANTS = {"2b": "cogvideox-2b", "5b": "cogvideox-5b", "5b-i2v": "cogvideox-5b-i2v", "1.5-5b": "cogvideox1.5-5b",
            "1.5-5b-i2v": "cogvideox1.5-5b-i2v", "tiny-2b": "tiny-2b", "tiny-5b": "tiny-5b"}
ATTENTION = ("splash", "xla", "auto")
ATTENTION_ALIASES = {"splash-sharded": "splash"}   # an older name, still accepted


class LibTPUMissing(RuntimeError):
    """No libtpu in this Python: TPU topologies cannot be described, so nothing can be compiled for them."""


def libtpu_install_hint() -> str:
    return (f'`cogvideox-jax aot` compiles for TPU topologies with libtpu, which this Python ({sys.executable}) '
            f'does not have. Install it in its own venv (it replaces nothing here):\n'
            f'  python -m venv .venv-tpu && .venv-tpu/bin/pip install -e ".[aot]"   (from a checkout; or '
            f'pip install "cogvideox-jax[aot]")\n'
            f'then run .venv-tpu/bin/cogvideox-jax aot ...')


@dataclasses.dataclass(frozen=True)
class AOTJob:
    job: str = "sample"                 # "sample" | "train"
    variant: str = "5b"                 # key of VARIANTS (or a transformer preset name)
    topology: str = "v5p:2x2x1"
    mesh: str = "fsdp=-1"               # make_mesh spec over the topology's devices
    frames: Optional[int] = None        # pixel frames; None -> the preset's sample size
    height: Optional[int] = None
    width: Optional[int] = None
    batch: Optional[int] = None         # sample: prompts B (CFG batch 2B); train: global batch. None -> 1 per data shard
    sequence_parallel: Optional[str] = None   # None | "ulysses" | "ring"
    remat: str = "full"                 # train remat policy (configs.transformer.REMAT_POLICIES)
    attention: str = "splash"           # the model's attention backend
    scan_layers: bool = True
    dtype: str = "bfloat16"             # train: compute dtype (TrainConfig.dtype); params stay fp32
    matmul_dtype: Optional[str] = None  # train: TrainConfig.execution.matmul_dtype
    steps: int = 50                     # sample: denoising steps of the compiled loop
    config: Optional[str] = None        # train: a `cogvideox-jax train` config file (get_config())
    overrides: tuple = ()               # train: `--set key=value` on the TrainConfig, after the flags
    num_layers: Optional[int] = None    # the preset's depth replaced (cost-model extrapolation: estimate_step_seconds)

    def __post_init__(self):
        if self.job not in ("sample", "train"):
            raise ValueError(f"job must be 'sample' or 'train', got {self.job!r}")
        attention = ATTENTION_ALIASES.get(self.attention, self.attention)
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
        object.__setattr__(self, "attention", attention)
        object.__setattr__(self, "overrides", tuple(self.overrides))


@dataclasses.dataclass
class AOTReport:
    job: AOTJob
    device_kind: str
    num_devices: int
    latent_shape: tuple
    tokens: int
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    code_bytes: int
    flops: float                        # XLA cost_analysis per chip (a while loop's body counts once)
    compile_seconds: float
    model_flops: float = 0.0            # per chip and step: the trainer's estimate (train: 3x forward, no remat)
    cost_seconds: float = 0.0           # XLA's cost-model time of this program ("optimal_seconds"; a scanned
                                        # layer stack costed once, Mosaic kernels not at all)
    peak_flops: float = 0.0             # published bf16 peak per chip
    step_seconds_estimate: float = 0.0  # estimate_step_seconds (0: not estimated)

    @property
    def total_bytes(self) -> int:
        """Peak-ish per-chip footprint: arguments + outputs (minus donated aliases) + temporaries + code."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

    @property
    def hbm_gib(self) -> float:
        return HBM_GIB.get(self.job.topology.split(":")[0], float("nan"))

    @property
    def fits(self) -> bool:
        return self.total_bytes / GiB <= self.hbm_gib

    @property
    def mfu_estimate(self) -> float:
        """Model FLOPs per chip / (estimated step time x peak): the MFU if the step ran at XLA's cost-model
        time (``estimate_step_seconds``; an estimate, nothing ran). 0 when not estimated."""
        if self.step_seconds_estimate <= 0 or not self.peak_flops:
            return 0.0
        return self.model_flops / (self.step_seconds_estimate * self.peak_flops)

    def as_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "job"}
        d.update(dataclasses.asdict(self.job), total_bytes=self.total_bytes, hbm_gib=self.hbm_gib, fits=self.fits,
                 mfu_estimate=self.mfu_estimate)
        d["overrides"] = list(self.job.overrides)
        return d

    def summary_line(self) -> str:
        g = lambda b: f"{b / GiB:.2f}"  # noqa: E731
        j = self.job
        mfu = (f"; estimated {self.step_seconds_estimate:.2f} s/step (XLA cost model + splash at peak) -> MFU "
               f"estimate {100 * self.mfu_estimate:.0f} %" if self.step_seconds_estimate > 0 else "")
        return (f"{j.job} {j.variant} {j.topology} [{j.mesh}] sp={j.sequence_parallel} attn={j.attention} "
                f"latents={self.latent_shape} tokens={self.tokens}: per chip args {g(self.argument_bytes)} "
                f"out {g(self.output_bytes)} alias {g(self.alias_bytes)} temp {g(self.temp_bytes)} "
                f"code {g(self.code_bytes)} total {g(self.total_bytes)} / {self.hbm_gib:.0f} GiB "
                f"({'fits' if self.fits else 'DOES NOT FIT'}); model {self.model_flops / 1e12:.0f} TFLOP/chip "
                f"(XLA cost_analysis {self.flops / 1e12:.1f}){mfu}; compile {self.compile_seconds:.0f}s")


# ---------------------------------------------------------------------------------------------
# topology, shapes


def topology_devices(topology: str):
    """Abstract devices of a named TPU slice, e.g. ``"v5p:2x2x1"`` (needs libtpu, no TPU).
    Raises ``LibTPUMissing`` (with what to install) where JAX has no TPU support."""
    from jax.experimental import topologies

    # AOT only: no chip is opened, so several compiling processes may load libtpu at once; no TPU VM
    # here: a worker list silences libtpu's probing. Set while libtpu loads, then restored, so that
    # nothing later in this process (or a child) takes the host for a TPU pod.
    saved = {k: os.environ.get(k) for k in ("ALLOW_MULTIPLE_LIBTPU_LOAD", "TPU_WORKER_HOSTNAMES")}
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    try:
        return topologies.get_topology_desc(platform="tpu", topology_name=topology).devices
    except (RuntimeError, ImportError) as e:
        if "TPU support not installed" in str(e) or "libtpu" in str(e).lower() or isinstance(e, ImportError):
            raise LibTPUMissing(libtpu_install_hint()) from e
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def tpu_aot_available(topology: str = "v5p:2x2x1") -> bool:
    try:
        return len(topology_devices(topology)) > 0
    except Exception:  # no libtpu / unknown platform
        return False


def transformer_config(job: AOTJob):
    """The variant's ``TransformerConfig`` with the job's execution options (the sampling transformer's)."""
    from configs.transformer import get_preset

    cfg = get_preset(_preset_name(job))
    return cfg.replace(scan_layers=job.scan_layers, attention_backend=job.attention,
                       remat_policy=job.remat if job.job == "train" else "none",
                       sequence_parallel=job.sequence_parallel)


def _preset_name(job: AOTJob) -> str:
    """The job's transformer preset; with ``num_layers`` a copy of it of that depth, registered under a
    derived name (``TrainConfig.model`` names presets)."""
    from configs.transformer import PRESETS, get_preset

    name = VARIANTS.get(job.variant, job.variant)
    if job.num_layers is None:
        return name
    derived = f"{name}@layers={job.num_layers}"
    PRESETS.setdefault(derived, get_preset(name).replace(num_layers=job.num_layers))
    return derived


def latent_shape(cfg, frames: Optional[int], height: Optional[int], width: Optional[int]) -> tuple[int, int, int]:
    """Latent ``(t, h, w)`` for pixel ``frames x height x width``; t is padded up to a multiple of
    ``patch_size_t`` (CogVideoX 1.5: 81 frames -> 21 -> 22 latent frames), as the pipeline and the train
    step do."""
    frames = frames or cfg.sample_frames
    t = (frames - 1) // cfg.temporal_compression_ratio + 1
    h = height // 8 if height else cfg.sample_height
    w = width // 8 if width else cfg.sample_width
    pt = cfg.patch_size_t or 1
    t = -(-t // pt) * pt
    return t, h, w


def num_tokens(cfg, t: int, h: int, w: int) -> int:
    p, pt = cfg.patch_size, cfg.patch_size_t or 1
    return cfg.max_text_seq_length + (t // pt) * (h // p) * (w // p)


def _pixel_size(cfg, job: AOTJob) -> tuple[int, int, int]:
    s = 8
    return (job.frames or cfg.sample_frames, job.height or cfg.sample_height * s, job.width or cfg.sample_width * s)


def _sds(shape, dtype, sharding):
    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


# ---------------------------------------------------------------------------------------------
# train: the trainer's own step


def train_config(job: AOTJob, mesh: Mesh):
    """The ``TrainConfig`` of a train job: ``job.config`` (or the defaults) with the job's model, mesh,
    batch (default one clip per data shard), one stage of the job's size and its execution options, then
    ``job.overrides``. Weights are not read (no ``init_from``), validation is off."""
    from configs.train_config import ModelExecutionConfig, StageConfig, TrainConfig, apply_overrides
    from cogvideox_jax.parallel.mesh import local_batch_divisor, mesh_shape_str

    if job.config:
        from cogvideox_jax.train.cli_train import load_config

        cfg = load_config(job.config)
    else:
        cfg = TrainConfig(dtype="bfloat16")
    tcfg = transformer_config(job)
    frames, height, width = _pixel_size(tcfg, job)
    execution = ModelExecutionConfig(scan_layers=job.scan_layers, remat_policy=job.remat,
                                     attention_backend=job.attention, sequence_parallel=job.sequence_parallel,
                                     matmul_dtype=job.matmul_dtype or cfg.execution.matmul_dtype)
    cfg = dataclasses.replace(
        cfg, model=_preset_name(job), init_from="", init_lora="", mesh=mesh_shape_str(mesh),
        mesh_dcn="", batch_size=job.batch or local_batch_divisor(mesh), dtype=job.dtype, param_dtype="float32",
        stages=(StageConfig(name="aot", steps=1, num_frames=frames, height=height, width=width),),
        execution=execution, validation=dataclasses.replace(cfg.validation, every_steps=0),
        text_len=tcfg.max_text_seq_length)
    return apply_overrides(cfg, list(job.overrides))


def _lower_train(job: AOTJob, mesh: Mesh):
    """``(lowered, latent shape, ModelSpec, cfg)`` of the trainer's step for ``job`` on ``mesh``."""
    from cogvideox_jax.train.trainer import Trainer

    cfg = train_config(job, mesh)
    with tempfile.TemporaryDirectory() as workdir:   # the Trainer's checkpoint folder; nothing is written
        trainer = Trainer(cfg, workdir, mesh=mesh, stdout=False, progress=False)
        try:
            step, state, batch = trainer.abstract_step(0)
            with jax.set_mesh(mesh):   # the model's attention is chosen for the mesh's (TPU) platform
                lowered = step.jitted.lower(state, batch)
        finally:
            trainer.close()
    return lowered, tuple(batch["latents"].shape), trainer.spec, cfg


# ---------------------------------------------------------------------------------------------
# sample: the pipeline's own denoising loop


def _lower_sample(job: AOTJob, mesh: Mesh):
    import flax.linen as nn

    from configs.scheduler import SchedulerConfig
    from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs
    from cogvideox_jax.parallel.param_sharding import param_shardings
    from cogvideox_jax.parallel.sharded_apply import batch_sharding
    from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline
    from cogvideox_jax.pipeline.components import PipelineComponents
    from cogvideox_jax.train.model_factory import spec_for_transformer

    cfg = transformer_config(job)
    # as CogVideoXPipeline.from_pretrained(mesh=..., sequence_parallel=...) builds it (components.shard_components)
    model = CogVideoXTransformer3D(cfg, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, mesh=mesh)
    components = PipelineComponents(transformer=model, transformer_params=None, vae=None, vae_params=None,
                                    text_encoder=None, text_encoder_params=None, tokenizer=None, tokenizer_dir=None,
                                    scheduler_config=SchedulerConfig(kind="dpm"), source_configs={})
    pipe = CogVideoXPipeline(components, mesh=mesh, sequence_parallel=job.sequence_parallel)
    latent_channels = cfg.out_dim
    has_image = cfg.in_channels == 2 * latent_channels
    ofs = 2.0 if cfg.ofs_embed_dim else None
    run = pipe._denoise_fn(do_cfg=True, has_image=has_image, ofs=ofs, progress=False)
    with jax.set_mesh(mesh):
        boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *dummy_inputs(cfg)))["params"]
    p_sh = param_shardings(boxed, mesh)
    params = jax.tree_util.tree_map(lambda a, s: _sds(a.shape, a.dtype, s), nn.unbox(boxed), p_sh)
    t, h, w = latent_shape(cfg, job.frames, job.height, job.width)
    bsz = job.batch or 1
    lat = (bsz, t, h, w, latent_channels)
    text = (2 * bsz, cfg.max_text_seq_length, cfg.text_embed_dim)
    schedule = make_sampling_schedule(components.scheduler_config, job.steps)
    repl = NamedSharding(mesh, P())
    n = len(np.asarray(schedule.timesteps))
    args = (params, _sds(lat, jnp.float32, batch_sharding(mesh, lat)), _sds(text, jnp.float32, batch_sharding(mesh, text)),
            _sds((n,), jnp.float32, repl), schedule,
            _sds(lat, jnp.float32, batch_sharding(mesh, lat)) if has_image else None,
            _sds((2,), jnp.uint32, repl), None)
    lowered = run.lower(*args)
    return lowered, lat, spec_for_transformer(model)


# ---------------------------------------------------------------------------------------------


def compile_job(job: AOTJob, devices=None) -> AOTReport:
    """Lower and compile ``job`` for its TPU topology; returns per-chip memory and FLOPs."""
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.train.metrics_logging import peak_flops_for, sequence_lengths, transformer_train_flops

    devices = devices if devices is not None else topology_devices(job.topology)
    mesh = make_mesh(job.mesh, devices=devices)
    start = time.perf_counter()
    # default matmul precision: the bf16 splash kernel does not compile under "highest" (Mosaic "Bad lhs type")
    with jax.default_matmul_precision("default"):
        if job.job == "train":
            lowered, lat, spec, cfg = _lower_train(job, mesh)
            text_len = cfg.text_len
            flops = transformer_train_flops(spec, lat, text_len)
        else:
            lowered, lat, spec = _lower_sample(job, mesh)
            text_len = spec.module.config.max_text_seq_length
            flops = transformer_train_flops(spec, (2 * lat[0], *lat[1:]), text_len) / 3.0   # one CFG forward
        compiled = lowered.compile()
    seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    return AOTReport(job=job, device_kind=devices[0].device_kind, num_devices=len(devices),
                     latent_shape=tuple(lat), tokens=sum(sequence_lengths(spec, lat, text_len)),
                     argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
                     alias_bytes=int(mem.alias_size_in_bytes), temp_bytes=int(mem.temp_size_in_bytes),
                     code_bytes=int(mem.generated_code_size_in_bytes), flops=float(cost.get("flops", 0.0)),
                     compile_seconds=seconds, model_flops=flops / len(devices),
                     cost_seconds=float(cost.get("optimal_seconds", 0.0) or 0.0),
                     peak_flops=float(peak_flops_for(devices[0].device_kind) or 0.0))


def attention_kernel_flops(job: AOTJob, report: AOTReport) -> float:
    """FLOPs per chip of the Mosaic (splash) attention kernels of one step, which XLA's cost model does
    not see into: per layer ``2·2·N²·D`` for the forward (scores and values over the kernel's padded
    length N), the backward ``10·N²·D`` (scores recomputed, dV, dP, dQ, dK), the forward again under
    remat. 0 for ring attention (plain XLA ops, costed by XLA) and XLA attention."""
    if job.attention == "xla" or job.sequence_parallel == "ring":
        return 0.0
    cfg = transformer_config(job)
    n = report.tokens
    block = min(512, -(-n // 128) * 128)
    n_pad = -(-n // block) * block
    per_layer = 4.0 * n_pad * n_pad * cfg.inner_dim
    if job.job == "train":
        per_layer *= (14.0 + (4.0 if job.remat != "none" else 0.0)) / 4.0
    batch = report.latent_shape[0] * (2 if job.job == "sample" else 1)
    return per_layer * cfg.num_layers * batch / report.num_devices


def estimate_step_seconds(job: AOTJob, devices=None) -> dict:
    """XLA's cost-model time of the full-depth step, extrapolated from unrolled 1- and 2-layer compiles of
    the same job (a scanned layer stack is costed once: ``c1 + (L - 1)(c2 - c1)``), plus the splash
    kernels' FLOPs at the chip's published peak (the cost model sees nothing inside a Mosaic kernel).
    An estimate: nothing runs."""
    from configs.transformer import get_preset

    layers = get_preset(_preset_name(job)).num_layers
    costs = {}
    for n in (1, 2):
        rep = compile_job(dataclasses.replace(job, scan_layers=False, num_layers=n), devices)
        costs[n] = rep.cost_seconds
    xla_seconds = costs[1] + (layers - 1) * (costs[2] - costs[1])
    full = dataclasses.replace(rep, job=job)   # shapes, tokens, devices: the full job's
    kernel_seconds = attention_kernel_flops(job, full) / rep.peak_flops if rep.peak_flops else 0.0
    out = {"xla_seconds": xla_seconds, "kernel_seconds": kernel_seconds, "seconds": xla_seconds + kernel_seconds,
           "cost_1_layer": costs[1], "cost_2_layers": costs[2]}
    if min(costs.values()) <= 0 or costs[2] <= costs[1]:
        # seen with libtpu 0.0.42.1 on v6e (5b, one layer: -50 s on fsdp=8); v5p's cost model is positive
        out.update(seconds=0.0, note=f"XLA's cost model gave {costs[1]:.3g} s / {costs[2]:.3g} s for 1 / 2 layers: "
                                     "no estimate")
    return out


# ---------------------------------------------------------------------------------------------
# CLI: `cogvideox-jax aot ...`


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("aot", help="compile a sampling loop / training step for a TPU topology (needs "
                                          "libtpu) and report per-chip memory and FLOPs")
    p.add_argument("--topology", default="v5p:2x2x1", help="e.g. v5p:2x2x1 (v5p-8), v5p:2x2x2, v6e:2x2, v6e:2x4")
    p.add_argument("--mesh", default="fsdp=-1", help="mesh spec, e.g. fsdp=4 or fsdp=2,sequence=4")
    p.add_argument("--job", choices=("sample", "train"), default="sample")
    p.add_argument("--variant", default="5b", help=f"one of {sorted(VARIANTS)} or a transformer preset")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch", type=int, default=None,
                   help="sample: prompts (CFG batch 2B, default 1); train: global batch (default 1 per data shard)")
    p.add_argument("--sequence-parallel", choices=("ulysses", "ring"), default=None)
    p.add_argument("--remat", default="full", help="train remat policy: full | dots_saveable | none | ...")
    p.add_argument("--attention", choices=ATTENTION + tuple(ATTENTION_ALIASES), default="splash")
    p.add_argument("--unrolled", action="store_true", help="unrolled layers instead of nn.scan")
    p.add_argument("--dtype", default="bfloat16", help="train: compute dtype (TrainConfig.dtype)")
    p.add_argument("--matmul-dtype", default=None, help="train: execution.matmul_dtype (float32 | bfloat16)")
    p.add_argument("--steps", type=int, default=50, help="sample: denoising steps")
    p.add_argument("--config", default=None, help="train: a `cogvideox-jax train` config file as the base")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="train: TrainConfig overrides, applied after the flags (e.g. optimizer.grad_accum_steps=2)")
    p.add_argument("--estimate-time", action="store_true",
                   help="also estimate the step time from XLA's cost model (two more compiles: 1 and 2 unrolled "
                        "layers, extrapolated to the full depth; splash kernels at peak) and the MFU it implies")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line as well")
    p.set_defaults(run=run)
    return p


def job_from_args(args) -> AOTJob:
    return AOTJob(job=args.job, variant=args.variant, topology=args.topology, mesh=args.mesh, frames=args.frames,
                  height=args.height, width=args.width, batch=args.batch, sequence_parallel=args.sequence_parallel,
                  remat=args.remat, attention=args.attention, scan_layers=not args.unrolled, dtype=args.dtype,
                  matmul_dtype=args.matmul_dtype, steps=args.steps, config=args.config,
                  overrides=tuple(args.overrides))


def run(args) -> int:
    try:
        job = job_from_args(args)
        report = compile_job(job)
        if getattr(args, "estimate_time", False):
            est = estimate_step_seconds(job)
            report.step_seconds_estimate = est["seconds"]
            if "note" in est:
                print(f"cogvideox-jax aot: {est['note']}", file=sys.stderr, flush=True)
    except LibTPUMissing as e:
        print(f"cogvideox-jax aot: error: {e}", file=sys.stderr, flush=True)
        return 2
    print(report.summary_line(), flush=True)
    if getattr(args, "json", False):
        import json

        print("JSON " + json.dumps(report.as_dict()), flush=True)
    return 0

