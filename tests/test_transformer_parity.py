"""Expert transformer parity with diffusers' CogVideoXTransformer3DModel (random init, tiny configs)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cogvideox_jax.convert import WeightMismatchError, load_diffusers

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.transformer_oracle import make_torch_transformer, reference_forward  # noqa: E402

# variant -> [(t, h, w) latent sizes]: the config's sample size and a different one
SIZES = {
    "2b": [(3, 4, 6), (2, 6, 4)],
    "5b": [(3, 4, 6), (2, 6, 8)],
    "5b-i2v": [(3, 4, 6), (2, 4, 6)],   # learned PE: other frame counts use regenerated sin-cos
    "1.5": [(6, 4, 6), (4, 4, 4)],   # 1.5 slice grid: other sizes must fit in the sample grid
    "1.5-i2v": [(6, 4, 6), (2, 2, 6)],
}


def _inputs(model, t, h, w, seed=0):
    rng = np.random.default_rng(seed)
    c = model.config.in_channels
    latents = rng.standard_normal((2, t, h, w, c)).astype(np.float32)
    text = rng.standard_normal((2, model.config.max_text_seq_length, model.config.text_embed_dim)).astype(np.float32)
    timestep = np.array([999, 37], np.int64)
    ofs = np.array([2.0], np.float32) if model.config.ofs_embed_dim else None
    return latents, text, timestep, ofs


@pytest.mark.parametrize("variant,scan", [(v, True) for v in SIZES] + [("5b", False)],
                         ids=[f"{v}-scan" for v in SIZES] + ["5b-unrolled"])
def test_forward_parity(tmp_path, variant, scan):
    model = make_torch_transformer(variant)
    model.save_pretrained(tmp_path)
    ours, params = load_diffusers(str(tmp_path), scan_layers=scan)
    for (t, h, w) in SIZES[variant]:
        latents, text, timestep, ofs = _inputs(model, t, h, w)
        ref = reference_forward(model, latents, text, timestep, ofs)
        kw = {} if ofs is None else {"ofs": jnp.asarray(ofs)}
        got = jax.jit(lambda p, a, b, c: ours.apply({"params": p}, a, b, c, **kw))(params, latents, text,
                                                                                  timestep.astype(np.float32))
        assert got.shape == ref.shape
        err = np.max(np.abs(np.asarray(got) - ref)) / np.max(np.abs(ref))
        assert err <= 1e-4, f"{variant} {(t, h, w)}: rel err {err}"


def test_learned_pe_rejects_other_resolution(tmp_path):
    model = make_torch_transformer("5b-i2v")
    model.save_pretrained(tmp_path)
    ours, params = load_diffusers(str(tmp_path))
    latents, text, timestep, _ = _inputs(model, 3, 6, 6)
    with pytest.raises(ValueError, match="learned positional embeddings"):
        ours.apply({"params": params}, latents, text, timestep)


def test_mismatched_config_errors(tmp_path):
    import json

    model = make_torch_transformer("5b")
    model.save_pretrained(tmp_path)
    cfg = json.load(open(tmp_path / "config.json"))
    cfg["num_layers"] = 3
    json.dump(cfg, open(tmp_path / "config.json", "w"))
    with pytest.raises(WeightMismatchError, match="missing keys"):
        load_diffusers(str(tmp_path), scan_layers=False)
    with pytest.raises(WeightMismatchError, match=r"(?s)missing keys.*incomplete stack"):
        load_diffusers(str(tmp_path), scan_layers=True)
    cfg["num_layers"] = model.config.num_layers - 1  # the checkpoint's last block is left over
    json.dump(cfg, open(tmp_path / "config.json", "w"))
    with pytest.raises(WeightMismatchError, match=rf"transformer_blocks\.{cfg['num_layers']}\."):
        load_diffusers(str(tmp_path), scan_layers=True)
