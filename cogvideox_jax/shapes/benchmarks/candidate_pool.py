"""How good is the best-of-N sampler's verifier? Every candidate kept, scored by the verifier and by the evaluator.

    python cogvideox_jax/shapes/benchmarks/candidate_pool.py --out POOL                          # package model, 8 candidates, 25 steps
    python cogvideox_jax/shapes/benchmarks/candidate_pool.py --out POOL --candidates 4 --steps 50 --seeds 2,3 --limit 40
    python cogvideox_jax/shapes/benchmarks/candidate_pool.py --out POOL --analyze                # redo the tables of a finished pool
    python cogvideox_jax/shapes/benchmarks/candidate_pool.py --out POOL --select 50,150,250,350,450x2 --select 25,50,100x1

For each held-out prompt of the recipe's dataset (regenerated from ``cogvideox_jax/shapes/config.py`` unless
``--dataset`` is given) and each seed, the checkpoint samples ``--candidates`` videos exactly as
``shapes.sampling.sample(..., selection=...)`` does in the recipe's evaluation (``sample_prompts``: batches of
20 prompts, the same seeds, the checkpoint's ``sampling.json`` apart from ``--steps``), but keeps every
candidate: its mp4, the verifier's relative prompt loss and caption losses
(``cogvideox_jax/shapes/candidate_selection.py``) and its final latent. The evaluator (``cogvideox-jax eval shapes``)
then scores every candidate, and the tables show, for n = 1, 2, 4, … candidates per prompt (the first n
of the pool, which are i.i.d.), the scores of the first candidate, of the verifier's pick (what the
pipeline returns with ``candidates=n``; with n = ``--candidates`` exactly the recipe's evaluation) and of
the best candidate by the evaluator (the oracle: what a perfect verifier would reach); and the
verifier's within-prompt AUC: over the prompts with both right and wrong shapes among their
candidates, how often a right one scores lower than a wrong one (0.5: no better than chance).
``--select T,...xR`` scores them again exactly as the pipeline would with
those selection timesteps and repeats (its own scoring and key), so its pick among all the pool's
candidates is the video the recipe's evaluation would get with those settings.
Results: BENCHMARKS.md, "The shapes model's research benchmarks"; cogvideox_jax/shapes/README.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time
from collections import defaultdict

import numpy as np


def sample_pool(checkpoint: str, rows: list[dict], seeds, out: str, candidates: int, steps: int | None) -> None:
    from cogvideox_jax.data.video_io import write_video
    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.shapes import sampling
    from cogvideox_jax.shapes.candidate_selection import candidate_scores, selection_from_settings
    from cogvideox_jax.shapes.contrast_prompts import contrast_prompts
    from cogvideox_jax.pipeline.components import sampling_defaults
    from cogvideox_jax.shapes.recipe import SAMPLE_BATCH, batch_seed

    settings = sampling_defaults(checkpoint)
    selection = selection_from_settings(settings, candidates=candidates)
    steps = steps or int(settings["steps"])
    kept = {}

    def keep_every_candidate(pipe, latents, cond_text, contrast_text, contrast_mask, sel, key):
        """Scores the candidates as the selection does, records the scores, keeps them all."""
        rel, losses = candidate_scores(pipe, latents, cond_text, contrast_text, contrast_mask, sel, key)
        kept.update(rel=np.asarray(rel), losses=np.asarray(losses), latents=np.asarray(latents))
        return latents

    sampling.select_candidates = keep_every_candidate
    pipe = CogVideoXPipeline.from_pretrained(checkpoint)
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    meta, t0 = [], time.time()
    for seed in seeds:
        for start in range(0, len(rows), SAMPLE_BATCH):
            chunk = rows[start:start + SAMPLE_BATCH]
            captions = [r["caption"] for r in chunk]
            videos = np.asarray(sampling.sample(
                pipe, captions, num_inference_steps=steps, guidance_scale=float(settings["guidance_scale"]),
                seed=batch_seed(seed, start), progress=False, selection=selection,
                contrast_prompts=[contrast_prompts(c, [tuple(settings["contrast_words"])]) for c in captions],
                contrast_scale=float(settings["contrast_scale"])))
            for j, video in enumerate(videos):
                i, c = start + j // candidates, j % candidates
                rel = f"videos/{i:05d}_seed{seed}_c{c}.mp4"
                write_video(os.path.join(out, rel), video, fps=8.0)
                meta.append({"video": rel, "caption": rows[i]["caption"], "seed": seed, "prompt": i, "candidate": c,
                             "relative_loss": float(kept["rel"][j]), "caption_losses": kept["losses"][j].tolist(),
                             **{k: rows[i].get(k) for k in ("color", "shape", "direction", "size", "background")}})
            np.save(os.path.join(out, f"latents_seed{seed}_{start:05d}.npy"), kept["latents"])
            print(f"seed {seed}, prompts {start}-{start + len(chunk) - 1}: {time.time() - t0:.0f} s", flush=True)
    with open(os.path.join(out, "metadata.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(m) + "\n" for m in meta)
    with open(os.path.join(out, "settings.json"), "w", encoding="utf-8") as f:
        json.dump({"checkpoint": checkpoint, "candidates": candidates, "steps": steps, "seeds": list(seeds),
                   "sampling": settings, "sampling_seconds": time.time() - t0}, f, indent=1)


def evaluate_pool(out: str) -> None:
    from cogvideox_jax.shapes.eval.evaluator import evaluate_folder

    records, _ = evaluate_folder(out)
    with open(os.path.join(out, "evaluation.json"), "w", encoding="utf-8") as f:
        json.dump([{"video": r["video"], "correct": r["correct"], "pred": r["pred"],
                    "temporal_consistency": r["temporal_consistency"]} for r in records], f)


def within_prompt_auc(groups) -> float | None:
    """Over groups of ``(score, right)`` candidates: how often a right one scores lower than a wrong one of
    its group (ties count half); None when no group has both."""
    wins = pairs = 0
    for g in groups:
        for a, right_a in g:
            for b, right_b in g:
                if right_a and not right_b:
                    pairs += 1
                    wins += (a < b) + 0.5 * (a == b)
    return wins / pairs if pairs else None


def pick(cands: list[dict], rule: str) -> dict:
    if rule == "first":
        return cands[0]
    if rule == "verifier":
        return min(cands, key=lambda c: c["relative_loss"])
    return max(cands, key=lambda c: bool(c["correct"]["shape"]))      # oracle: the first right one


def scores_of(chosen: list[dict], label: str) -> dict:
    """The evaluator's accuracies, temporal consistency and shape accuracy per asked shape of the ``chosen``
    candidates, printed as one table row after ``label``."""
    acc = {a: float(np.mean([bool(c["correct"][a]) for c in chosen if c["correct"][a] is not None]))
           for a in ("color", "direction", "shape", "size")}
    by_shape = defaultdict(list)
    for c in chosen:
        by_shape[c["shape"]].append(bool(c["correct"]["shape"]))
    tc = float(np.mean([c["temporal_consistency"] for c in chosen]))
    print(label + "  ".join(f"{100 * acc[a]:5.1f}" for a in acc) + f"  {tc:.2f} | "
          + " ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_shape.items())))
    return {"accuracy": acc, "temporal_consistency": tc,
            "shape_by_target": {k: [int(sum(v)), len(v)] for k, v in sorted(by_shape.items())}}


def pool_groups(out: str) -> dict:
    """``{(seed, prompt): [candidate, ...]}``: each candidate's metadata with its evaluation."""
    meta = [json.loads(line) for line in open(os.path.join(out, "metadata.jsonl"), encoding="utf-8")]
    evaluation = {r["video"]: r for r in json.load(open(os.path.join(out, "evaluation.json"), encoding="utf-8"))}
    groups = defaultdict(list)
    for m in meta:
        groups[(m["seed"], m["prompt"])].append({**m, **evaluation[m["video"]]})
    return groups


def analyze(out: str) -> dict:
    groups = pool_groups(out)
    n_max = max(len(g) for g in groups.values())
    ns = [n for n in (1, 2, 4, 8, 16, 32) if n < n_max] + [n_max]
    report = {"prompts_x_seeds": len(groups), "candidates": n_max, "rows": []}
    print(f"{len(groups)} (prompt, seed) pairs x {n_max} candidates")
    print(f"{'pick':9s} {'n':>3s}  color  direction  shape   size    TC  | shape by target")
    for rule in ("first", "verifier", "oracle"):
        for n in ([1] if rule == "first" else [n for n in ns if n > 1]):
            chosen = [pick(sorted(g, key=lambda c: c["candidate"])[:n], rule) for g in groups.values()]
            report["rows"].append({"pick": rule, "n": n, **scores_of(chosen, f"{rule:9s} {n:3d}  ")})
    mixed = [g for g in groups.values() if 0 < sum(bool(c["correct"]["shape"]) for c in g) < len(g)]
    report["verifier_within_prompt_auc"] = within_prompt_auc(
        [(c["relative_loss"], bool(c["correct"]["shape"])) for c in g] for g in groups.values())
    says_right = np.asarray([c["caption_losses"][0] <= min(c["caption_losses"][1:]) for g in groups.values() for c in g])
    right = np.asarray([bool(c["correct"]["shape"]) for g in groups.values() for c in g])
    report["verifier_names_prompt_shape"] = float(says_right.mean())
    print(f"verifier within-prompt AUC {report['verifier_within_prompt_auc']:.3f} over {len(mixed)} prompts with "
          f"right and wrong candidates; the prompt's caption has the lowest loss for {100 * says_right.mean():.1f} % "
          f"of the candidates (evaluator finds the shape for {100 * right[says_right].mean():.1f} % of those, "
          f"{100 * right[~says_right].mean() if (~says_right).any() else float('nan'):.1f} % of the others)")
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    return report


def pool_batches(out: str, groups: dict, pipe, n: int, settings: dict):
    """Per sampling batch of the pool (``groups``: ``pool_groups(out)``): ``(seed, start, latents (B * n, ...),
    texts)``, the texts as ``shapes/sampling.py`` prepares them for its selection (cond, contrast, mask)."""
    import jax.numpy as jnp

    from cogvideox_jax.shapes.contrast_prompts import contrast_batch, contrast_prompts

    captions = {m["prompt"]: m["caption"] for g in groups.values() for m in g}
    for path in sorted(glob.glob(os.path.join(out, "latents_seed*_*.npy"))):
        name = os.path.basename(path)[len("latents_seed"):-len(".npy")]
        seed, start = (int(x) for x in name.split("_"))
        latents = jnp.asarray(np.load(path))
        caps = [captions[i] for i in range(start, start + latents.shape[0] // n)]
        contrast, mask = contrast_batch(pipe, caps, [contrast_prompts(c, [tuple(settings["contrast_words"])])
                                                     for c in caps])
        yield (seed, start, latents, jnp.repeat(pipe.encode_prompt(caps), n, axis=0), jnp.repeat(contrast, n, axis=1),
               jnp.repeat(mask, n, axis=1))


def select_again(out: str, specs: list[str]) -> dict:
    """The pipeline's own pick among the pool's candidates under other selection settings, each ``spec``
    ``"T,T,...xR"`` (timesteps x repeats). Scored by ``candidate_scores`` with the key sampling uses for
    that batch's seed, so the pick is exactly the video that ``shapes.sampling.sample(pipe, ...,
    selection=CandidateSelection(N, T, R))`` returns: the candidates do not depend on
    the selection's settings. Prints the evaluator's scores of the picks (and of the best of the first n
    candidates by the same scores) and the AUC."""
    import dataclasses

    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.shapes.candidate_selection import candidate_scores, selection_from_settings, selection_key
    from cogvideox_jax.shapes.recipe import batch_seed

    info = json.load(open(os.path.join(out, "settings.json"), encoding="utf-8"))
    settings, n = info["sampling"], info["candidates"]
    pipe = CogVideoXPipeline.from_pretrained(info["checkpoint"])
    groups = pool_groups(out)
    recorded = {(c["seed"], c["prompt"], c["candidate"]): c["relative_loss"] for g in groups.values() for c in g}
    batches = list(pool_batches(out, groups, pipe, n, settings))     # read and encoded once for every spec
    checked = False
    report = []
    for spec in specs:
        ts, _, repeats = spec.partition("x")
        sel = dataclasses.replace(selection_from_settings(settings, candidates=n),
                                  timesteps=tuple(int(t) for t in ts.split(",")), repeats=int(repeats or 1))
        scores = {}
        for seed, start, latents, cond, contrast, mask in batches:
            key = selection_key(batch_seed(seed, start))
            rel, _ = candidate_scores(pipe, latents, cond, contrast, mask, sel, key)
            if not checked:    # the key is the pipeline's: the pool's own selection gives the recorded scores
                own, _ = candidate_scores(pipe, latents, cond, contrast, mask,
                                          selection_from_settings(settings, candidates=n), key)
                diff = max(abs(float(r) - recorded[(seed, start + j // n, j % n)]) for j, r in enumerate(np.asarray(own)))
                if diff > 1e-4:
                    raise SystemExit(f"the pool's own selection rescored differs from its record by {diff:.2e}")
                print(f"checked: the pool's own selection gives its recorded scores (max |diff| {diff:.1e})")
                checked = True
            scores.update({(seed, start + j // n, j % n): float(r) for j, r in enumerate(np.asarray(rel))})
        row = {"timesteps": list(sel.timesteps), "repeats": sel.repeats, "best_of": {},
               "auc": within_prompt_auc([(scores[(c["seed"], c["prompt"], c["candidate"])], bool(c["correct"]["shape"]))
                                         for c in g] for g in groups.values())}
        print(f"selection at t = {list(sel.timesteps)} x {sel.repeats}: AUC {row['auc']:.3f}")
        for k in sorted({k for k in (2, 4) if k < n} | {n}):
            chosen = [min(sorted(g, key=lambda c: c["candidate"])[:k],
                          key=lambda c: scores[(c["seed"], c["prompt"], c["candidate"])]) for g in groups.values()]
            row["best_of"][k] = scores_of(chosen, f"  best of {k:2d}{' (the pipeline)' if k == n else '':15s}")
        report.append(row)
    with open(os.path.join(out, "select_again.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    return report


def main(argv=None) -> None:
    from cogvideox_jax.shapes.default_model import default_checkpoint

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the pool's folder (mp4s, metadata.jsonl, latents, reports)")
    p.add_argument("--checkpoint", default=None, help="a shapes checkpoint (default: the package's)")
    p.add_argument("--dataset", default=None, help="a shapes dataset folder (default: regenerate the recipe's)")
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--steps", type=int, default=25, help="sampling steps (0: the checkpoint's sampling.json)")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--limit", type=int, default=None, help="the first LIMIT held-out prompts only")
    p.add_argument("--analyze", action="store_true", help="only redo the tables of a finished pool")
    p.add_argument("--select", action="append", default=None, metavar="T,T,...xR",
                   help="the pipeline's exact pick under these selection timesteps x repeats (repeatable)")
    args = p.parse_args(argv)
    if args.select:
        select_again(args.out, args.select)
        return
    if not args.analyze:
        if args.candidates < 2:
            raise SystemExit("--candidates must be >= 2")
        if glob.glob(os.path.join(args.out, "metadata.jsonl")):
            raise SystemExit(f"{args.out} already holds a pool: --analyze, or another --out")
        from cogvideox_jax.shapes.recipe import split_prompts

        with tempfile.TemporaryDirectory() as tmp:
            dataset = args.dataset
            if dataset is None:
                from cogvideox_jax.shapes.config import get_config
                from cogvideox_jax.shapes.dataset.make_dataset import ShapesConfig, make_dataset

                d = get_config().dataset
                dataset = os.path.join(tmp, "dataset")
                make_dataset(dataset, ShapesConfig(num_train=d.num_train, num_heldout=d.num_heldout,
                                                   num_frames=d.num_frames, height=d.size, width=d.size, seed=d.seed))
            rows = split_prompts(dataset, "heldout", args.limit)
        sample_pool(args.checkpoint or default_checkpoint(), rows, [int(s) for s in args.seeds.split(",")],
                    args.out, args.candidates, args.steps or None)
        evaluate_pool(args.out)
    analyze(args.out)


if __name__ == "__main__":
    main()
