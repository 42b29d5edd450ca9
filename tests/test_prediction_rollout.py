"""train/prediction_rollout.py: inputs built from the model's own x0 prediction, targets from the clip."""
import jax
import jax.numpy as jnp
import numpy as np

from cogvideox_jax.train.diffusion_loss import add_noise, training_alphas_cumprod
from cogvideox_jax.train.prediction_rollout import rolled_inputs, rollout_draws, rollout_inputs

AC = jnp.asarray(training_alphas_cumprod(), jnp.float32)


def _batch(bsz=16):
    k1, k2 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k1, (bsz, 2, 4, 4, 3))
    noise = jax.random.normal(k2, x0.shape)
    t = jnp.linspace(0, 999, bsz).astype(jnp.int32)
    return x0, noise, t


def _oracle(x0):
    """The perfect denoiser for this batch: the v that maps x_s back to x0 exactly."""
    def predict_v(x_s, s):
        a = AC[s].reshape(-1, 1, 1, 1, 1)
        return (jnp.sqrt(a) * x_s - x0) / jnp.sqrt(1.0 - a)
    return predict_v


def test_target_is_the_clean_clip_for_any_prediction():
    """x_in = √ᾱ_t·x0 + √(1−ᾱ_t)·noise_target on every row, whatever the network predicted."""
    x0, noise, t = _batch()
    x_in, target, used = rollout_inputs(lambda x, s: 0.7 * x + 0.1, x0, noise, t, AC, jax.random.key(1),
                                        fraction=1.0, max_jump=300, min_t=100)
    np.testing.assert_allclose(x_in, add_noise(x0, target, AC[t]), atol=2e-5)
    used = np.asarray(used)
    assert used.tolist() == (np.asarray(t) >= 100).tolist()
    # rolled rows differ from the plain input, the others are exactly the plain input and noise
    plain = add_noise(x0, noise, AC[t])
    assert all(not np.allclose(x_in[i], plain[i]) for i in np.flatnonzero(used))
    np.testing.assert_array_equal(x_in[~used], plain[~used])
    np.testing.assert_array_equal(target[~used], noise[~used])


def test_a_perfect_denoiser_gives_freshly_noised_clean_latents():
    """With the oracle, x̂0 = x0: a rolled row is x0 noised with new Gaussian noise, and that noise is
    the target (independent of the original noise)."""
    x0, noise, t = _batch(64)
    x_in, target, used = rollout_inputs(_oracle(x0), x0, noise, t, AC, jax.random.key(2), fraction=1.0,
                                        max_jump=200, min_t=0)
    assert bool(jnp.all(used))
    np.testing.assert_allclose(x_in, add_noise(x0, target, AC[t]), atol=2e-5)
    tgt = np.asarray(target)
    assert abs(tgt.std() - 1.0) < 0.05 and abs(tgt.mean()) < 0.05
    assert abs(np.corrcoef(tgt.ravel(), np.asarray(noise).ravel())[0, 1]) < 0.05


def test_jump_goes_up_the_schedule_and_is_capped():
    x0, noise, t = _batch()
    seen = {}

    def predict_v(x_s, s):
        seen["s"] = np.asarray(s)
        return jnp.zeros_like(x_s)

    rollout_inputs(predict_v, x0, noise, t, AC, jax.random.key(3), fraction=1.0, max_jump=50, min_t=0)
    s, tt = seen["s"], np.asarray(t)
    assert np.all(s > np.minimum(tt, 998)) and np.all(s <= np.minimum(tt + 50, 999))
    assert s[-1] == 999


def test_fraction_and_gates():
    x0, noise, t = _batch(256)
    t = jnp.full((256,), 500, jnp.int32)
    f = lambda x, s: jnp.zeros_like(x)
    _, _, used = rollout_inputs(f, x0, noise, t, AC, jax.random.key(4), fraction=0.25, max_jump=10)
    assert 0.15 < float(jnp.mean(used)) < 0.35
    for kw in ({"fraction": 0.0}, {"fraction": 1.0, "min_t": 501}):
        x_in, target, used = rollout_inputs(f, x0, noise, t, AC, jax.random.key(4), max_jump=10, **kw)
        assert not bool(jnp.any(used))
        np.testing.assert_array_equal(x_in, add_noise(x0, noise, AC[t]))
        np.testing.assert_array_equal(target, noise)


def test_rows_split_after_the_draws_get_the_same_inputs():
    """rollout_draws once for the batch, rolled_inputs per half: each row gets what the whole batch
    gives it (how the train step runs the rollout per gradient-accumulation micro-batch)."""
    x0, noise, t = _batch()
    draws = rollout_draws(jax.random.key(5), t, x0.shape, AC.shape[0], fraction=0.5, max_jump=300, min_t=100)
    f = lambda x, s: 0.5 * x - 0.2 * AC[s].reshape(-1, 1, 1, 1, 1)
    whole = rolled_inputs(f, x0, noise, t, AC, draws)
    np.testing.assert_array_equal(whole[2], draws["used"])
    assert 0 < int(jnp.sum(draws["used"])) < 16
    for rows in (slice(0, 8), slice(8, 16)):
        part = rolled_inputs(f, x0[rows], noise[rows], t[rows], AC, jax.tree_util.tree_map(lambda a: a[rows], draws))
        for w, p in zip(whole, part):
            np.testing.assert_allclose(p, w[rows], rtol=1e-6, atol=1e-6)
    # the one-call form is the same two steps
    same = rollout_inputs(f, x0, noise, t, AC, jax.random.key(5), fraction=0.5, max_jump=300, min_t=100)
    for w, s in zip(whole, same):
        np.testing.assert_array_equal(s, w)
