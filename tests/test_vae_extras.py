"""VAE: config, init path, posterior, bf16 path, converter errors, orbax round trip, tiling."""
from __future__ import annotations

import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from configs.vae import COGVIDEOX_1_5, COGVIDEOX_2B, COGVIDEOX_5B, VAEConfig, get_preset  # noqa: E402
from cogvideox_jax.convert import CheckpointFormatError, WeightMismatchError, load_diffusers  # noqa: E402
from cogvideox_jax.convert.params_checkpoint import restore_params, save_params  # noqa: E402
from cogvideox_jax.models.vae import DiagonalGaussian, TilingConfig  # noqa: E402
from cogvideox_jax_oracles.vae_oracle import from_torch, make_torch_vae, rel_err, to_torch  # noqa: E402

FAST = {"xla_backend_optimization_level": 0}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = make_torch_vae("a")
    folder = tmp_path_factory.mktemp("vae_a")
    model.save_pretrained(folder)
    return model, str(folder)


def test_config_presets_and_unknown_keys():
    assert COGVIDEOX_2B.scaling_factor == pytest.approx(1.15258426)
    assert COGVIDEOX_5B.scaling_factor == 0.7 and not COGVIDEOX_5B.invert_scale_latents
    assert COGVIDEOX_1_5.scaling_factor == 0.7 and COGVIDEOX_1_5.invert_scale_latents
    assert get_preset("CogVideoX-5b-I2V").scaling_factor == 0.7
    for cfg in (COGVIDEOX_2B, COGVIDEOX_1_5):
        assert cfg.block_out_channels == (128, 256, 256, 512) and cfg.layers_per_block == 3
        assert cfg.latent_channels == 16 and cfg.norm_num_groups == 32
    cfg = VAEConfig.from_diffusers_config(
        {"_class_name": "AutoencoderKLCogVideoX", "_diffusers_version": "0.30", "block_out_channels": [8, 16],
         "down_block_types": ["a", "b"], "up_block_types": ["a", "b"], "norm_num_groups": 4, "brand_new_key": 1,
         "scaling_factor": 0.7}
    )
    assert cfg.block_out_channels == (8, 16) and cfg.scaling_factor == 0.7
    with pytest.raises(ValueError):
        VAEConfig(block_out_channels=(10, 20), norm_num_groups=4, down_block_types=("a",) * 2, up_block_types=("a",) * 2)


def test_loaded_module_config_and_random_init_path(saved):
    _, folder = saved
    vae, params = load_diffusers(folder)
    assert vae.config.scaling_factor == pytest.approx(1.15258426)
    video = jnp.zeros((1, 9, 16, 24, 3))
    variables = jax.jit(vae.init, compiler_options=FAST)(jax.random.PRNGKey(0), video[:, :1])
    boxed = variables["params"]
    init_params = nn.unbox(boxed)
    chex.assert_trees_all_equal_shapes(init_params, params)
    specs = nn.get_partition_spec(boxed)
    assert tuple(specs["encoder"]["conv_in"]["conv"]["kernel"]) == ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out")
    out = jax.jit(lambda p, v: vae.apply({"params": p}, v), compiler_options=FAST)(init_params, video + 0.1)
    chex.assert_shape(out, (1, 9, 16, 24, 3))
    assert np.isfinite(np.asarray(out)).all()


def test_posterior_is_a_pytree_with_sample_and_mode():
    mean = jnp.arange(12.0).reshape(1, 1, 2, 2, 3)
    post = DiagonalGaussian.from_moments(jnp.concatenate([mean, jnp.full_like(mean, 50.0)], axis=-1))
    assert float(post.logvar.max()) == 20.0  # clamped like diffusers
    leaves = jax.tree.leaves(post)
    assert len(leaves) == 2
    post = jax.jit(lambda p: p)(post)
    np.testing.assert_array_equal(post.mode(), mean)
    s1, s2 = post.sample(jax.random.PRNGKey(1)), post.sample(jax.random.PRNGKey(1))
    np.testing.assert_array_equal(s1, s2)
    std = np.exp(10.0)
    noise = (np.asarray(s1) - np.asarray(mean)) / std
    assert 0.1 < np.abs(noise).mean() < 3.0


def test_bf16_compute_path_close_to_fp32(saved):
    _, folder = saved
    vae32, p32 = load_diffusers(folder)
    vae16, p16 = load_diffusers(folder, dtype=jnp.bfloat16)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (1, 9, 16, 24, 3)).astype(np.float32))
    z = jnp.asarray(rng.standard_normal((1, 3, 4, 6, 4)).astype(np.float32))
    enc = lambda m: jax.jit(lambda p, v: m.apply({"params": p}, v, method="encode").mean, compiler_options=FAST)  # noqa: E731
    dec = lambda m: jax.jit(lambda p, v: m.apply({"params": p}, v, method="decode"), compiler_options=FAST)  # noqa: E731
    m32, m16 = enc(vae32)(p32, x), enc(vae16)(p16, x)
    d32, d16 = dec(vae32)(p32, z), dec(vae16)(p16, z)
    assert m16.dtype == jnp.float32  # outputs are returned in float32
    e_enc, e_dec = rel_err(m16, m32), rel_err(d16, d32)
    assert 0 < e_enc <= 3e-2 and 0 < e_dec <= 3e-2, (e_enc, e_dec)


def test_param_dtype_bf16(saved):
    _, folder = saved
    _, params = load_diffusers(folder, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}


@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.bfloat16])
def test_loaded_params_are_adopted_by_xla_without_a_copy(saved, param_dtype):
    """Every loaded weight is a C-contiguous, 64-byte-aligned host array (kernels transposed into
    their final layout), which XLA:CPU takes as a device buffer without copying it."""
    model, folder = saved
    _, params = load_diffusers(folder, param_dtype=param_dtype)
    leaves = jax.tree.leaves(params)
    assert all(isinstance(x, np.ndarray) and x.flags.c_contiguous and x.ctypes.data % 64 == 0 for x in leaves)
    assert {x.dtype for x in leaves} == {jnp.dtype(param_dtype)}
    kernel = params["decoder"]["conv_in"]["conv"]["kernel"]
    ref = model.decoder.conv_in.conv.weight.detach().numpy().transpose(2, 3, 4, 1, 0)
    np.testing.assert_array_equal(kernel, ref.astype(param_dtype))
    if jax.devices()[0].platform == "cpu":
        assert jax.device_put(kernel).unsafe_buffer_pointer() == kernel.ctypes.data


def test_corrupt_weights_file_is_a_format_error(saved, tmp_path):
    _, folder = saved
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(open(os.path.join(folder, "config.json")).read())
    (bad / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00garbage" * 16)
    with pytest.raises(CheckpointFormatError, match="corrupt|safetensors"):
        load_diffusers(str(bad))


def test_missing_tensor_and_wrong_config_are_weight_mismatches(saved, tmp_path):
    from safetensors.numpy import load_file, save_file

    _, folder = saved
    tensors = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    config = json.load(open(os.path.join(folder, "config.json")))
    # a tensor dropped
    d1 = tmp_path / "missing"
    d1.mkdir()
    dropped = "decoder.up_blocks.1.resnets.0.norm1.conv_y.conv.weight"
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(d1 / "diffusion_pytorch_model.safetensors"))
    json.dump(config, open(d1 / "config.json", "w"))
    with pytest.raises(WeightMismatchError, match="missing keys") as e:
        load_diffusers(str(d1))
    assert e.value.missing == ["decoder/up_blocks_1/resnets_0/norm1/conv_y/conv/kernel"]
    # a config that does not fit the weights (latent channels)
    d2 = tmp_path / "shape"
    d2.mkdir()
    save_file(tensors, str(d2 / "diffusion_pytorch_model.safetensors"))
    json.dump(dict(config, latent_channels=8), open(d2 / "config.json", "w"))
    with pytest.raises(WeightMismatchError, match="shape mismatches") as e:
        load_diffusers(str(d2))
    assert any(m.startswith("decoder/conv_in/conv/kernel") for m in e.value.shape_mismatches)
    # an extra tensor
    d3 = tmp_path / "extra"
    d3.mkdir()
    save_file(dict(tensors, **{"encoder.extra.weight": np.zeros((2, 2), np.float32)}),
              str(d3 / "diffusion_pytorch_model.safetensors"))
    json.dump(config, open(d3 / "config.json", "w"))
    with pytest.raises(WeightMismatchError, match="unexpected keys"):
        load_diffusers(str(d3))


def test_sharded_checkpoint_loads(saved, tmp_path):
    model, folder = saved
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "diffusion_pytorch_model.safetensors.index.json").exists()
    _, p_sharded = load_diffusers(str(tmp_path))
    _, p_single = load_diffusers(folder)
    chex.assert_trees_all_equal(p_sharded, p_single)


def test_orbax_params_round_trip(saved, tmp_path):
    _, folder = saved
    _, params = load_diffusers(folder)
    params = jax.tree.map(jnp.asarray, params)
    save_params(str(tmp_path / "ckpt"), params)
    restored = restore_params(str(tmp_path / "ckpt"), target=params)
    chex.assert_trees_all_equal(restored, params)


def test_tiling_matches_diffusers_tiled_and_documents_error_vs_untiled(saved):
    """Tiles of 48 x 40 px (latent 12 x 10) on an 80 x 72 clip: 2 x 3 tiles with blended seams."""
    model, folder = saved
    vae, params = load_diffusers(folder)
    tiling = TilingConfig(tile_sample_min_height=48, tile_sample_min_width=40)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 1, 80, 72, 3)).astype(np.float32)
    z = rng.standard_normal((1, 1, 20, 18, 4)).astype(np.float32)
    model.enable_tiling(tile_sample_min_height=48, tile_sample_min_width=40)
    try:
        with torch.no_grad():
            ref_mean = from_torch(model.encode(to_torch(x)).latent_dist.mean)
            ref_dec = from_torch(model.decode(to_torch(z)).sample)
    finally:
        model.disable_tiling()
    run = lambda method, tile: jax.jit(  # noqa: E731
        lambda p, v: vae.apply({"params": p}, v, method=method, tiling=tile), compiler_options=FAST
    )
    mean = run("encode", tiling)(params, x).mean
    dec = run("decode", tiling)(params, z)
    assert mean.shape == ref_mean.shape == (1, 1, 20, 18, 4)
    assert dec.shape == ref_dec.shape == (1, 1, 80, 72, 3)
    assert rel_err(mean, ref_mean) <= 1e-4
    assert rel_err(dec, ref_dec) <= 1e-4
    # Error of tiling vs the untiled result (random-init weights, so large; a trained VAE is far
    # smoother): documented, and it must be non-zero (tiling really happened) yet bounded.
    untiled_mean = run("encode", False)(params, x).mean
    untiled_dec = run("decode", False)(params, z)
    e_enc, e_dec = rel_err(mean, untiled_mean), rel_err(dec, untiled_dec)
    print(f"tiled vs untiled: encode {e_enc:.3g}, decode {e_dec:.3g} (max|diff| / max|untiled|)")
    assert 1e-4 < e_enc < 2.0 and 1e-4 < e_dec < 2.0


def test_decoder_only_and_encoder_only_loads(saved):
    """``parts=`` loads one half of the VAE (the same arrays as the full load), and that half's
    method runs on it alone."""
    _, folder = saved
    vae, full = load_diffusers(folder)
    _, dec = load_diffusers(folder, parts=("decoder",))
    _, enc = load_diffusers(folder, parts=("encoder",))
    assert set(dec) == {"decoder"} and set(enc) == {"encoder"}
    for part in (dec, enc):
        chex.assert_trees_all_equal(part, {k: full[k] for k in part})
    s, c = vae.config.spatial_compression, vae.config.latent_channels
    z = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 2, 3, c))
    chex.assert_shape(vae.apply({"params": dec}, z, method="decode"), (1, 1, 2 * s, 3 * s, 3))
    x = jax.random.uniform(jax.random.PRNGKey(1), (1, 1, 2 * s, 3 * s, 3), minval=-1, maxval=1)
    chex.assert_shape(vae.apply({"params": enc}, x, method="encode").mean, (1, 1, 2, 3, c))
    with pytest.raises(ValueError, match="parts"):
        load_diffusers(folder, parts=("decoder", "text"))
