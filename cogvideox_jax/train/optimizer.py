"""AdamW (β 0.9/0.95, eps 1e-8, wd 1e-4) with warmup + constant/cosine learning rate and global-norm clipping.

Progressive stages share one optimizer (Adam moments carry over); the schedule is joined across
stages: each stage warms up again to its own lr, then stays constant or follows a cosine.
Gradient accumulation is done in ``train_step`` by a ``lax.scan`` over micro-batches (one optimizer
update per step), so the schedule counts optimizer updates.
"""
from __future__ import annotations

from typing import Sequence

import optax

from configs.train_config import OptimizerConfig, StageConfig


def stage_schedule(cfg: OptimizerConfig, steps: int, lr: float | None = None) -> optax.Schedule:
    """Warmup (linear from 0) then constant or cosine for one stage of ``steps`` updates."""
    peak = cfg.lr if lr is None else lr
    warmup = min(cfg.warmup_steps, max(steps, 0))
    if cfg.schedule == "constant":
        after = optax.constant_schedule(peak)
    elif cfg.schedule == "cosine":
        decay = cfg.decay_steps or max(steps - warmup, 1)
        after = optax.cosine_decay_schedule(peak, decay, alpha=cfg.final_lr_ratio)
    else:
        raise ValueError(f"unknown lr schedule {cfg.schedule!r} (constant | cosine)")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def lr_schedule(cfg: OptimizerConfig, stages: Sequence[StageConfig]) -> optax.Schedule:
    """One schedule over all stages (boundaries at the cumulative stage lengths)."""
    scheds = [stage_schedule(cfg, s.steps, s.lr) for s in stages]
    if len(scheds) == 1:
        return scheds[0]
    bounds, total = [], 0
    for s in stages[:-1]:
        total += s.steps
        bounds.append(total)
    return optax.join_schedules(scheds, bounds)


def make_optimizer(cfg: OptimizerConfig, stages: Sequence[StageConfig]) -> tuple[optax.GradientTransformation,
                                                                                   optax.Schedule]:
    """``clip_by_global_norm → adamw(schedule)``; returns (optimizer, schedule)."""
    schedule = lr_schedule(cfg, stages)
    parts = []
    if cfg.grad_clip and cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    return optax.chain(*parts), schedule
