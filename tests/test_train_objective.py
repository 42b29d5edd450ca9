"""Training objective pieces: ᾱ schedule (vs diffusers), v-loss = SAT weighted x0 loss, explicit uniform
timestep sampling, caption dropout, AdamW (vs torch), lr schedules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.train_config import OptimizerConfig, StageConfig, TrainConfig, apply_overrides
from cogvideox_jax.diffusion.training_targets import add_noise, velocity_target
from cogvideox_jax.train.diffusion_loss import training_alphas_cumprod, v_prediction_loss, weighted_x0_loss
from cogvideox_jax.train.optimizer import lr_schedule, make_optimizer
from cogvideox_jax.train.text_dropout import drop_text
from cogvideox_jax.train.timestep_sampling import (explicit_uniform_timesteps, num_timestep_groups,
                                                   timestep_interval)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_alphas_cumprod_match_diffusers_cogvideox_scheduler(shift):
    from diffusers import CogVideoXDDIMScheduler

    ref = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", rescale_betas_zero_snr=True, snr_shift_scale=shift,
                                 prediction_type="v_prediction").alphas_cumprod.double().numpy()
    ours = training_alphas_cumprod(snr_shift_scale=shift)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert ours[-1] < 1e-6 and ours[0] > 0.99


def test_v_loss_equals_sat_weighted_x0_loss():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x0 = jax.random.normal(k1, (4, 2, 4, 4, 3))
    eps = jax.random.normal(k2, x0.shape)
    v_pred = jax.random.normal(k3, x0.shape)
    ac, t = jnp.asarray(training_alphas_cumprod(), jnp.float32), jnp.array([0, 250, 700, 999])
    np.testing.assert_allclose(v_prediction_loss(ac, v_pred, x0, eps, t), weighted_x0_loss(ac, v_pred, x0, eps, t),
                               rtol=2e-4)
    # the true velocity gives zero loss, and x0 = √ᾱ·x_t − √(1−ᾱ)·v recovers the clean latent
    v = velocity_target(ac, x0, eps, t)
    assert float(v_prediction_loss(ac, v, x0, eps, t)) == 0.0
    ab = ac[t][:, None, None, None, None]
    np.testing.assert_allclose(jnp.sqrt(ab) * add_noise(ac, x0, eps, t) - jnp.sqrt(1 - ab) * v, x0, atol=1e-5)


def test_explicit_uniform_sampling_per_shard_intervals_cover_range():
    shards, per_shard = 8, 64
    assert num_timestep_groups(8) == 8 and num_timestep_groups(3) == 1 and num_timestep_groups(16) == 8
    seen = np.zeros(1000, bool)
    for s in range(20):
        t = np.asarray(explicit_uniform_timesteps(jax.random.PRNGKey(s), shards * per_shard, shards))
        for g in range(shards):
            lo, hi = timestep_interval(g, shards)
            rows = t[g * per_shard:(g + 1) * per_shard]
            assert rows.min() >= lo and rows.max() < hi, (g, rows.min(), rows.max())
        seen[t] = True
    assert seen.all(), f"{(~seen).sum()} timesteps never drawn"
    plain = np.asarray(explicit_uniform_timesteps(jax.random.PRNGKey(0), 64, 8, enabled=False))
    assert plain.min() >= 0 and plain.max() < 1000 and plain[:8].max() >= 125  # not restricted


def test_explicit_uniform_sampling_inside_sharded_jit():
    from jax.sharding import NamedSharding, PartitionSpec
    from cogvideox_jax.parallel.mesh import make_mesh

    mesh = make_mesh("data=2,fsdp=4")
    f = jax.jit(lambda k: explicit_uniform_timesteps(k, 16, 8),
                out_shardings=NamedSharding(mesh, PartitionSpec(("data", "fsdp"))))
    t = f(jax.random.PRNGKey(3))
    for shard in t.addressable_shards:
        g = shard.index[0].start // 2
        vals = np.asarray(shard.data)
        assert vals.min() >= g * 125 and vals.max() < (g + 1) * 125


def test_text_dropout_zeroes_whole_rows_at_rate():
    emb = jnp.ones((2000, 3, 4))
    out = np.asarray(drop_text(jax.random.PRNGKey(0), emb, 0.1))
    dropped = (out == 0).all(axis=(1, 2))
    kept = (out == 1).all(axis=(1, 2))
    assert (dropped | kept).all()
    assert 0.07 < dropped.mean() < 0.13
    assert drop_text(jax.random.PRNGKey(0), emb, 0.0) is emb


def test_text_dropout_uses_the_null_embedding_when_given():
    emb = jnp.ones((500, 3, 4))
    null = jnp.full((3, 4), -2.0)
    out = np.asarray(drop_text(jax.random.PRNGKey(1), emb, 0.2, null))
    dropped = (out == -2.0).all(axis=(1, 2))
    assert (dropped | (out == 1).all(axis=(1, 2))).all()
    assert 0.14 < dropped.mean() < 0.26


def test_adamw_matches_torch_adamw_with_clipping():
    import torch

    cfg = OptimizerConfig(lr=1e-2, warmup_steps=0, grad_clip=0.5)
    opt, _ = make_optimizer(cfg, [StageConfig(steps=10)])
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 3)).astype(np.float32)
    grads = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(4)]
    p = {"w": jnp.asarray(w0)}
    state = opt.init(p)
    for g in grads:
        upd, state = opt.update({"w": jnp.asarray(g)}, state, p)
        p = jax.tree_util.tree_map(lambda a, b: a + b, p, upd)
    tw = torch.nn.Parameter(torch.tensor(w0))
    topt = torch.optim.AdamW([tw], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=1e-4)
    for g in grads:
        tw.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_([tw], 0.5)
        topt.step()
    np.testing.assert_allclose(np.asarray(p["w"]), tw.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_lr_schedules_warmup_constant_cosine_and_stages():
    cfg = OptimizerConfig(lr=1e-3, warmup_steps=10)
    s = lr_schedule(cfg, [StageConfig(steps=100)])
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(5e-4) and float(s(50)) == pytest.approx(1e-3)
    cos = lr_schedule(OptimizerConfig(lr=1e-3, warmup_steps=10, schedule="cosine"), [StageConfig(steps=110)])
    assert float(cos(10)) == pytest.approx(1e-3) and float(cos(60)) == pytest.approx(5e-4, rel=1e-3)
    assert float(cos(110)) == pytest.approx(0.0, abs=1e-9)
    two = lr_schedule(cfg, [StageConfig(steps=50), StageConfig(steps=50, lr=2e-4)])
    assert float(two(40)) == pytest.approx(1e-3) and float(two(55)) == pytest.approx(1e-4)
    assert float(two(80)) == pytest.approx(2e-4)


def test_config_overrides():
    cfg = apply_overrides(TrainConfig(), ["optimizer.lr=3e-4", "stages.0.steps=7", "lora.rank=4", "mesh=data=2,fsdp=4",
                                          "explicit_uniform_sampling=false"])
    assert cfg.optimizer.lr == 3e-4 and cfg.stages[0].steps == 7 and cfg.lora.rank == 4
    assert cfg.mesh == "data=2,fsdp=4" and cfg.explicit_uniform_sampling is False
    with pytest.raises(KeyError):
        apply_overrides(cfg, ["optimizer.nope=1"])


def test_object_loss_weights_mark_the_object_cells():
    from cogvideox_jax.shapes.object_loss_weight import object_loss_weights

    rng = np.random.default_rng(0)
    bg = rng.normal(size=(2, 3, 1, 1, 4)).astype(np.float32)           # per clip, frame, channel
    x0 = np.broadcast_to(bg, (2, 3, 8, 8, 4)).copy()
    x0 += 0.05 * rng.normal(size=x0.shape).astype(np.float32)          # codec-like noise: below threshold
    x0[0, :, 2:4, 3:5] += 2.0                                          # an object: |offset| = 4 > 1.5
    x0[1, 1, 5:8, 0:2] -= 1.0                                          # |offset| = 2 > 1.5
    w = np.asarray(object_loss_weights(jnp.asarray(x0), extra=3.0, threshold=1.5))
    assert w.shape == (2, 3, 8, 8, 1) and w.dtype == np.float32
    expect = np.ones(w.shape, np.float32)
    expect[0, :, 2:4, 3:5] = 4.0
    expect[1, 1, 5:8, 0:2] = 4.0
    np.testing.assert_array_equal(w, expect)
    np.testing.assert_array_equal(np.asarray(object_loss_weights(jnp.asarray(x0), extra=0.0)), 1.0)


def test_weighted_v_loss_is_the_weighted_mean_of_squared_errors():
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(1), 4)
    x0 = jax.random.normal(k1, (3, 2, 4, 4, 5))
    noise = jax.random.normal(k2, x0.shape)
    v_pred = jax.random.normal(k3, x0.shape)
    ac, t = jnp.asarray([0.9, 0.5, 0.1], jnp.float32), jnp.arange(3)
    w = 1.0 + 4.0 * (jax.random.uniform(k4, x0.shape[:-1] + (1,)) > 0.7)
    v = velocity_target(ac, x0, noise, t)
    np.testing.assert_allclose(v_prediction_loss(ac, v_pred, x0, noise, t, weights=w),
                               jnp.mean(w * jnp.square(v_pred - v)), rtol=1e-6)
    np.testing.assert_allclose(v_prediction_loss(ac, v_pred, x0, noise, t, weights=jnp.ones_like(w)),
                               v_prediction_loss(ac, v_pred, x0, noise, t), rtol=1e-6)


def test_timestep_density_tables():
    from cogvideox_jax.train.timestep_density import timestep_probabilities

    ac = training_alphas_cumprod()
    uni = timestep_probabilities("uniform", ac)
    np.testing.assert_allclose(uni, 1e-3)
    low = timestep_probabilities("logit_normal", ac, logit_mean=-1.0)
    mid = timestep_probabilities("logit_normal", ac)
    for p in (low, mid):
        assert p.shape == (1000,) and abs(p.sum() - 1) < 1e-12 and (p > 0).all()
    assert abs(np.cumsum(mid)[499] - 0.5) < 1e-3  # logit mean 0: symmetric about T/2
    assert np.cumsum(low)[268] > 0.5 > np.cumsum(low)[267]  # median at T·sigmoid(−1) ≈ 269
    assert low[800:].sum() < 0.02 < uni[800:].sum()
    snr = ac / (1 - ac)
    ms = timestep_probabilities("min_snr", ac, min_snr_gamma=5.0)
    assert abs(snr[np.argmax(ms)] - 5.0) < 0.3  # peak where SNR = γ
    assert ms[-1] == 0.0 and ms[0] < 0.01 * ms.max()  # zero terminal SNR, and SNR → ∞ at t = 0
    for kind, kw in (("cosine", {}), ("logit_normal", {"logit_std": 0.0}), ("min_snr", {"min_snr_gamma": -1.0})):
        with pytest.raises(ValueError):
            timestep_probabilities(kind, ac, **kw)


def test_sample_timesteps_follow_the_table():
    from cogvideox_jax.train.timestep_density import sample_timesteps, timestep_probabilities

    p = np.zeros(1000)
    p[[0, 3, 999]] = [0.1, 0.3, 0.6]
    t = np.asarray(jax.jit(lambda k: sample_timesteps(k, 20000, p))(jax.random.PRNGKey(0)))
    assert t.dtype == np.int32 and set(np.unique(t)) == {0, 3, 999}
    np.testing.assert_allclose([np.mean(t == v) for v in (0, 3, 999)], [0.1, 0.3, 0.6], atol=0.015)
    q = timestep_probabilities("logit_normal", training_alphas_cumprod(), logit_mean=-1.0)
    t = np.asarray(sample_timesteps(jax.random.PRNGKey(1), 20000, q))
    hist = np.bincount(t // 100, minlength=10) / t.size
    np.testing.assert_allclose(hist, q.reshape(10, 100).sum(1), atol=0.012)
