"""CogVideoX DDIM / DPM schedulers: step-by-step parity with diffusers, compiled loop, training helpers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.scheduler import COGVIDEOX_2B, COGVIDEOX_5B, SchedulerConfig
from cogvideox_jax.diffusion import training_targets as tt
from cogvideox_jax.diffusion.sampler import init_state, scheduler_step
from cogvideox_jax.diffusion.sampling_schedule import make_sampling_schedule
from cogvideox_jax.diffusion.timesteps import inference_timesteps

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from diffusers.schedulers import scheduling_dpm_cogvideox  # noqa: E402

SHAPE = (1, 3, 4, 6, 4)  # (B, t, h, w, C) channels-last


def _model(x, t):
    """A fixed synthetic 'v prediction' depending on the sample and the timestep."""
    w = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32) * 0.5
    return np.tanh(x @ w + np.float32(t) / 1000.0).astype(np.float32)


def _reference(config: SchedulerConfig, steps, x, noises, monkeypatch):
    cls = diffusers.CogVideoXDDIMScheduler if config.kind == "ddim" else diffusers.CogVideoXDPMScheduler
    sched = cls.from_config(config.to_diffusers_config())
    sched.set_timesteps(steps)
    state = {"i": 0}
    monkeypatch.setattr(scheduling_dpm_cogvideox, "randn_tensor",
                        lambda shape, **kw: torch.from_numpy(noises[state["i"]]).permute(0, 4, 1, 2, 3))
    x_t = torch.from_numpy(x).permute(0, 4, 1, 2, 3)  # (B, C, t, h, w) as diffusers latents
    old, out, x0s = None, [], []
    ts = sched.timesteps
    for i, t in enumerate(ts):
        state["i"] = i
        v = torch.from_numpy(_model(x_t.permute(0, 2, 3, 4, 1).numpy(), int(t))).permute(0, 4, 1, 2, 3)
        if config.kind == "ddim":
            x_t, old = sched.step(v, t, x_t, return_dict=False)
        else:
            x_t, old = sched.step(v, old, t, ts[i - 1] if i > 0 else None, x_t, return_dict=False)
        out.append(x_t.permute(0, 2, 3, 4, 1).numpy())
        x0s.append(old.permute(0, 2, 3, 4, 1).numpy())
    return np.asarray(ts), out, x0s


@pytest.mark.parametrize("config", [COGVIDEOX_2B, COGVIDEOX_5B, SchedulerConfig(kind="ddim", snr_shift_scale=1.0),
                                    SchedulerConfig(kind="dpm", snr_shift_scale=3.0)],
                         ids=["ddim-2b", "dpm-5b", "ddim-shift1", "dpm-shift3"])
@pytest.mark.parametrize("steps", [50, 4, 7])
def test_step_by_step_parity(config, steps, monkeypatch):
    _check_parity(config, steps, monkeypatch)


def _check_parity(config, steps, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    noises = rng.standard_normal((steps,) + SHAPE).astype(np.float32)
    ref_ts, ref, ref_x0 = _reference(config, steps, x, noises, monkeypatch)
    sched = make_sampling_schedule(config, steps)
    np.testing.assert_array_equal(np.asarray(sched.timesteps), ref_ts)
    for leaf in jax.tree_util.tree_leaves(sched):  # no inf/nan even where the reference has them unused
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
    state, x_t = init_state(jnp.asarray(x)), jnp.asarray(x)
    # epsilon-prediction without zero-terminal SNR divides by sqrt(ᾱ_999) ~ 0.07, and the synthetic
    # model is no denoiser: values reach ~60, where 1e-5 is ~1 float32 ulp, and the 1/sqrt(ᾱ) division
    # amplifies an ulp of x_t ~15x in x0. Allow a few tens of ulps there (the v-pred configs: rtol 0).
    rtol = 5e-6 if config.prediction_type == "epsilon" else 0.0
    for i in range(steps):
        v = jnp.asarray(_model(np.asarray(x_t), int(ref_ts[i])))
        x_t, state = scheduler_step(sched, state, i, v, x_t, jnp.asarray(noises[i]))
        np.testing.assert_allclose(np.asarray(x_t), ref[i], atol=1e-5, rtol=rtol, err_msg=f"step {i}")
        np.testing.assert_allclose(np.asarray(state), ref_x0[i], atol=1e-5, rtol=rtol, err_msg=f"x0 at step {i}")


@pytest.mark.parametrize("kind", ["ddim", "dpm"])
@pytest.mark.parametrize("variant", [
    dict(timestep_spacing="leading", steps_offset=1), dict(timestep_spacing="linspace"),
    dict(set_alpha_to_one=False), dict(prediction_type="epsilon", rescale_betas_zero_snr=False),
    dict(prediction_type="sample"),
], ids=["leading+offset", "linspace", "alpha-to-one-false", "epsilon", "sample"])
def test_step_by_step_parity_other_configs(kind, variant, monkeypatch):
    """Non-default spacings / prediction types, at a step count that does not divide 1000."""
    _check_parity(SchedulerConfig(kind=kind, **variant), 7, monkeypatch)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("steps", [50, 7, 1])
def test_timesteps_match_set_timesteps(spacing, steps):
    cfg = SchedulerConfig(timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
    ref = diffusers.CogVideoXDDIMScheduler.from_config(cfg.to_diffusers_config())
    ref.set_timesteps(steps)
    np.testing.assert_array_equal(inference_timesteps(cfg, steps), ref.timesteps.numpy())


@pytest.mark.parametrize("kind", ["ddim", "dpm"])
def test_compiled_scan_loop_equals_step_by_step(kind):
    cfg = SchedulerConfig(kind=kind, snr_shift_scale=1.0)
    sched = make_sampling_schedule(cfg, 6)
    x = jnp.asarray(np.random.default_rng(2).standard_normal(SHAPE), jnp.float32)
    noises = jnp.asarray(np.random.default_rng(3).standard_normal((6,) + SHAPE), jnp.float32)

    def model(x, t):
        return jnp.tanh(x * 0.3 + t / 1000.0)

    @jax.jit
    def loop(sched, x):
        def body(carry, i):
            x, s = carry
            x, s = scheduler_step(sched, s, i, model(x, sched.timesteps[i]), x, noises[i])
            return (x, s), None
        return jax.lax.scan(body, (x, init_state(x)), jnp.arange(6))[0][0]

    ref, s = x, init_state(x)
    for i in range(6):
        ref, s = scheduler_step(sched, s, i, model(ref, sched.timesteps[i]), ref, noises[i])
    np.testing.assert_allclose(np.asarray(loop(sched, x)), np.asarray(ref), atol=1e-6)


def test_training_helpers_match_diffusers():
    cfg = COGVIDEOX_2B
    ref = diffusers.CogVideoXDDIMScheduler.from_config(cfg.to_diffusers_config())
    ac = tt.alphas_cumprod_table(cfg)
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((4, 2, 3, 3, 2)).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    t = np.array([0, 250, 700, 999])
    np.testing.assert_allclose(
        np.asarray(tt.add_noise(ac, x0, eps, t)),
        ref.add_noise(torch.from_numpy(x0), torch.from_numpy(eps), torch.from_numpy(t)).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(tt.velocity_target(ac, x0, eps, t)),
        ref.get_velocity(torch.from_numpy(x0), torch.from_numpy(eps), torch.from_numpy(t)).numpy(), atol=1e-6)
    # weighted x0 error == v error (the reference's loss weighting)
    xt = tt.add_noise(ac, x0, eps, t)
    f = jnp.asarray(rng.standard_normal(x0.shape), jnp.float32)
    d = tt.v_to_x0(ac, xt, f, t)
    w = tt.loss_weight(ac, t).reshape(-1, 1, 1, 1, 1)
    v = tt.velocity_target(ac, x0, eps, t)
    np.testing.assert_allclose(np.asarray(w * (d - x0) ** 2), np.asarray((v - f) ** 2), rtol=2e-3, atol=2e-4)


def test_config_roundtrip_and_errors():
    d = COGVIDEOX_5B.to_diffusers_config()
    assert d["_class_name"] == "CogVideoXDPMScheduler"
    assert SchedulerConfig.from_diffusers_config(d | {"unknown_key": 1}) == COGVIDEOX_5B
    with pytest.raises(ValueError, match="unsupported scheduler"):
        SchedulerConfig.from_diffusers_config({"_class_name": "EulerDiscreteScheduler"})


@pytest.mark.parametrize("config", [COGVIDEOX_2B, COGVIDEOX_5B], ids=["ddim-2b", "dpm-5b"])
def test_bfloat16_latents_follow_torch_promotion(config, monkeypatch):
    """The pipeline keeps latents in the transformer dtype (``latents.to(prompt_embeds.dtype)``) and
    passes a float32 model output: torch then multiplies bf16 latents by bf16-rounded coefficients and
    sums in float32. Check our steps do the same (before and after the cast back to bf16)."""
    steps, rng = 7, np.random.default_rng(5)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    noises = rng.standard_normal((steps,) + SHAPE).astype(np.float32)
    cls = diffusers.CogVideoXDDIMScheduler if config.kind == "ddim" else diffusers.CogVideoXDPMScheduler
    ref_sched = cls.from_config(config.to_diffusers_config())
    ref_sched.set_timesteps(steps)
    cur = {"i": 0}
    monkeypatch.setattr(scheduling_dpm_cogvideox, "randn_tensor", lambda shape, **kw: torch.from_numpy(
        noises[cur["i"]]).permute(0, 4, 1, 2, 3).to(kw["dtype"]))
    sched = make_sampling_schedule(config, steps)
    ref_x = torch.from_numpy(x).permute(0, 4, 1, 2, 3).to(torch.bfloat16)
    ours, state, old = jnp.asarray(x).astype(jnp.bfloat16), init_state(jnp.asarray(x)), None
    ts = ref_sched.timesteps
    for i, t in enumerate(ts):
        cur["i"] = i
        np.testing.assert_array_equal(np.asarray(ours.astype(jnp.float32)),
                                      ref_x.float().permute(0, 2, 3, 4, 1).numpy(), err_msg=f"step {i}")
        v_np = _model(np.asarray(ours.astype(jnp.float32)), int(t))
        v = torch.from_numpy(v_np).permute(0, 4, 1, 2, 3)
        if config.kind == "ddim":
            ref_prev = ref_sched.step(v, t, ref_x, return_dict=False)[0]
        else:
            ref_prev, old = ref_sched.step(v, old, t, ts[i - 1] if i > 0 else None, ref_x, return_dict=False)
        prev, state = scheduler_step(sched, state, i, jnp.asarray(v_np), ours,
                                     jnp.asarray(noises[i]).astype(jnp.bfloat16))
        assert prev.dtype == jnp.float32 and ref_prev.dtype == torch.float32
        np.testing.assert_allclose(np.asarray(prev), ref_prev.permute(0, 2, 3, 4, 1).numpy(), atol=1e-5, rtol=0)
        ref_x, ours = ref_prev.to(torch.bfloat16), prev.astype(jnp.bfloat16)


@pytest.mark.parametrize("config", [COGVIDEOX_2B, COGVIDEOX_5B], ids=["ddim-2b", "dpm-5b"])
def test_compiled_loop_matches_diffusers(config, monkeypatch):
    """The whole 50-step loop compiled once (``lax.scan`` under ``jit``) against diffusers' step loop."""
    steps, rng = 50, np.random.default_rng(6)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    noises = rng.standard_normal((steps,) + SHAPE).astype(np.float32)
    _, ref, _ = _reference(config, steps, x, noises, monkeypatch)
    w = jnp.asarray(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32) * 0.5)

    @jax.jit
    def loop(sched, x, noises):
        def body(carry, i):
            x, s = carry
            t = sched.timesteps[i].astype(jnp.float32)
            v = jnp.tanh(x @ w + t / 1000.0)
            x, s = scheduler_step(sched, s, i, v, x, noises[i])
            return (x, s), x
        return jax.lax.scan(body, (x, init_state(x)), jnp.arange(sched.num_steps))[1]

    traj = loop(make_sampling_schedule(config, steps), jnp.asarray(x), jnp.asarray(noises))
    np.testing.assert_allclose(np.asarray(traj), np.stack(ref), atol=1e-5, rtol=0)


@pytest.mark.parametrize("config", [COGVIDEOX_2B, COGVIDEOX_5B], ids=["ddim-2b", "dpm-5b"])
@pytest.mark.parametrize("steps", [1, 3])
def test_step_by_step_parity_few_steps(config, steps, monkeypatch):
    """One step (straight to the final ᾱ = 1: infinite λ on the host) and three (999 → 666 → 333 → 0)."""
    _check_parity(config, steps, monkeypatch)
