"""Scheduler config loading, the ᾱ table, the scheduler no-ops, and classifier-free guidance vs the reference."""
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from configs.scheduler import COGVIDEOX_1_5, COGVIDEOX_2B, COGVIDEOX_5B, PRESETS, SchedulerConfig
from cogvideox_jax.diffusion import guidance as g
from cogvideox_jax.diffusion import training_targets as tt
from cogvideox_jax.diffusion.noise_schedule import alphas_cumprod, final_alpha_cumprod
from cogvideox_jax.diffusion.sampler import INIT_NOISE_SIGMA, scale_model_input

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


def _ref(cfg):
    cls = diffusers.CogVideoXDDIMScheduler if cfg.kind == "ddim" else diffusers.CogVideoXDPMScheduler
    return cls.from_config(cfg.to_diffusers_config())


@pytest.mark.parametrize("cfg", [
    COGVIDEOX_2B, COGVIDEOX_5B,
    SchedulerConfig(rescale_betas_zero_snr=False, set_alpha_to_one=False),
    SchedulerConfig(kind="dpm", beta_schedule="linear", snr_shift_scale=2.0),
], ids=["2b", "5b", "no-rescale", "linear"])
def test_alphas_cumprod_equal_reference(cfg):
    ref = _ref(cfg)
    rtol, atol = (1e-12, 0) if cfg.beta_schedule == "scaled_linear" else (2e-6, 2e-7)  # see noise_schedule.betas
    np.testing.assert_allclose(alphas_cumprod(cfg), ref.alphas_cumprod.double().numpy(), rtol=rtol, atol=atol)
    assert final_alpha_cumprod(cfg, alphas_cumprod(cfg)) == pytest.approx(float(ref.final_alpha_cumprod), abs=1e-12)
    assert INIT_NOISE_SIGMA == ref.init_noise_sigma
    if cfg.rescale_betas_zero_snr:
        assert alphas_cumprod(cfg)[-1] == pytest.approx(0.0, abs=1e-12)  # zero terminal SNR


def test_from_pretrained_reads_saved_reference_config(tmp_path):
    ref = diffusers.CogVideoXDPMScheduler(
        beta_schedule="scaled_linear", prediction_type="v_prediction", rescale_betas_zero_snr=True,
        snr_shift_scale=1.0, timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False)
    ref.save_pretrained(tmp_path / "scheduler")
    raw = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert "_diffusers_version" in raw and "clip_sample_range" in raw  # keys we must tolerate
    assert SchedulerConfig.from_pretrained(str(tmp_path / "scheduler")) == COGVIDEOX_5B
    assert SchedulerConfig.from_pretrained(str(tmp_path)) == COGVIDEOX_5B  # pipeline root
    assert PRESETS["1.5"] == COGVIDEOX_1_5 == COGVIDEOX_5B and PRESETS["2b"].snr_shift_scale == 3.0
    with pytest.raises(FileNotFoundError):
        SchedulerConfig.from_pretrained(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="trained_betas"):
        SchedulerConfig.from_diffusers_config(raw | {"trained_betas": [0.1] * 1000})


def test_scale_model_input_is_identity():
    x = jnp.arange(6.0).reshape(1, 2, 3)
    ref = diffusers.CogVideoXDDIMScheduler().scale_model_input(torch.from_numpy(np.array(x)), 999)
    np.testing.assert_array_equal(np.asarray(scale_model_input(x, 999)), ref.numpy())


def test_training_helpers_accept_config_and_convert_v():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((3, 2, 2, 2, 4)).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    t = np.array([1, 500, 998])
    xt = tt.add_noise(COGVIDEOX_2B, x0, eps, t)
    v = tt.velocity_target(COGVIDEOX_2B, x0, eps, t)
    np.testing.assert_allclose(np.asarray(tt.v_to_x0(COGVIDEOX_2B, xt, v, t)), x0, atol=2e-5)
    np.testing.assert_allclose(np.asarray(tt.v_to_eps(COGVIDEOX_2B, xt, v, t)), eps, atol=2e-5)
    e = tt.v_to_eps(COGVIDEOX_2B, xt, v, t)
    np.testing.assert_allclose(np.asarray(tt.eps_to_x0(COGVIDEOX_2B, xt, e, t)), x0, atol=1e-3)


def _pipeline_transcription(noise_pred, timesteps, guidance_scale, use_dynamic_cfg, num_inference_steps):
    """The lines of diffusers ``CogVideoXPipeline.__call__`` (guidance part), transcribed verbatim in torch."""
    out = []
    _guidance_scale = guidance_scale
    for t in timesteps:
        if use_dynamic_cfg:
            _guidance_scale = 1 + guidance_scale * (
                (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0)) / 2
            )
        noise_pred_uncond, noise_pred_text = noise_pred.float().chunk(2)
        out.append((_guidance_scale, noise_pred_uncond + _guidance_scale * (noise_pred_text - noise_pred_uncond)))
    return out


@pytest.mark.parametrize("steps", [50, 7])
@pytest.mark.parametrize("dynamic", [False, True])
def test_guidance_matches_pipeline_transcription(steps, dynamic):
    ref_s = diffusers.CogVideoXDDIMScheduler.from_config(COGVIDEOX_2B.to_diffusers_config())
    ref_s.set_timesteps(steps)
    pred = np.random.default_rng(1).standard_normal((2, 3, 2, 2, 4)).astype(np.float32)
    ref = _pipeline_transcription(torch.from_numpy(pred), ref_s.timesteps, 6.0, dynamic, steps)
    table = g.guidance_scale_table(np.asarray(ref_s.timesteps), 6.0, dynamic)
    assert table.dtype == np.float32 and table.shape == (steps,)
    for i, (w, guided) in enumerate(ref):
        assert table[i] == np.float32(w)
        np.testing.assert_allclose(np.asarray(g.classifier_free_guidance(*jnp.split(jnp.asarray(pred), 2), table[i])), guided.numpy(),
                                   rtol=0, atol=1e-6)
    if dynamic:  # the timestep-value quirk: scales are not a monotone ramp and stay in [1, 1 + w]
        assert np.all((table >= 1) & (table <= 7)) and not np.all(np.diff(table) >= 0)
        assert g.dynamic_guidance_scale(999, 50, 6.0) != g.dynamic_guidance_scale(0, 50, 6.0)
    assert g.uses_guidance(6.0) and not g.uses_guidance(1.0)


def test_prev_timestep_quirk_when_steps_do_not_divide_1000():
    """The reference steps to ``t - 1000 // N``, not to the next listed timestep (kept for parity)."""
    from cogvideox_jax.diffusion.timesteps import inference_timesteps, previous_timesteps
    ts = inference_timesteps(COGVIDEOX_5B, 7)
    np.testing.assert_array_equal(ts, [999, 856, 713, 570, 428, 285, 142])
    np.testing.assert_array_equal(previous_timesteps(COGVIDEOX_5B, ts), [857, 714, 571, 428, 286, 143, 0])
