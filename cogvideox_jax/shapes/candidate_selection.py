"""Best-of-N sampling with the model as its own verifier: keep the candidate its prompt explains best.

Each prompt is sampled ``N`` times (different initial noise). Every candidate's final latents ``x0``
are then noised at a few timesteps (the same noise for every caption) and denoised once under the
prompt and under each of its contrast prompts (``contrast_prompts.py``: the prompt with its shape
word swapped). The candidate whose prompt gives the lowest v-loss *relative to* the contrast prompts'
is kept: the one the model itself reads most clearly as "this shape, not the others". This is a
diffusion classifier (Li et al. 2023, "Your Diffusion Model is Secretly a Zero-Shot Classifier")
used as the verifier of a search over the initial noise (Ma et al. 2025, "Inference-Time Scaling for
Diffusion Models beyond Scaling Denoising Steps"). No other model and no evaluator is involved.

The loss can weight the object's latent cells (``object_weight``: as the shapes recipe's training
loss, ``cogvideox_jax/shapes/object_loss_weight.py``), so that a flat background does not drown the
outline. A prompt with no contrast prompts gets equal scores for all its candidates, and its first
candidate is kept. Not part of the reference pipeline; off unless asked for (``N = 1``).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from cogvideox_jax.diffusion.training_targets import add_noise, alphas_cumprod_table, velocity_target
from cogvideox_jax.shapes.object_loss_weight import object_loss_weights


@dataclass(frozen=True)
class CandidateSelection:
    """Best-of-N settings. ``candidates`` 1: plain sampling (the rest unused)."""
    candidates: int = 1
    timesteps: tuple[int, ...] = (50, 150, 250, 350, 450)   # where the caption decides the outline
    repeats: int = 2                                         # noise draws per timestep
    object_weight: float = 4.0                               # extra weight on object cells (0: plain v-loss)
    object_threshold: float = 1.5

    def __post_init__(self):
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.candidates > 1 and (not self.timesteps or self.repeats < 1):
            raise ValueError("candidate selection needs at least one timestep and one repeat")


def selection_from_settings(settings: dict, candidates: int | None = None) -> CandidateSelection:
    """The ``CandidateSelection`` of a checkpoint's ``sampling.json`` (or ``SamplingConfig`` as a dict):
    its ``candidates`` / ``selection_*`` keys, the defaults for those absent; ``candidates`` overrides."""
    d = CandidateSelection()
    return CandidateSelection(
        candidates=int(settings.get("candidates", d.candidates) if candidates is None else candidates),
        timesteps=tuple(int(t) for t in settings.get("selection_timesteps", d.timesteps)),
        repeats=int(settings.get("selection_repeats", d.repeats)),
        object_weight=float(settings.get("selection_object_weight", d.object_weight)))


def caption_losses(model_fn: Callable, x0, text_embeds, alphas_cumprod, timesteps: Sequence[int], key,
                   repeats: int = 1, object_weight: float = 0.0, object_threshold: float = 1.5):
    """``(N, K)`` v-losses of the clean latents ``x0`` (N, t, h, w, C) under each of K captions
    ``text_embeds`` (K, N, L, D), averaged over ``timesteps`` and ``repeats`` noise draws (one
    ``lax.scan`` over them: the model is traced once); each draw's noise is the same for the K
    captions. ``model_fn(x_t, text, t[B]) -> v``."""
    k, n = text_embeds.shape[:2]
    weights = object_loss_weights(x0, object_weight, object_threshold)          # (N, t, h, w, 1)
    text = text_embeds.reshape(k * n, *text_embeds.shape[2:])
    draws = jnp.asarray([(t, i * 1000 + r) for i, t in enumerate(timesteps) for r in range(repeats)], jnp.int32)

    def one_draw(total, draw):
        t, salt = draw[0], draw[1]
        noise = jax.random.normal(jax.random.fold_in(key, salt), x0.shape, jnp.float32)
        tt = jnp.full((n,), t, jnp.int32)
        x_t = add_noise(alphas_cumprod, x0, noise, tt)
        v = model_fn(jnp.concatenate([x_t] * k), text, jnp.full((k * n,), t, jnp.int32)).astype(jnp.float32)
        err = jnp.square(v.reshape(k, *x0.shape) - velocity_target(alphas_cumprod, x0, noise, tt)) * weights
        return total + err.mean(axis=tuple(range(2, err.ndim))), None

    total, _ = jax.lax.scan(one_draw, jnp.zeros((k, n), jnp.float32), draws)
    return (total / draws.shape[0]).T


def relative_prompt_loss(losses, mask):
    """``(N,)`` the prompt's loss over the mean loss of itself and its real contrast prompts.

    ``losses`` (N, 1 + K): column 0 the prompt, then the contrast prompts; ``mask`` (K, N): 1 where a
    contrast prompt is real (padding columns are ignored). Lower: the prompt fits better than its
    alternatives. 1.0 for a prompt with no contrast prompts."""
    m = jnp.concatenate([jnp.ones((1, mask.shape[1]), losses.dtype), mask.astype(losses.dtype)]).T
    mean = (losses * m).sum(axis=1) / m.sum(axis=1)
    return losses[:, 0] / mean


def best_candidates(scores, num_candidates: int):
    """Index into the ``(B * N,)`` prompt-major ``scores`` of each prompt's lowest-scoring candidate, ``(B,)``."""
    per_prompt = scores.reshape(-1, num_candidates)
    return jnp.arange(per_prompt.shape[0]) * num_candidates + jnp.argmin(per_prompt, axis=1)


def selection_key(seed: int):
    """The key a ``seed``'s call draws its candidate selection's noise from."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 3)


_SCORERS = weakref.WeakKeyDictionary()   # pipeline -> {selection: jitted scorer}


def candidate_scores(pipe, latents, cond_text, contrast_text, contrast_mask, selection, key):
    """The ``(B * N,)`` relative prompt losses and ``(B * N, 1 + K)`` caption losses of the candidates'
    final ``latents`` under ``pipe``'s transformer: ``cond_text`` ``(B * N, L, D)``, ``contrast_text``
    ``(K, B * N, L, D)``, ``contrast_mask`` ``(K, B * N)``."""
    scorers = _SCORERS.setdefault(pipe, {})
    if selection not in scorers:
        transformer = pipe.components.transformer
        ac = alphas_cumprod_table(pipe.components.scheduler_config)

        def score(params, x0, text, mask, key):
            fn = lambda x, txt, t: transformer.apply({"params": params}, x, txt, t)  # noqa: E731
            losses = caption_losses(fn, x0, text, ac, selection.timesteps, key, selection.repeats,
                                    selection.object_weight, selection.object_threshold)
            return relative_prompt_loss(losses, mask), losses

        scorers[selection] = jax.jit(score)
    text = jnp.concatenate([cond_text[None], contrast_text])
    return scorers[selection](pipe.components.transformer_params, latents, text, contrast_mask, key)


def select_candidates(pipe, latents, cond_text, contrast_text, contrast_mask, selection, key):
    """Each prompt's best of its ``N`` candidates (``(B * N, ...)`` prompt-major -> ``(B, ...)``); with no
    contrast prompts, the first. ``key``: one for the batch, or a list of one per prompt (per-prompt
    seeds: each prompt's candidates scored as a call of that prompt alone)."""
    n = selection.candidates
    if contrast_text is None:
        return latents[::n]
    if not isinstance(key, list):
        relative, _ = candidate_scores(pipe, latents, cond_text, contrast_text, contrast_mask, selection, key)
        return latents[best_candidates(relative, n)]
    kept = []
    for b, k in enumerate(key):
        rows = slice(b * n, (b + 1) * n)
        relative, _ = candidate_scores(pipe, latents[rows], cond_text[rows], contrast_text[:, rows],
                                       contrast_mask[:, rows], selection, k)
        kept.append(latents[rows][best_candidates(relative, n)])
    return jnp.concatenate(kept)
