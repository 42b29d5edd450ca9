"""The shapes transformer as a shape classifier: which shape word makes its v-loss on a clip lowest.

    python cogvideox_jax/shapes/benchmarks/shape_likelihood_classifier.py                        # the package's model, held-out clips
    python cogvideox_jax/shapes/benchmarks/shape_likelihood_classifier.py --samples DIR          # also its own samples (eval/samples)
    python cogvideox_jax/shapes/benchmarks/shape_likelihood_classifier.py --checkpoint DIR --dataset DIR

Each clip (the recipe's held-out split, regenerated from ``cogvideox_jax/shapes/config.py`` unless ``--dataset`` is
given; and, with ``--samples``, generated videos with their ``metadata.jsonl``) is encoded by the
checkpoint's VAE, noised at ``--timesteps`` (``--repeats`` noise draws, the same for every caption) and
denoised once under its caption with the shape word swapped for each of the six shapes. The
object-weighted v-loss (the training loss), divided by its mean over the six captions and averaged
over timesteps and draws, picks the shape: a diffusion classifier (Li et al. 2023, "Your Diffusion
Model is Secretly a Zero-Shot Classifier"). Prints the confusion matrix (rows: the clip's shape) and,
per timestep, the relative caption gap (the other captions' loss over the true one's, − 1) and the
accuracy of that timestep alone.
On samples it also prints how often the evaluator (``cogvideox-jax eval shapes``) finds the shape
drawn when the classifier agrees with the caption and when it does not (BENCHMARKS.md, "The model as a
shape classifier").
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np


def make_caption_loss(transformer, alphas_cumprod, object_weight: float, object_threshold: float):
    """A jitted ``(params, x0 (N, t, h, w, C) scaled latents, text_emb (N, K, L, D): the K caption variants of
    each clip, t, key) -> (N, K)`` object-weighted v-loss at timestep ``t``, the same noise for the K
    variants: the best-of-N sampler's verifier (``cogvideox_jax/shapes/candidate_selection.py``) at one timestep."""
    import functools

    import jax
    import jax.numpy as jnp

    from cogvideox_jax.shapes.candidate_selection import caption_losses as losses_of

    @functools.partial(jax.jit, static_argnums=3)
    def loss(params, x0, text_emb, t, key):
        fn = lambda x, txt, tt: transformer.apply({"params": params}, x, txt, tt)  # noqa: E731
        return losses_of(fn, x0, jnp.swapaxes(text_emb, 0, 1), alphas_cumprod, (t,), key,
                         object_weight=object_weight, object_threshold=object_threshold)

    return loss


def caption_losses(loss_fn, params, x0, text_emb, timesteps, key, repeats: int) -> np.ndarray:
    """(N, K, len(timesteps)) losses of ``make_caption_loss``'s function, averaged over ``repeats`` draws."""
    import jax

    out = np.zeros((*text_emb.shape[:2], len(timesteps)), np.float64)
    for i, t in enumerate(timesteps):
        for r in range(repeats):
            out[:, :, i] += np.asarray(loss_fn(params, x0, text_emb, t, jax.random.fold_in(key, i * 1000 + r))) / repeats
    return out


def shape_variants(caption: str, shape: str, shapes) -> list[str]:
    """The caption naming each of ``shapes`` in turn (itself at ``shape``'s place), by the contrast
    guidance's word swap (``cogvideox_jax/shapes/contrast_prompts.py``)."""
    from cogvideox_jax.shapes.contrast_prompts import contrast_prompts

    others = contrast_prompts(caption, [shapes])
    if len(others) != len(shapes) - 1:
        raise ValueError(f"caption does not name exactly one of {shapes} once: {caption!r}")
    i = list(shapes).index(shape)
    return others[:i] + [caption] + others[i:]


def classify(losses: np.ndarray) -> np.ndarray:
    """(N, K, T) losses -> (N,) index of the caption variant with the lowest relative loss."""
    return (losses / losses.mean(axis=1, keepdims=True)).mean(axis=2).argmin(axis=1)


def per_timestep(losses: np.ndarray, truth: np.ndarray) -> dict:
    """Per timestep of (N, K, T) ``losses`` with the true variants ``truth`` (N,): ``gap``, the mean
    over clips of (the other captions' mean loss / the true caption's loss − 1), the relative gap a
    caption-contrastive training term would act on (one was tried: cogvideox_jax/shapes/README.md); ``accuracy``, how often
    the true caption's loss is the lowest at that timestep alone."""
    n, k, _ = losses.shape
    true = losses[np.arange(n), truth]                                   # (N, T)
    others = (losses.sum(axis=1) - true) / (k - 1)
    return {"gap": (others / true - 1.0).mean(axis=0).tolist(),
            "accuracy": (losses.argmin(axis=1) == truth[:, None]).mean(axis=0).tolist()}


def main(argv=None) -> None:
    import jax
    import jax.numpy as jnp

    from cogvideox_jax.shapes.config import get_config
    from cogvideox_jax.shapes.dataset.vocabulary import SHAPES
    from cogvideox_jax.data.video_io import read_video
    from cogvideox_jax.models.vae.latent_scaling import scale_latents
    from cogvideox_jax.pipeline.components import encode_text, load_components
    from cogvideox_jax.shapes.default_model import default_checkpoint
    from cogvideox_jax.train.diffusion_loss import training_alphas_cumprod

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="cogvideox-jax checkpoint (default: the package's model)")
    p.add_argument("--dataset", default=None, help="a shapes dataset folder (default: regenerate the recipe's)")
    p.add_argument("--samples", default=None, help="a samples folder (videos + metadata.jsonl) to classify too")
    p.add_argument("--timesteps", default="50,150,250,350,450")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=20, help="clips per call (x6 caption variants)")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)

    recipe = get_config()
    comp = load_components(args.checkpoint or default_checkpoint())
    timesteps = [int(t) for t in args.timesteps.split(",")]
    ac = jnp.asarray(training_alphas_cumprod(snr_shift_scale=recipe.transformer_train.snr_shift_scale), jnp.float32)
    encode = jax.jit(lambda v: comp.vae.apply({"params": comp.vae_params}, v, frame_batching="whole",
                                              method="encode").mean)
    loss_fn = make_caption_loss(comp.transformer, ac, recipe.object_loss_weight, recipe.object_threshold)

    def run(folder: str, name: str) -> dict:
        with open(os.path.join(folder, "metadata.jsonl"), encoding="utf-8") as f:
            meta = [json.loads(line) for line in f if line.strip()]
        losses = []
        for i in range(0, len(meta), args.batch):
            rows = meta[i:i + args.batch]
            video = np.stack([read_video(os.path.join(folder, m["video"])) * 2.0 - 1.0 for m in rows])
            x0 = scale_latents(encode(jnp.asarray(video, jnp.float32)), comp.vae.config)
            emb = encode_text(comp, [c for m in rows for c in shape_variants(m["caption"], m["shape"], SHAPES)],
                              comp.transformer.config.max_text_seq_length)
            emb = jnp.asarray(emb).reshape(len(rows), len(SHAPES), *emb.shape[1:])
            losses.append(caption_losses(loss_fn, comp.transformer_params, x0, emb, timesteps, jax.random.PRNGKey(i), args.repeats))
        losses = np.concatenate(losses)
        pred = classify(losses)
        truth = np.asarray([SHAPES.index(m["shape"]) for m in meta])
        by_t = per_timestep(losses, truth)
        print(f"{name}, per timestep: " + "; ".join(f"t={t} gap {g:.3f} acc {a:.0%}" for t, g, a in
                                                    zip(timesteps, by_t["gap"], by_t["accuracy"])))
        confusion = np.zeros((len(SHAPES), len(SHAPES)), int)
        np.add.at(confusion, (truth, pred), 1)
        print(f"{name}: {len(meta)} clips, the classifier names the caption's shape for {np.mean(pred == truth):.1%}")
        print("           " + "".join(f"{s:>9}" for s in SHAPES))
        for s, row in zip(SHAPES, confusion):
            print(f"{s:>10} " + "".join(f"{c:9d}" for c in row))
        return {"clips": len(meta), "agreement": float(np.mean(pred == truth)), "confusion": confusion.tolist(),
                "per_timestep": by_t, "pred": pred, "meta": meta}

    results = {"shapes": list(SHAPES), "timesteps": timesteps, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            from cogvideox_jax.shapes.dataset.make_dataset import ShapesConfig, make_dataset

            d = recipe.dataset
            dataset = os.path.join(tmp, "dataset")
            make_dataset(dataset, ShapesConfig(num_train=d.num_train, num_heldout=d.num_heldout,
                                               num_frames=d.num_frames, height=d.size, width=d.size, seed=d.seed))
        gt = run(os.path.join(dataset, "heldout"), "held-out ground-truth clips")
    results["ground_truth"] = {k: gt[k] for k in ("clips", "agreement", "confusion", "per_timestep")}
    if args.samples:
        from cogvideox_jax.shapes.eval.evaluator import evaluate_folder

        s = run(args.samples, "samples")
        records, _ = evaluate_folder(args.samples)
        drawn = {r["video"]: bool(r["correct"]["shape"]) for r in records}
        ok = np.asarray([drawn[m["video"]] for m in s["meta"]])
        agree = s["pred"] == np.asarray([SHAPES.index(m["shape"]) for m in s["meta"]])
        print(f"evaluator finds the shape drawn: {ok.mean():.1%} of samples; {ok[agree].mean():.1%} of the "
              f"{agree.sum()} the classifier agrees on, {ok[~agree].mean() if (~agree).any() else float('nan'):.1%} "
              f"of the {(~agree).sum()} it does not")
        results["samples"] = {k: s[k] for k in ("clips", "agreement", "confusion", "per_timestep")}
        results["samples"].update(drawn=float(ok.mean()), drawn_when_agreeing=float(ok[agree].mean()))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
