"""Benchmark: the size of one checkpoint of a LoRA run, with and without the frozen base.

    python benchmarks/lora_checkpoint_size.py                          # 5b, rank 128, EMA on and off
    python benchmarks/lora_checkpoint_size.py --model cogvideox-2b --rank 64

Analytic, from the real model's shapes (``jax.eval_shape``: nothing is allocated): the bytes of every
array a checkpoint holds. A LoRA run's checkpoint holds the adapters, their AdamW moments, their EMA
(when on), the step and the RNG key; before the base left the checkpoints it also held the frozen base
model. ``--measure`` also trains the tiny preset for 2 steps and reports its checkpoint's bytes on
disk next to the same analytic count (the check that the analytic count is what gets written).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile


def state_bytes(model: str, rank: int, ema: bool, param_dtype: str = "float32") -> dict:
    """``{"base", "lora", "optimizer", "ema", "with_base", "without_base"}`` in bytes."""
    import flax.linen as nn
    import jax

    from configs.train_5b_lora import get_config
    from configs.train_config import LoraConfig
    from cogvideox_jax.train import lora as lora_lib
    from cogvideox_jax.train.init_source import init_probe
    from cogvideox_jax.train.model_factory import abstract_boxed_params, build_model
    from cogvideox_jax.train.optimizer import make_optimizer

    cfg = dataclasses.replace(get_config(), model=model, param_dtype=param_dtype,
                              lora=LoraConfig(rank=rank, alpha=rank / 2), ema_decay=0.999 if ema else 0.0)
    spec = build_model(cfg)
    boxed = abstract_boxed_params(spec, *init_probe(spec, cfg))
    base = nn.unbox(boxed)
    stack = lora_lib.stack_axes_from_names(nn.get_partition_spec(boxed))
    lora = jax.eval_shape(lambda: lora_lib.init_lora_params(jax.random.PRNGKey(0), base, rank, cfg.lora.targets,
                                                            stack))
    optimizer, _ = make_optimizer(cfg.optimizer, cfg.stages)
    opt = jax.eval_shape(optimizer.init, lora)

    def nbytes(tree):
        return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))

    out = {"base": nbytes(base), "lora": nbytes(lora), "optimizer": nbytes(opt), "ema": nbytes(lora) if ema else 0,
           "scalars": 4 + 8}  # step (int32), RNG key (2 x uint32)
    out["without_base"] = out["lora"] + out["optimizer"] + out["ema"] + out["scalars"]
    out["with_base"] = out["without_base"] + out["base"]
    return out


def measured_tiny(rank: int) -> tuple[int, int]:
    """(bytes on disk of a 2-step tiny LoRA run's checkpoint, the analytic count for it)."""
    from configs.train_config import CheckpointConfig, LoraConfig, StageConfig
    from configs.train_tiny import get_config
    from cogvideox_jax.train.trainer import Trainer

    cfg = dataclasses.replace(get_config(), mesh="fsdp=-1", lora=LoraConfig(rank=rank, alpha=rank / 2),
                              stages=(StageConfig(steps=2, num_frames=5, height=16, width=16),),
                              checkpoint=CheckpointConfig(every_steps=2, keep_last=1, keep_best=0, async_save=False))
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, d, stdout=False, progress=False)
        tr.fit()
        tr.close()
        state = os.path.join(d, "checkpoints", "2", "state")
        disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(state) for f in fs)
    analytic = state_bytes(cfg.model, rank, cfg.ema_decay > 0)["without_base"]
    return disk, analytic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cogvideox-5b")
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--measure", action="store_true", help="also write a tiny run's checkpoint and compare")
    a = p.parse_args(argv)
    gib = 2 ** 30
    print(f"{a.model}, LoRA rank {a.rank} on to_q/to_k/to_v/to_out, fp32 params and AdamW moments")
    print("| EMA | adapters | AdamW moments | EMA | checkpoint without the base | with the base (before) | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for ema in (True, False):
        b = state_bytes(a.model, a.rank, ema)
        print(f"| {'on' if ema else 'off'} | {b['lora'] / gib:.3f} GiB | {b['optimizer'] / gib:.3f} GiB | "
              f"{b['ema'] / gib:.3f} GiB | **{b['without_base'] / gib:.2f} GiB** | {b['with_base'] / gib:.2f} GiB | "
              f"{b['with_base'] / b['without_base']:.1f}x |")
    if a.measure:
        disk, analytic = measured_tiny(4)
        print(f"tiny-5b rank 4 (EMA on): {disk:,d} bytes on disk, {analytic:,d} bytes of arrays "
              f"(orbax metadata and OCDBT index: the rest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
