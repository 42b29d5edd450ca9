"""Compile the standard sampling and training programs on 8 simulated CPU devices (nothing runs):
``python -m tests.sharding_programs [NAME ...]`` prints ``COMPILED <name>`` per program; XLA's SPMD
partitioner writes its warnings ("Involuntary full rematerialization") to stderr, which
``tests/test_no_involuntary_resharding.py`` reads.

Sampling: the pipeline's own denoising loop (``CogVideoXPipeline._denoise_fn``) for one prompt (CFG
batch 2) and for two, on the transformer as ``from_pretrained(mesh=..., sequence_parallel=...)`` builds
it. Training: the Trainer's own step (``Trainer.abstract_step``).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

SAMPLING = {  # name: (mesh, sequence_parallel, prompts)
    "sample-data2-fsdp2-seq2-ulysses-1prompt": ("data=2,fsdp=2,sequence=2", "ulysses", 1),
    "sample-data2-fsdp4-1prompt": ("data=2,fsdp=4", None, 1),
    "sample-seq8-ring-1prompt": ("sequence=8", "ring", 1),
}
TRAINING = {  # name: (mesh, sequence_parallel, batch)
    "train-data2-fsdp4": ("data=2,fsdp=4", None, 8),
    "train-data2-fsdp2-seq2-ulysses": ("data=2,fsdp=2,sequence=2", "ulysses", 4),
    "train-fsdp2-seq4-ring": ("fsdp=2,sequence=4", "ring", 2),
}
MORE_SAMPLING = {  # the slow test's
    "sample-data2-fsdp2-seq2-ring-2prompts": ("data=2,fsdp=2,sequence=2", "ring", 2),
    "sample-fsdp8-2prompts": ("fsdp=8", None, 2),
}
MORE_TRAINING = {
    "train-seq4-tensor2": ("sequence=4,tensor=2", None, 1),
}


def compile_sampling(mesh_spec: str, scheme, prompts: int):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from configs.scheduler import SchedulerConfig
    from configs.transformer import get_preset
    from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.parallel.param_sharding import param_shardings
    from cogvideox_jax.parallel.sharded_apply import batch_sharding
    from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline
    from cogvideox_jax.pipeline.components import PipelineComponents

    mesh = make_mesh(mesh_spec)
    cfg = get_preset("tiny-5b").replace(sequence_parallel=scheme)
    model = CogVideoXTransformer3D(cfg, mesh=mesh)
    comps = PipelineComponents(transformer=model, transformer_params=None, vae=None, vae_params=None,
                               text_encoder=None, text_encoder_params=None, tokenizer=None, tokenizer_dir=None,
                               scheduler_config=SchedulerConfig(kind="dpm"), source_configs={})
    run = CogVideoXPipeline(comps, mesh=mesh, sequence_parallel=scheme)._denoise_fn(True, False, None, False)
    boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), *dummy_inputs(cfg))["params"]
    sh = param_shardings(boxed, mesh)
    params = jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                    nn.unbox(boxed), sh)
    lat = (prompts, 3, 4, 6, 4)
    text = (2 * prompts, cfg.max_text_seq_length, cfg.text_embed_dim)
    schedule = make_sampling_schedule(comps.scheduler_config, 2)
    sds = lambda shape, dt=jnp.float32: jax.ShapeDtypeStruct(shape, dt, sharding=batch_sharding(mesh, shape))  # noqa: E731
    run.lower(params, sds(lat), sds(text), jnp.ones((2,), jnp.float32), schedule, None, jax.random.PRNGKey(0),
              None).compile()


def compile_training(mesh_spec: str, scheme, batch: int):
    import tempfile

    import jax

    from configs.train_config import ModelExecutionConfig, StageConfig, TrainConfig
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.train.trainer import Trainer

    cfg = TrainConfig(model="tiny-5b", mesh=mesh_spec, batch_size=batch, text_len=8,
                      stages=(StageConfig(steps=1, num_frames=9, height=32, width=48),), ema_decay=0.9,
                      execution=ModelExecutionConfig(sequence_parallel=scheme, remat_policy="full"))
    mesh = make_mesh(mesh_spec)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(cfg, workdir, mesh=mesh, progress=False, stdout=False)
        try:
            step, state, batch_sds = trainer.abstract_step()
            with jax.set_mesh(mesh):
                step.jitted.lower(state, batch_sds).compile()
        finally:
            trainer.close()


def main(names) -> int:
    sampling, training = {**SAMPLING, **MORE_SAMPLING}, {**TRAINING, **MORE_TRAINING}
    for name in names or [*SAMPLING, *TRAINING]:
        if name in sampling:
            compile_sampling(*sampling[name])
        else:
            compile_training(*training[name])
        print(f"COMPILED {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
