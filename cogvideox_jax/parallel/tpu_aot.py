"""Ahead-of-time (AOT) compilation for real TPU topologies from any host (no TPU needed, only libtpu).

    report = compile_job(AOTJob(job="train", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4"))
    print(report.summary_line())

``jax.experimental.topologies.get_topology_desc`` gives abstract TPU devices of a named slice
("v5p:2x2x1" = v5p-8, "v6e:2x2", "v5e:2x2", ...); a ``Mesh`` over them plus ``jax.jit(...).lower(
ShapeDtypeStructs with shardings).compile()`` runs the real XLA:TPU compiler, whose
``memory_analysis()`` / ``cost_analysis()`` give per-chip bytes and FLOPs. Nothing is allocated.

Jobs:

* ``sample``: one denoising step as the pipeline runs it - one transformer forward on the CFG batch
  ``[uncond, cond]`` (2B), guidance and a DPM-Solver++ scheduler step. Weights are bf16.
* ``train``: the project's train step (``cogvideox_jax/train/train_step.py``): v-prediction loss,
  forward + backward with remat, global-norm clipping + AdamW, fp32 master params, bf16 compute.

Attention (``--attention``): ``splash`` (the model's own backend), ``xla``, or ``splash-sharded``:
splash wrapped in ``shard_map`` over the batch/head mesh axes, and splash as the local attention of
Ulysses sequence parallelism (a Mosaic kernel cannot be partitioned by GSPMD, and the default Ulysses
local attention materialises fp32 L x L scores). ``splash-sharded`` is applied only while compiling,
by patching the attention entry points (see ``attention_overrides``).

Needs ``libtpu`` (a separate venv: ``/work/tpuvenv``); the default test venv has none.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

GiB = 1024**3
HBM_GIB = {"v5p": 95.0, "v6e": 32.0, "v5e": 16.0, "v4": 32.0}
VARIANTS = {"2b": "cogvideox-2b", "5b": "cogvideox-5b", "1.5-5b": "cogvideox1.5-5b",
            "tiny-2b": "tiny-2b", "tiny-5b": "tiny-5b"}
ATTENTION = ("splash", "splash-sharded", "xla")


@dataclasses.dataclass(frozen=True)
class AOTJob:
    job: str = "sample"                 # "sample" | "train"
    variant: str = "5b"                 # key of VARIANTS (or a transformer preset name)
    topology: str = "v5p:2x2x1"
    mesh: str = "fsdp=-1"               # make_mesh spec over the topology's devices
    frames: Optional[int] = None        # pixel frames; None -> the preset's sample size
    height: Optional[int] = None
    width: Optional[int] = None
    batch: Optional[int] = None         # sample: prompts B (CFG batch 2B); train: global batch. None -> per-chip default
    sequence_parallel: Optional[str] = None   # None | "ulysses" | "ring"
    remat: str = "full"                 # train remat policy (configs.transformer.REMAT_POLICIES)
    attention: str = "splash"
    scan_layers: bool = True

    def __post_init__(self):
        if self.job not in ("sample", "train"):
            raise ValueError(f"job must be 'sample' or 'train', got {self.job!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")


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
    flops: float                        # XLA cost_analysis: a scanned layer stack counts once, Pallas kernels not at all
    compile_seconds: float
    model_flops: float = 0.0            # analytic per chip: matmul + attention FLOPs (train: 3x forward, no remat)

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

    def as_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "job"}
        d.update(dataclasses.asdict(self.job), total_bytes=self.total_bytes, hbm_gib=self.hbm_gib, fits=self.fits)
        return d

    def summary_line(self) -> str:
        g = lambda b: f"{b / GiB:.2f}"  # noqa: E731
        j = self.job
        return (f"{j.job} {j.variant} {j.topology} [{j.mesh}] sp={j.sequence_parallel} attn={j.attention} "
                f"latents={self.latent_shape} tokens={self.tokens}: per chip args {g(self.argument_bytes)} "
                f"out {g(self.output_bytes)} alias {g(self.alias_bytes)} temp {g(self.temp_bytes)} "
                f"code {g(self.code_bytes)} total {g(self.total_bytes)} / {self.hbm_gib:.0f} GiB "
                f"({'fits' if self.fits else 'DOES NOT FIT'}); model {self.model_flops / 1e12:.0f} TFLOP/chip "
                f"(XLA cost_analysis {self.flops / 1e12:.1f}); "
                f"compile {self.compile_seconds:.0f}s")


# ---------------------------------------------------------------------------------------------
# topology, mesh, shapes


def topology_devices(topology: str):
    """Abstract devices of a named TPU slice, e.g. ``"v5p:2x2x1"`` (needs libtpu, no TPU)."""
    from jax.experimental import topologies

    # AOT only: no chip is opened, so several compiling processes may load libtpu at once
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    return topologies.get_topology_desc(platform="tpu", topology_name=topology).devices


def tpu_aot_available(topology: str = "v5p:2x2x1") -> bool:
    try:
        return len(topology_devices(topology)) > 0
    except Exception:  # no libtpu / unknown platform
        return False


def transformer_config(job: AOTJob):
    from configs.transformer import get_preset

    cfg = get_preset(VARIANTS.get(job.variant, job.variant))
    backend = "xla" if job.attention == "xla" else "splash"
    return cfg.replace(scan_layers=job.scan_layers, attention_backend=backend,
                       remat_policy=job.remat if job.job == "train" else "none",
                       sequence_parallel=job.sequence_parallel)


def latent_shape(cfg, frames: Optional[int], height: Optional[int], width: Optional[int]) -> tuple[int, int, int]:
    """Latent ``(t, h, w)`` for pixel ``frames x height x width``; t is padded up to a multiple of
    ``patch_size_t`` (CogVideoX 1.5: 81 frames -> 21 -> 22 latent frames), as the pipeline does."""
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


def model_flops(cfg, tokens: int, batch: int, train: bool) -> float:
    """Analytic FLOPs of the transformer blocks: per token and layer 24 d^2 (q/k/v/out + 4x MLP) plus
    4 L d for attention; the backward pass counts 2x the forward (remat recompute not included)."""
    d = cfg.inner_dim
    fwd = cfg.num_layers * batch * tokens * (24 * d * d + 4 * tokens * d)
    return float(fwd * (3 if train else 1))


def _batch_spec(mesh: Mesh, batch: int, ndim: int) -> NamedSharding:
    axes, prod = [], 1
    for ax in ("data", "fsdp"):
        n = mesh.shape.get(ax, 1)
        if n > 1 and batch % (prod * n) == 0:
            axes.append(ax)
            prod *= n
    lead = tuple(axes) if len(axes) > 1 else (axes[0] if axes else None)
    return NamedSharding(mesh, P(lead, *([None] * (ndim - 1))))


def _sds(shape, dtype, sharding):
    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


# ---------------------------------------------------------------------------------------------
# attention overrides (compile-time stopgap; see module docstring)


def _splash(q, k, v, seg_q, seg_kv, block: int = 512):
    """Splash attention on (B, L, H, D) with explicit segment ids (L a multiple of ``block``)."""
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    b, length, h, d = q.shape
    q = q * jnp.asarray(1.0 / math.sqrt(d), q.dtype)
    sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    mask = sa.MultiHeadMask([sa.FullMask((length, length)) for _ in range(h)])
    kernel = sa.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1)
    seg = sa.SegmentIds(q=seg_q, kv=seg_kv)
    out = jax.vmap(functools.partial(kernel, segment_ids=seg))(*(jnp.swapaxes(x, 1, 2) for x in (q, k, v)))
    return jnp.swapaxes(out, 1, 2)


def splash_local_attention(q, k, v, kv_length: int, block: int = 512):
    """Drop-in ``local_attention(q, k, v, kv_length)`` for Ulysses: the real (Mosaic) splash kernel with the
    padded keys masked (forced here: on a CPU host the model's own backend would pick interpret mode)."""
    length = q.shape[1]
    key_valid = jnp.arange(length) < kv_length
    block = min(block, -(-length // 128) * 128)
    pad = (-length) % block
    padf = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))  # noqa: E731
    valid = jnp.pad(key_valid.astype(jnp.int32), (0, pad))
    seg_q = jnp.ones((length + pad,), jnp.int32) * valid  # padded query rows attend padded keys (dropped)
    out = _splash(padf(q), padf(k), padf(v), seg_q, valid, block)
    return out[:, :length]


def sharded_splash_attention(q, k, v, mesh: Mesh, block: int = 512):
    """Splash under ``shard_map``: batch over (data, fsdp), heads over tensor, full sequence per device."""
    from cogvideox_jax.models.attention import splash_attention
    from cogvideox_jax.parallel.sequence_parallel_attention import _dividing_axes

    spec = P(_dividing_axes(mesh, ("data", "fsdp"), q.shape[0]), None,
             _dividing_axes(mesh, ("tensor",), q.shape[2]), None)
    body = functools.partial(splash_attention, block=block, interpret=False)  # Mosaic even when compiling off-TPU
    return jax.shard_map(body, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False)(q, k, v)


@contextlib.contextmanager
def attention_overrides(mesh: Mesh, mode: str = "splash-sharded"):
    """Patch the attention entry points while compiling (restored on exit).

    ``"splash-sharded"``: non-sequence-parallel splash runs under ``shard_map`` and Ulysses uses splash
    for its local attention. ``"splash"``: the model's own splash, but always the Mosaic kernel (the
    entry point would pick interpret mode on a non-TPU host). ``"xla"``: nothing patched.
    """
    if mode == "xla":
        yield
        return
    from cogvideox_jax.models.transformer import joint_attention as ja
    from cogvideox_jax.parallel import sequence_parallel_attention as spa

    orig_dpa, orig_spa = ja.dot_product_attention, spa.sequence_parallel_attention

    def dpa(q, k, v, *, backend="auto", **kw):
        if backend in ("splash", "auto"):
            if mode == "splash-sharded":
                return sharded_splash_attention(q, k, v, mesh)
            kw["interpret"] = False
        return orig_dpa(q, k, v, backend=backend, **kw)

    def sp_attn(q, k, v, mesh_, *, scheme="ulysses", local_attention=None):
        return orig_spa(q, k, v, mesh_, scheme=scheme, local_attention=splash_local_attention)

    ja.dot_product_attention = dpa
    if mode == "splash-sharded":
        spa.sequence_parallel_attention = sp_attn
    try:
        yield
    finally:
        ja.dot_product_attention, spa.sequence_parallel_attention = orig_dpa, orig_spa


# ---------------------------------------------------------------------------------------------
# the two jobs


def _abstract_params(module, cfg):
    from cogvideox_jax.models.transformer.transformer_3d import dummy_inputs

    return jax.eval_shape(lambda: module.init(jax.random.key(0), *dummy_inputs(cfg)))["params"]


def _lower_sample(job: AOTJob, cfg, mesh: Mesh, t: int, h: int, w: int):
    import flax.linen as nn

    from configs.scheduler import SchedulerConfig
    from cogvideox_jax.diffusion.guidance import guide_batched
    from cogvideox_jax.diffusion.sampler import scheduler_step
    from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
    from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES
    from cogvideox_jax.parallel.param_sharding import param_shardings

    model = CogVideoXTransformer3D(cfg, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, mesh=mesh)
    boxed = _abstract_params(model, cfg)
    p_sh = param_shardings(boxed, mesh)
    params = jax.tree_util.tree_map(lambda a, s: _sds(a.shape, a.dtype, s), nn.unbox(boxed), p_sh)
    schedule = make_sampling_schedule(SchedulerConfig(kind="dpm"), 50)
    bsz = job.batch or 1
    lat = (bsz, t, h, w, cfg.in_channels)
    lat_sh = _batch_spec(mesh, bsz, 5)
    cfg_sh = _batch_spec(mesh, 2 * bsz, 3)
    repl = NamedSharding(mesh, P())

    def sample_step(params, latents, old_x0, noise, text, i, scale):
        x_in = jnp.concatenate([latents, latents], axis=0).astype(jnp.bfloat16)
        ts = jnp.broadcast_to(schedule.timesteps[i], (2 * bsz,))
        with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
            v = model.apply({"params": params}, x_in, text, ts)
        guided = guide_batched(v, scale)
        return scheduler_step(schedule, old_x0, i, guided, latents, noise)

    args = (params, _sds(lat, jnp.float32, lat_sh), _sds(lat, jnp.float32, lat_sh), _sds(lat, jnp.float32, lat_sh),
            _sds((2 * bsz, cfg.max_text_seq_length, cfg.text_embed_dim), jnp.bfloat16, cfg_sh),
            _sds((), jnp.int32, repl), _sds((), jnp.float32, repl))
    jitted = jax.jit(sample_step, out_shardings=(lat_sh, lat_sh), donate_argnums=(1, 2))
    with jax.set_mesh(mesh):
        return jitted.lower(*args), lat


def _lower_train(job: AOTJob, cfg, mesh: Mesh, t: int, h: int, w: int):
    import flax.linen as nn

    from configs.train_config import OptimizerConfig, StageConfig
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
    from cogvideox_jax.parallel.mesh import local_batch_divisor
    from cogvideox_jax.parallel.param_sharding import param_shardings
    from cogvideox_jax.train.diffusion_loss import training_alphas_cumprod
    from cogvideox_jax.train.optimizer import make_optimizer
    from cogvideox_jax.train.train_state import create_train_state, state_shardings
    from cogvideox_jax.train.train_step import StepOptions, make_train_step

    model = CogVideoXTransformer3D(cfg, dtype=jnp.bfloat16, param_dtype=jnp.float32, mesh=mesh)
    boxed = _abstract_params(model, cfg)
    p_sh = param_shardings(boxed, mesh)
    optimizer, schedule = make_optimizer(OptimizerConfig(), [StageConfig()])
    abstract = jax.eval_shape(lambda p: create_train_state(p, optimizer, jax.random.key(0)), nn.unbox(boxed))
    st_sh = state_shardings(abstract, optimizer, p_sh, mesh)
    state = jax.tree_util.tree_map(lambda a, s: _sds(a.shape, a.dtype, s), abstract, st_sh)
    opts = StepOptions(alphas_cumprod=np.asarray(training_alphas_cumprod()))
    step = make_train_step(model, optimizer, schedule, opts, mesh, st_sh)
    bsz = job.batch or local_batch_divisor(mesh)
    lat = (bsz, t, h, w, cfg.in_channels)
    batch = {"latents": _sds(lat, jnp.float32, step.batch_shardings["latents"]),
             "text_emb": _sds((bsz, cfg.max_text_seq_length, cfg.text_embed_dim), jnp.bfloat16,
                              step.batch_shardings["text_emb"])}
    with jax.set_mesh(mesh):
        return step.jitted.lower(state, batch), lat


def compile_job(job: AOTJob, devices=None) -> AOTReport:
    """Lower and compile ``job`` for its TPU topology; returns per-chip memory and FLOPs."""
    from cogvideox_jax.parallel.mesh import make_mesh

    devices = devices if devices is not None else topology_devices(job.topology)
    mesh = make_mesh(job.mesh, devices=devices)
    cfg = transformer_config(job)
    t, h, w = latent_shape(cfg, job.frames, job.height, job.width)
    start = time.perf_counter()
    lower = _lower_sample if job.job == "sample" else _lower_train
    # default matmul precision: the bf16 splash kernel does not compile under "highest" (Mosaic "Bad lhs type")
    with attention_overrides(mesh, job.attention), jax.default_matmul_precision("default"):
        lowered, lat = lower(job, cfg, mesh, t, h, w)
        compiled = lowered.compile()
    seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return AOTReport(job=job, device_kind=devices[0].device_kind, num_devices=len(devices), latent_shape=lat,
                     tokens=num_tokens(cfg, t, h, w),
                     argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
                     alias_bytes=int(mem.alias_size_in_bytes), temp_bytes=int(mem.temp_size_in_bytes),
                     code_bytes=int(mem.generated_code_size_in_bytes), flops=float((cost or {}).get("flops", 0.0)),
                     compile_seconds=seconds,
                     model_flops=model_flops(cfg, num_tokens(cfg, t, h, w), lat[0] * (2 if job.job == "sample" else 1),
                                             job.job == "train") / len(devices))


# ---------------------------------------------------------------------------------------------
# CLI: `cogvideox-jax aot ...`


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("aot", help="compile a sampling/training step for a TPU topology (needs libtpu) "
                                          "and report per-chip memory and FLOPs")
    p.add_argument("--topology", default="v5p:2x2x1", help="e.g. v5p:2x2x1 (v5p-8), v6e:2x2, v5e:2x2")
    p.add_argument("--mesh", default="fsdp=-1", help="mesh spec, e.g. fsdp=4 or fsdp=2,sequence=2")
    p.add_argument("--job", choices=("sample", "train"), default="sample")
    p.add_argument("--variant", default="5b", help=f"one of {sorted(VARIANTS)} or a transformer preset")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch", type=int, default=None,
                   help="sample: prompts (CFG batch 2B, default 1); train: global batch (default 1 per data shard)")
    p.add_argument("--sequence-parallel", choices=("ulysses", "ring"), default=None)
    p.add_argument("--remat", default="full", help="train remat policy: full | dots_saveable | ...")
    p.add_argument("--attention", choices=ATTENTION, default="splash")
    p.add_argument("--unrolled", action="store_true", help="unrolled layers instead of nn.scan")
    p.set_defaults(func=run)
    return p


def job_from_args(args) -> AOTJob:
    return AOTJob(job=args.job, variant=args.variant, topology=args.topology, mesh=args.mesh, frames=args.frames,
                  height=args.height, width=args.width, batch=args.batch, sequence_parallel=args.sequence_parallel,
                  remat=args.remat, attention=args.attention, scan_layers=not args.unrolled)


def run(args) -> int:
    report = compile_job(job_from_args(args))
    print(report.summary_line())
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cogvideox-jax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
