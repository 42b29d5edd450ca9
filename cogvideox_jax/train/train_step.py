"""One jitted training step on a mesh: noise, explicit-uniform (or density-drawn) timesteps, caption
dropout, v-loss (optionally weighted per element), gradient accumulation (``lax.scan`` over
micro-batches), AdamW update, EMA.

Batches are ``{"latents": (B,t,h,w,C), "text_emb": (B,L,D)}``, the batch dim sharded over
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

from configs.train_config import TrainConfig
from cogvideox_jax.diffusion.training_targets import add_noise
from cogvideox_jax.parallel.logical_axes import LOGICAL_AXIS_RULES
from cogvideox_jax.parallel.mesh import local_batch_divisor
from cogvideox_jax.parallel.sharded_apply import batch_sharding
from cogvideox_jax.train.diffusion_loss import v_prediction_loss
from cogvideox_jax.train.ema import update_ema
from cogvideox_jax.train.i2v_conditioning import drop_images, i2v_model_input
from cogvideox_jax.train.latent_frame_padding import pad_latent_frames
from cogvideox_jax.train.text_dropout import drop_text
from cogvideox_jax.train.timestep_density import sample_timesteps
from cogvideox_jax.train.timestep_sampling import explicit_uniform_timesteps
from cogvideox_jax.train.train_state import TrainState, model_params


@dataclass(frozen=True)
class StepOptions:
    """What the jitted step does besides the model: ``cfg`` (a ``TrainConfig``; the step reads its
    ``text_dropout``, ``explicit_uniform_sampling``, ``optimizer.grad_accum_steps``, ``ema_decay`` and
    ``image_dropout``) and what the ``Trainer`` derives from it and the model (``Trainer.step_options``)."""
    cfg: TrainConfig
    alphas_cumprod: np.ndarray            # (num_timesteps,) float64
    timestep_probabilities: np.ndarray | None = None   # set → t drawn from this table (timestep_density.py)
    lora_scale: float | None = None       # set → state.params is a LoRA tree over state.frozen
    null_text_emb: np.ndarray | None = None   # (L, D) dropped captions' embedding (default zeros)
    image_conditioned: bool = False       # image-to-video: batches carry "image_latents" (B,1,h,w,C)
    ofs: float | None = None              # CogVideoX 1.5-I2V's ofs embedding input (2.0)
    patch_size_t: int = 1                 # CogVideoX 1.5: 2 (latent frames padded to a multiple: latent_frame_padding.py)
    # clean latents (B,t,h,w,C) float32 -> per-element v-loss weights broadcasting against them
    # (e.g. heavier on an object than on a flat background); None: unweighted
    loss_weights: Callable | None = None


def _micro(x, n):
    """(B, …) → (n, B/n, …) with micro-batch j = rows j, j+n, … (keeps each row on its data shard)."""
    if n == 1:
        return x[None]
    return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)


def make_loss_and_grads(module: nn.Module, opts: StepOptions, num_data_shards: int) -> Callable:
    ac = jnp.asarray(opts.alphas_cumprod, jnp.float32)
    cfg = opts.cfg

    def loss_and_grads(state: TrainState, batch):
        latents = pad_latent_frames(batch["latents"].astype(jnp.float32), opts.patch_size_t)
        text = batch["text_emb"]
        bsz = latents.shape[0]
        k_t, k_n, k_d = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
        if opts.timestep_probabilities is None:
            t = explicit_uniform_timesteps(k_t, bsz, num_data_shards, ac.shape[0], cfg.explicit_uniform_sampling)
        else:
            t = sample_timesteps(k_t, bsz, opts.timestep_probabilities)
        noise = jax.random.normal(k_n, latents.shape, jnp.float32)
        text = drop_text(k_d, text, cfg.text_dropout, opts.null_text_emb)
        kw = {} if opts.ofs is None else {"ofs": opts.ofs}
        x_t = add_noise(ac, latents, noise, t)

        def loss_fn(trainable, mb):
            p = model_params(state.replace(params=trainable), opts.lora_scale)
            x_in = i2v_model_input(mb["x_t"], mb["image"]) if "image" in mb else mb["x_t"]
            v = module.apply({"params": p}, x_in, mb["text"], mb["t"], **kw)
            w = None if opts.loss_weights is None else opts.loss_weights(mb["x0"])
            return v_prediction_loss(ac, v, mb["x0"], mb["noise"], mb["t"], weights=w)

        n = cfg.optimizer.grad_accum_steps
        mbs = {"x0": latents, "x_t": x_t, "noise": noise, "text": text, "t": t}
        if opts.image_conditioned:  # dropout over the whole batch: independent of the accumulation split
            mbs["image"] = drop_images(jax.random.fold_in(k_d, 1), batch["image_latents"].astype(jnp.float32),
                                       cfg.image_dropout)
        mbs = {k: _micro(x, n) for k, x in mbs.items()}
        grad_fn = jax.value_and_grad(loss_fn)
        if n == 1:
            loss, grads = grad_fn(state.params, jax.tree_util.tree_map(lambda x: x[0], mbs))
        else:
            def body(carry, mb):
                l_, g = grad_fn(state.params, mb)
                return (carry[0] + l_, jax.tree_util.tree_map(jnp.add, carry[1], g)), None

            zeros = jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
            (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), mbs)
            loss = loss / n
            grads = jax.tree_util.tree_map(lambda g, p: (g / n).astype(p.dtype), grads, state.params)
        return loss, grads, t

    return loss_and_grads


def make_train_step(module: nn.Module, optimizer: optax.GradientTransformation, schedule, opts: StepOptions,
                    mesh: Mesh, state_shardings: TrainState, batch_shapes: dict, donate: bool = True) -> Callable:
    """``step(state, batch) -> (state, metrics)`` jitted with in/out shardings on ``mesh``; ``batch_shapes``:
    the shape of every array a batch carries (``Trainer.batch_shapes``)."""
    loss_and_grads = make_loss_and_grads(module, opts, local_batch_divisor(mesh))
    ema_decay = opts.cfg.ema_decay

    def step(state: TrainState, batch):
        with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
            loss, grads, t = loss_and_grads(state, batch)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = update_ema(state.ema, params, ema_decay) if ema_decay else state.ema
        # a non-finite loss or gradient norm is not applied: params, optimizer state and EMA stay as
        # they were (the step counter moves on, so the next step draws new timesteps and noise)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new_tree, old_tree: jax.tree_util.tree_map(  # noqa: E731
            lambda n, o: jnp.where(finite, n, o), new_tree, old_tree)
        new = state.replace(step=state.step + 1, params=keep(params, state.params),
                            opt_state=keep(opt_state, state.opt_state), ema=keep(ema, state.ema))
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(state.step),
                   "t_min": jnp.min(t), "t_max": jnp.max(t), "nonfinite": 1.0 - finite.astype(jnp.float32)}
        return new, metrics

    b_sh = {k: batch_sharding(mesh, shape) for k, shape in batch_shapes.items()}
    repl = NamedSharding(mesh, PartitionSpec())
    jitted = jax.jit(step, in_shardings=(state_shardings, b_sh), out_shardings=(state_shardings, repl),
                     donate_argnums=(0,) if donate else ())

    def run(state, batch):
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    run.jitted = jitted
    run.batch_shardings = b_sh
    return run
