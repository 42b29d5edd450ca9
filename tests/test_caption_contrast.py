"""The caption-contrastive training term (train/caption_contrast.py), its swapped captions
(data/shapes/swapped_captions.py) and its path through the data source and the jitted step."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.train_config import DataConfig, StageConfig
from cogvideox_jax.shapes.dataset.swapped_captions import swapped_shape_captions
from cogvideox_jax.shapes.dataset.vocabulary import SHAPES
from cogvideox_jax.train.caption_contrast import caption_contrast_term
from cogvideox_jax.train.latent_batches import ArrayLatentBatches
from cogvideox_jax.train.train_step import StepOptions, make_loss_and_grads
from cogvideox_jax.train.trainer import Trainer
from tests.test_train_loop import tiny_cfg


def test_swapped_captions_name_every_other_shape():
    out = swapped_shape_captions("a small red disc moves to the left")  # a synonym: "disc" is a circle
    assert out == [f"a small red {s} moves to the left" for s in SHAPES if s != "circle"]
    assert swapped_shape_captions("A Cross on black")[0] == "A circle on black"
    with pytest.raises(ValueError, match="exactly one shape word"):
        swapped_shape_captions("a red circle and a blue square")
    with pytest.raises(ValueError, match="exactly one shape word"):
        swapped_shape_captions("a red blob")


def test_term_values_and_gradient_direction():
    beta = 20.0
    lt = jnp.array([0.5, 0.2, 0.4, 0.3])
    ls = jnp.array([0.5, 0.3, 0.1, 0.9])
    keep = jnp.array([True, True, True, False])
    term, gap = caption_contrast_term(lt, ls, keep, beta)
    g = (np.asarray(ls) - np.asarray(lt)) / np.asarray(lt)
    expect = np.asarray(lt) / beta * np.log1p(np.exp(-beta * g))
    np.testing.assert_allclose(term, expect[:3].mean(), rtol=1e-6)
    np.testing.assert_allclose(gap, g[:3].mean(), rtol=1e-6)
    # equal losses: ln 2 / beta of the true loss; a clear margin: ~0; a reversed one: ~ -g L
    np.testing.assert_allclose(expect[0], 0.5 * np.log(2) / beta, rtol=1e-6)
    assert expect[1] < 1e-5 and expect[2] == pytest.approx(-g[2] * 0.4, rel=1e-3)
    d_true, d_swapped = jax.grad(lambda a, b: caption_contrast_term(a, b, keep, beta)[0], argnums=(0, 1))(lt, ls)
    assert (d_true[:3] > 0).all() and (d_swapped[:3] < 0).all()   # lower the true loss, raise the swapped one
    assert d_true[3] == 0 and d_swapped[3] == 0                   # a dropped caption's row does not count
    assert caption_contrast_term(lt, ls, jnp.zeros(4, bool), beta)[0] == 0


def test_batches_draw_one_swapped_caption_per_row_and_resume():
    n, k = 12, 4
    lat = np.zeros((n, 1, 2, 2, 4))
    txt = np.broadcast_to(np.arange(n, dtype=float)[:, None, None], (n, 3, 5))            # row i: i
    contrast = np.broadcast_to((100 * np.arange(n)[:, None] + np.arange(k))[:, :, None, None], (n, k, 3, 5))
    src = ArrayLatentBatches(lat, txt, 4, seed=1, contrast=contrast)
    batches = [next(src) for _ in range(6)]
    drawn = []
    for b in batches:
        rows, c = b["text_emb"][:, 0, 0], b["contrast_text_emb"][:, 0, 0]
        np.testing.assert_array_equal(c // 100, rows)   # each row's own swapped captions
        drawn += list(c % 100)
    assert set(drawn) == set(range(k))
    again = ArrayLatentBatches(lat, txt, 4, seed=1, contrast=contrast)
    again.set_state({"position": 3, "seed": 1})
    np.testing.assert_array_equal(next(again)["contrast_text_emb"], batches[3]["contrast_text_emb"])
    with pytest.raises(ValueError, match="do not match"):
        ArrayLatentBatches(lat, txt, 4, contrast=contrast[:, :, :2])


def _precomputed(tmp_path):
    """A precomputed-latents folder for the tiny model: 8 clips, captions, 3 swapped captions each."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / "data")
    os.makedirs(path)
    np.save(os.path.join(path, "latents.npy"), rng.standard_normal((8, 2, 2, 2, 4)).astype(np.float32))
    np.save(os.path.join(path, "text_emb.npy"), rng.standard_normal((8, 8, 32)).astype(np.float32))
    np.save(os.path.join(path, "contrast_text_emb.npy"), rng.standard_normal((8, 3, 8, 32)).astype(np.float32))
    return path


def test_contrast_term_reaches_the_step(tmp_path):
    """With the swapped caption equal to the true one the term is exactly ln 2 / beta x the v-loss (gap 0);
    with real swaps the v-loss is unchanged, the gap is not 0 and the gradient moves; before
    caption_contrast_start_step the step is the plain one. Then a short fit logs the gap."""
    stages = (StageConfig(steps=2, num_frames=5, height=16, width=16),)
    cfg = tiny_cfg(stages=stages, data=DataConfig(kind="precomputed", path=_precomputed(tmp_path)),
                   caption_contrast_weight=2.0)
    tr = Trainer(cfg, str(tmp_path / "run"))
    state = tr.build_state()
    # away from the init (whose zero-initialized output layer makes every caption's v the same)
    leaves, treedef = jax.tree_util.tree_flatten(state.params)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    state = state.replace(params=jax.tree_util.tree_unflatten(
        treedef, [p + 0.05 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]))
    batch = next(tr._stage(0, 0, None).data)
    same = {**batch, "contrast_text_emb": batch["text_emb"]}
    runs = {}
    for label, kw in (("plain", {}), ("contrast", dict(caption_contrast_weight=2.0)),
                      ("later", dict(caption_contrast_weight=2.0, caption_contrast_start_step=5))):
        fn = jax.jit(make_loss_and_grads(tr.spec.module, StepOptions(tr.alphas_cumprod, **kw), 8))
        with jax.set_mesh(tr.mesh):
            runs[label] = jax.device_get(fn(state, batch))
            if label == "contrast":
                runs["same"] = jax.device_get(fn(state, same))
    tr.close()
    beta = StepOptions(None).caption_contrast_sharpness
    loss, _, _, extra = runs["same"]
    assert extra["caption_gap"] == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(extra["caption_contrast"], np.log(2) / beta * loss, rtol=1e-4)
    plain, contrast, later = runs["plain"], runs["contrast"], runs["later"]
    np.testing.assert_allclose(contrast[0], plain[0], rtol=1e-5)
    assert abs(contrast[3]["caption_gap"]) > 1e-4 and contrast[3]["caption_contrast"] > 0
    leaves = [jax.tree_util.tree_leaves(r[1]) for r in (plain, contrast, later)]
    assert max(float(np.abs(a - b).max()) for a, b in zip(leaves[0], leaves[1])) > 1e-6
    for a, b in zip(leaves[0], leaves[2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert later[3]["caption_gap"] == 0

    cfg = tiny_cfg(stages=stages, data=DataConfig(kind="precomputed", path=str(tmp_path / "data")),
                   caption_contrast_weight=2.0, caption_contrast_start_step=1)
    tr = Trainer(cfg, str(tmp_path / "fit"), progress=False)
    recs = tr.fit()
    tr.close()
    assert recs[0]["caption_contrast"] == 0 and recs[1]["caption_contrast"] > 0 and np.isfinite(recs[1]["loss"])

    os.remove(str(tmp_path / "data" / "contrast_text_emb.npy"))
    with pytest.raises(FileNotFoundError, match="contrast_text_emb.npy"):
        Trainer(cfg, str(tmp_path / "missing"), progress=False)._stage(0, 0, None)
    with pytest.raises(ValueError, match="precomputed"):
        Trainer(dataclasses.replace(cfg, data=DataConfig()), str(tmp_path / "synthetic"))
