"""Per-step scheduler coefficients, precomputed on the host in float64.

The reference computes each step's scalar coefficients from float64 ᾱ and then multiplies float32
latents by them (each coefficient rounded to float32). Precomputing the same float64 scalars here
and rounding them once gives the same float32 arithmetic inside the compiled loop, where the
steps are pure functions of ``(schedule, i, ...)`` (see ``ddim_cogvideox.py`` / ``dpm_cogvideox.py``).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from configs.scheduler import SchedulerConfig
from cogvideox_jax.diffusion.noise_schedule import alphas_cumprod, final_alpha_cumprod
from cogvideox_jax.diffusion.timesteps import inference_timesteps, previous_timesteps


@struct.dataclass
class SamplingSchedule:
    """Everything a sampling loop needs, as float32/int32 arrays of length N (a jit-able pytree)."""

    timesteps: jnp.ndarray      # (N,) int32, descending
    x0_from_x: jnp.ndarray      # sqrt(ᾱ_t) (v-pred: coefficient of x; eps-pred: the divisor)
    x0_from_model: jnp.ndarray  # sqrt(1-ᾱ_t): coefficient of the model output (subtracted)
    coef_x: jnp.ndarray         # DDIM: a_t ; DPM: mult1
    coef_x0: jnp.ndarray        # DDIM: b_t ; DPM: mult2 (subtracted)
    coef_noise: jnp.ndarray     # DPM: sqrt(1-ᾱ_prev) sqrt(1-e^{-2h}); DDIM: 0
    coef_d_x0: jnp.ndarray      # DPM-2M: 1 + 1/(2r)
    coef_d_old: jnp.ndarray     # DPM-2M: 1/(2r)
    second_order: jnp.ndarray   # DPM: use the 2M update at this step (bool)
    prediction_type: str = struct.field(pytree_node=False, default="v_prediction")
    kind: str = struct.field(pytree_node=False, default="ddim")

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])


def _x0_coefficients(prediction_type: str, a_t: float) -> tuple[float, float]:
    if prediction_type == "v_prediction":
        return a_t**0.5, (1 - a_t) ** 0.5
    if prediction_type == "epsilon":  # x0 = (x - sqrt(1-a) eps) / sqrt(a), divided as the reference
        return a_t**0.5, (1 - a_t) ** 0.5
    return 0.0, -1.0  # "sample": x0 = model_output


def make_sampling_schedule(config: SchedulerConfig, num_inference_steps: int) -> SamplingSchedule:
    ac = alphas_cumprod(config)
    final = final_alpha_cumprod(config, ac)
    ts = inference_timesteps(config, num_inference_steps)
    prev = previous_timesteps(config, ts)
    rows = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, (t, p) in enumerate(zip(ts, prev)):
            a_t = float(ac[t])
            a_p = float(ac[p]) if p >= 0 else final
            fx, fm = _x0_coefficients(config.prediction_type, a_t)
            if config.kind == "ddim":
                c_x = ((1 - a_p) / (1 - a_t)) ** 0.5
                c_x0 = a_p**0.5 - a_t**0.5 * c_x
                rows.append((fx, fm, c_x, c_x0, 0.0, 0.0, 0.0, False))
                continue
            lam = np.log(np.sqrt(np.float64(a_t) / (1 - a_t)))
            lam_next = np.log(np.sqrt(np.float64(a_p) / (1 - a_p)))
            h = lam_next - lam
            m1 = np.sqrt((1 - a_p) / (1 - a_t)) * np.exp(-h)
            m2 = np.expm1(-2 * h) * np.sqrt(a_p)
            m_noise = np.sqrt(1 - a_p) * np.sqrt(1 - np.exp(-2 * h))
            m3 = m4 = 0.0
            second = bool(i > 0 and p >= 0)
            if second:  # (first-order steps keep 0 here, not the reference's unused inf/nan)
                a_b = float(ac[ts[i - 1]])
                h_last = lam - np.log(np.sqrt(np.float64(a_b) / (1 - a_b)))
                r = h_last / h
                m3, m4 = 1 + 1 / (2 * r), 1 / (2 * r)
            rows.append((fx, fm, m1, m2, m_noise, m3, m4, second))
    cols = list(zip(*rows))
    f32 = lambda c: jnp.asarray(np.asarray(c, np.float64).astype(np.float32))  # noqa: E731
    return SamplingSchedule(
        timesteps=jnp.asarray(ts.astype(np.int32)),
        x0_from_x=f32(cols[0]), x0_from_model=f32(cols[1]), coef_x=f32(cols[2]), coef_x0=f32(cols[3]),
        coef_noise=f32(cols[4]), coef_d_x0=f32(cols[5]), coef_d_old=f32(cols[6]),
        second_order=jnp.asarray(np.asarray(cols[7], bool)),
        prediction_type=config.prediction_type, kind=config.kind,
    )


def scale(coef, x):
    """``coef * x`` in ``x``'s dtype, as torch's ``0-dim float64 tensor * tensor`` (the scalar is cast
    to the tensor's dtype): a bfloat16 sample gives a bfloat16 product, float32 stays float32. Mixed
    float32/bfloat16 sums then promote to float32 in both frameworks."""
    return jnp.asarray(coef).astype(x.dtype) * x


def predict_x0(schedule: SamplingSchedule, i, model_output, sample):
    """x0 from the model output at step ``i`` (v-, epsilon- or sample-prediction)."""
    if schedule.prediction_type == "sample":
        return model_output
    if schedule.prediction_type == "epsilon":
        num = sample - scale(schedule.x0_from_model[i], model_output)
        return num / schedule.x0_from_x[i].astype(num.dtype)
    return scale(schedule.x0_from_x[i], sample) - scale(schedule.x0_from_model[i], model_output)
