"""Parity of the JAX VAE with diffusers ``AutoencoderKLCogVideoX`` (random-init tiny configs)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from cogvideox_jax.convert import load_diffusers  # noqa: E402
from cogvideox_jax.models.vae.frame_batching import chunk_plan  # noqa: E402
from cogvideox_jax_oracles.vae_oracle import from_torch, make_torch_vae, rel_err, to_torch  # noqa: E402

TOL = 1e-4
H, W = 16, 24


@pytest.fixture(scope="module", params=["a", "b"])
def pair(request, tmp_path_factory):
    model = make_torch_vae(request.param)
    folder = tmp_path_factory.mktemp(f"vae_{request.param}")
    model.save_pretrained(folder)
    vae, params = load_diffusers(str(folder))
    return request.param, model, vae, jax.tree.map(jnp.asarray, params)


@functools.lru_cache(maxsize=None)
def _jitted(vae, method, frame_batching="diffusers", chunk_frames=None):
    # backend optimisation level 0: the same numerics for these checks, much quicker XLA:CPU compiles
    return jax.jit(
        lambda p, x: vae.apply({"params": p}, x, method=method, frame_batching=frame_batching, chunk_frames=chunk_frames),
        compiler_options={"xla_backend_optimization_level": 0},
    )


def test_chunk_plan_matches_reference_loop():
    for chunk in (2, 4, 8):
        for t in range(1, 60):
            nb = max(t // chunk, 1)
            rem = t % chunk
            ref = [(chunk * i + (0 if i == 0 else rem), min(chunk * (i + 1) + rem, t)) for i in range(nb)]
            first, n_rest = chunk_plan(t, chunk)
            ours = [(0, first)] + [(first + k * chunk, first + (k + 1) * chunk) for k in range(n_rest)]
            assert ours == ref, (t, chunk)


def _frame_counts(name):
    return (1, 5, 9, 13, 17) if name == "a" else (1, 17)


def test_encode_matches_diffusers_frame_batching(pair):
    name, model, vae, params = pair
    rng = np.random.default_rng(1)
    for t in _frame_counts(name):
        x = rng.uniform(-1, 1, (2, t, H, W, 3)).astype(np.float32)
        with torch.no_grad():
            dist = model.encode(to_torch(x)).latent_dist
        post = _jitted(vae, "encode")(params, jnp.asarray(x))
        ref_mean, ref_logvar = from_torch(dist.mean), from_torch(dist.logvar)
        assert post.mean.shape == ref_mean.shape == (2, (t - 1) // 4 + 1, *post.mean.shape[2:])
        assert rel_err(post.mean, ref_mean) <= TOL, t
        assert rel_err(post.logvar, ref_logvar) <= TOL, t


def test_decode_matches_diffusers_frame_batching(pair):
    name, model, vae, params = pair
    rng = np.random.default_rng(2)
    s = 2 ** (len(vae.config.block_out_channels) - 1)
    counts = (1, 2, 3, 4, 5) if name == "a" else (1, 5)
    for t in counts:
        z = rng.standard_normal((2, t, H // s, W // s, vae.config.latent_channels)).astype(np.float32)
        with torch.no_grad():
            ref = from_torch(model.decode(to_torch(z)).sample)
        out = _jitted(vae, "decode")(params, jnp.asarray(z))
        assert out.shape == ref.shape, t
        assert rel_err(out, ref) <= TOL, t


def test_custom_chunk_sizes_match_diffusers(pair):
    """Smaller chunks than the defaults: several scanned chunks, remainders in the first chunk."""
    name, model, vae, params = pair
    if name != "a":
        pytest.skip("one config suffices")
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (1, 17, H, W, 3)).astype(np.float32)
    z = rng.standard_normal((1, 7, H // 4, W // 4, 4)).astype(np.float32)
    model.num_sample_frames_batch_size, model.num_latent_frames_batch_size = 4, 3
    try:
        with torch.no_grad():
            ref_mean = from_torch(model.encode(to_torch(x)).latent_dist.mean)
            ref_dec = from_torch(model.decode(to_torch(z)).sample)
    finally:
        model.num_sample_frames_batch_size, model.num_latent_frames_batch_size = 8, 2
    post = _jitted(vae, "encode", chunk_frames=4)(params, jnp.asarray(x))  # 5 + 4 + 4 + 4
    out = _jitted(vae, "decode", chunk_frames=3)(params, jnp.asarray(z))  # 4 + 3
    assert rel_err(post.mean, ref_mean) <= TOL
    assert rel_err(out, ref_dec) <= TOL


def test_whole_mode_matches_one_pass_reference(pair):
    """"whole" = diffusers' encoder/decoder called once on the clip (GroupNorm over all frames)."""
    name, model, vae, params = pair
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (2, 17, H, W, 3)).astype(np.float32)
    s = 2 ** (len(vae.config.block_out_channels) - 1)
    z = rng.standard_normal((2, 5, H // s, W // s, vae.config.latent_channels)).astype(np.float32)
    with torch.no_grad():
        moments = from_torch(model.encoder(to_torch(x))[0])
        ref_dec = from_torch(model.decoder(to_torch(z))[0])
        chunked_dec = from_torch(model.decode(to_torch(z)).sample)
    c = vae.config.latent_channels
    post = _jitted(vae, "encode", "whole")(params, jnp.asarray(x))
    out = _jitted(vae, "decode", "whole")(params, jnp.asarray(z))
    assert rel_err(post.mean, moments[..., :c]) <= TOL
    assert rel_err(post.logvar, np.clip(moments[..., c:], -30, 20)) <= TOL
    assert rel_err(out, ref_dec) <= TOL
    # and the two modes really differ (per-chunk vs whole-clip GroupNorm statistics)
    assert rel_err(out, chunked_dec) > 1e-3
