"""One jitted training step on a mesh: noise, explicit-uniform (or density-drawn) timesteps, caption
dropout, v-loss, gradient accumulation (``lax.scan`` over micro-batches), AdamW update, EMA.

Batches are ``{"latents": (B,t,h,w,C), "text_emb": (B,L,D)}`` (or ``"text_ids": (B,L)`` for a model
that encodes its own text: ``models/text_video_denoiser.py``; with the caption-contrastive term also
``"contrast_text_emb"`` / ``"contrast_text_ids"``, one swapped caption per row), the batch dim sharded over
``("data", "fsdp")``. The step's randomness is ``fold_in(state.rng, state.step)`` and does not depend
on the accumulation split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES
from cogvideox_jax.parallel.mesh import local_batch_divisor
from cogvideox_jax.train.caption_contrast import caption_contrast_term
from cogvideox_jax.train.diffusion_loss import add_noise, v_prediction_loss
from cogvideox_jax.train.ema import update_ema
from cogvideox_jax.train.i2v_conditioning import drop_images, i2v_model_input
from cogvideox_jax.train.latent_frame_padding import pad_latent_frames
from cogvideox_jax.shapes.object_loss_weight import object_loss_weights
from cogvideox_jax.train.prediction_rollout import rolled_inputs, rollout_draws
from cogvideox_jax.train.text_dropout import drop_text, text_keep_mask
from cogvideox_jax.train.timestep_density import sample_timesteps
from cogvideox_jax.train.timestep_sampling import explicit_uniform_timesteps
from cogvideox_jax.train.train_state import TrainState, model_params


@dataclass(frozen=True)
class StepOptions:
    alphas_cumprod: np.ndarray            # (num_timesteps,) float64
    text_dropout: float = 0.0
    explicit_uniform: bool = True
    timestep_probabilities: np.ndarray | None = None   # set → t drawn from this table (timestep_density.py)
    grad_accum_steps: int = 1
    ema_decay: float = 0.0
    lora_scale: float | None = None       # set → state.params is a LoRA tree over state.frozen
    null_text_emb: np.ndarray | None = None   # (L, D) dropped captions' embedding (default zeros); the
                                              # empty prompt's ids (L,) with token-id batches
    image_dropout: float | None = None    # set → image-to-video: batches carry "image_latents" (B,1,h,w,C)
    ofs: float | None = None              # CogVideoX 1.5-I2V's ofs embedding input (2.0)
    object_loss_weight: float = 0.0       # > 0: extra v-loss weight on object latent cells
    object_threshold: float = 1.5         # (cogvideox_jax/shapes/object_loss_weight.py)
    rollout_fraction: float = 0.0         # > 0: rows trained on the model's own prediction
    rollout_max_jump: int = 300           # (train/prediction_rollout.py)
    rollout_min_t: int = 100
    rollout_start_step: int = 0
    caption_contrast_weight: float = 0.0    # > 0: + this x the caption-contrastive term (train/caption_contrast.py)
    caption_contrast_sharpness: float = 20.0
    caption_contrast_start_step: int = 0    # one pass per step before it, two from it on
    patch_size_t: int = 1                 # CogVideoX 1.5: 2 (latent frames padded to a multiple: latent_frame_padding.py)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def _micro(x, n):
    """(B, …) → (n, B/n, …) with micro-batch j = rows j, j+n, … (keeps each row on its data shard)."""
    if n == 1:
        return x[None]
    return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)


def make_loss_and_grads(module: nn.Module, opts: StepOptions, num_data_shards: int) -> Callable:
    ac = jnp.asarray(opts.alphas_cumprod, jnp.float32)

    def loss_and_grads(state: TrainState, batch):
        latents = pad_latent_frames(batch["latents"].astype(jnp.float32), opts.patch_size_t)
        text_key = "text_ids" if "text_ids" in batch else "text_emb"
        text = batch[text_key]
        bsz = latents.shape[0]
        k_t, k_n, k_d = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
        if opts.timestep_probabilities is None:
            t = explicit_uniform_timesteps(k_t, bsz, num_data_shards, ac.shape[0], opts.explicit_uniform)
        else:
            t = sample_timesteps(k_t, bsz, opts.timestep_probabilities)
        noise = jax.random.normal(k_n, latents.shape, jnp.float32)
        keep = text_keep_mask(k_d, bsz, opts.text_dropout)
        text = drop_text(k_d, text, opts.text_dropout, opts.null_text_emb)
        contrast = opts.caption_contrast_weight > 0
        a = ac[t]
        i2v = opts.image_dropout is not None
        kw = {} if opts.ofs is None else {"ofs": opts.ofs}
        image = None
        if i2v:  # dropout over the whole batch: independent of the accumulation split
            image = drop_images(jax.random.fold_in(k_d, 1), batch["image_latents"].astype(jnp.float32),
                                opts.image_dropout)

        def apply(p, x_t, txt, tt, img):
            return module.apply({"params": p}, i2v_model_input(x_t, img) if i2v else x_t, txt, tt, **kw)

        x_t = add_noise(latents, noise, a)
        rollout = opts.rollout_fraction > 0

        def with_rollout(mb):
            """The micro-batch with a fraction of its rows fed the model's own prediction
            (train/prediction_rollout.py): one forward pass of its rows, none before rollout_start_step."""
            if not rollout:
                return mb
            x_in, target = jax.lax.cond(
                state.step >= opts.rollout_start_step,
                lambda: rolled_inputs(
                    lambda x, tt: apply(model_params(state, opts.lora_scale), x, mb["text"], tt, mb.get("image")),
                    mb["x0"], mb["noise"], mb["t"], ac, mb["rollout"])[:2],
                lambda: (mb["x_t"], mb["noise"]))
            return {**mb, "x_t": x_in, "noise": target}

        def loss_fn(trainable, mb):
            """-> (objective, (v-loss, contrast term, mean relative caption gap))."""
            p = model_params(state.replace(params=trainable), opts.lora_scale)
            w = (object_loss_weights(mb["x0"], opts.object_loss_weight, opts.object_threshold)
                 if opts.object_loss_weight > 0 else None)

            def row_losses(v):
                return v_prediction_loss(v, mb["x0"], mb["noise"], mb["a"], per_example=True, weights=w)

            def one_pass():
                per = row_losses(apply(p, mb["x_t"], mb["text"], mb["t"], mb.get("image")))
                return jnp.mean(per), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)

            def two_passes():  # the true and the swapped caption on the same noisy latents
                def twice(x):
                    return None if x is None else jnp.concatenate([x, x])
                v = apply(p, twice(mb["x_t"]), jnp.concatenate([mb["text"], mb["contrast"]]), twice(mb["t"]),
                          twice(mb.get("image")))
                v_true, v_swapped = jnp.split(v, 2)
                per = row_losses(v_true)
                term, gap = caption_contrast_term(per, row_losses(v_swapped), mb["keep"],
                                                  opts.caption_contrast_sharpness)
                return jnp.mean(per), term, gap

            if not contrast:
                vloss, term, gap = one_pass()
            elif opts.caption_contrast_start_step > 0:
                vloss, term, gap = jax.lax.cond(state.step >= opts.caption_contrast_start_step, two_passes, one_pass)
            else:
                vloss, term, gap = two_passes()
            return vloss + opts.caption_contrast_weight * term, (vloss, term, gap)

        n = opts.grad_accum_steps
        mbs = {"x0": _micro(latents, n), "x_t": _micro(x_t, n), "noise": _micro(noise, n), "a": _micro(a, n),
               "text": _micro(text, n), "t": _micro(t, n)}
        if i2v:
            mbs["image"] = _micro(image, n)
        if contrast:
            mbs["contrast"] = _micro(batch["contrast_" + text_key], n)
            mbs["keep"] = _micro(keep, n)
        if rollout:  # drawn for the whole batch: independent of the accumulation split
            draws = rollout_draws(jax.random.fold_in(k_n, 1), t, latents.shape, ac.shape[0], opts.rollout_fraction,
                                  opts.rollout_max_jump, opts.rollout_min_t)
            mbs["rollout"] = jax.tree_util.tree_map(lambda x: _micro(x, n), draws)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        if n == 1:
            (_, aux), grads = grad_fn(state.params, with_rollout(jax.tree_util.tree_map(lambda x: x[0], mbs)))
        else:
            def body(carry, mb):
                (_, a_), g = grad_fn(state.params, with_rollout(mb))
                return (jax.tree_util.tree_map(jnp.add, carry[0], a_),
                        jax.tree_util.tree_map(jnp.add, carry[1], g)), None

            zeros = jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
            (aux, grads), _ = jax.lax.scan(body, ((jnp.zeros((), jnp.float32),) * 3, zeros), mbs)
            aux = tuple(x / n for x in aux)
            grads = jax.tree_util.tree_map(lambda g, p: (g / n).astype(p.dtype), grads, state.params)
        loss, term, gap = aux
        extra = {"caption_contrast": term, "caption_gap": gap} if contrast else {}
        return loss, grads, t, extra

    return loss_and_grads


def make_train_step(module: nn.Module, optimizer: optax.GradientTransformation, schedule, opts: StepOptions,
                    mesh: Mesh, state_shardings: TrainState, batch_ndims: dict | None = None,
                    donate: bool = True) -> Callable:
    """``step(state, batch) -> (state, metrics)`` jitted with in/out shardings on ``mesh``."""
    num_shards = local_batch_divisor(mesh)
    loss_and_grads = make_loss_and_grads(module, opts, num_shards)

    def step(state: TrainState, batch):
        with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
            loss, grads, t, extra = loss_and_grads(state, batch)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = update_ema(state.ema, params, opts.ema_decay) if opts.ema_decay else state.ema
        # a non-finite loss or gradient norm is not applied: params, optimizer state and EMA stay as
        # they were (the step counter moves on, so the next step draws new timesteps and noise)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new_tree, old_tree: jax.tree_util.tree_map(  # noqa: E731
            lambda n, o: jnp.where(finite, n, o), new_tree, old_tree)
        new = state.replace(step=state.step + 1, params=keep(params, state.params),
                            opt_state=keep(opt_state, state.opt_state), ema=keep(ema, state.ema))
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(state.step),
                   "t_min": jnp.min(t), "t_max": jnp.max(t), "nonfinite": 1.0 - finite.astype(jnp.float32),
                   **extra}
        return new, metrics

    batch_ndims = batch_ndims or {"latents": 5, "text_emb": 3,
                                  **({"image_latents": 5} if opts.image_dropout is not None else {})}
    b_sh = {k: batch_sharding(mesh, nd) for k, nd in batch_ndims.items()}
    repl = NamedSharding(mesh, PartitionSpec())
    jitted = jax.jit(step, in_shardings=(state_shardings, b_sh), out_shardings=(state_shardings, repl),
                     donate_argnums=(0,) if donate else ())

    def run(state, batch):
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    run.jitted = jitted
    run.batch_shardings = b_sh
    return run
