"""CLI: convert (diffusers + SAT) -> info -> export round trip, and sample writing a readable mp4."""
import numpy as np
import pytest

from cogvideox_jax.cli import main

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder  # noqa: E402
from cogvideox_jax_oracles.sat_inverse import diffusers_transformer_to_sat, diffusers_vae_to_sat  # noqa: E402


def _state(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_5b(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    return make_pipeline_folder(root, "5b")


def test_convert_info_export_roundtrip(tmp_path, tiny_5b, capsys):
    folder, ref = tiny_5b
    ckpt = tmp_path / "ckpt"
    assert main(["convert", "--diffusers", folder, "--out", str(ckpt), "--scan-layers"]) == 0
    assert main(["info", str(ckpt)]) == 0
    out = capsys.readouterr().out
    n_transformer = sum(p.numel() for p in ref.transformer.parameters())
    assert f"{n_transformer:,d}" in out
    exported = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(ckpt), "--diffusers-out", str(exported)]) == 0
    back = diffusers.CogVideoXPipeline.from_pretrained(str(exported))
    for name in ("transformer", "vae", "text_encoder"):
        a, b = _state(getattr(ref, name)), _state(getattr(back, name))
        a = {k: v for k, v in a.items() if not k.endswith("pos_embedding")}
        b = {k: v for k, v in b.items() if not k.endswith("pos_embedding")}
        assert sorted(a) == sorted(b), name
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}.{k}")


def test_sample_writes_mp4(tmp_path, tiny_5b):
    from cogvideox_jax.data.video_io import read_video

    folder, _ = tiny_5b
    out = tmp_path / "v.mp4"
    assert main(["sample", "--diffusers", folder, "--prompt", "a red circle", "--frames", "9", "--height", "32",
                 "--width", "48", "--steps", "2", "--out", str(out)]) == 0
    video = read_video(str(out))
    assert video.shape == (9, 32, 48, 3)


def test_sat_conversion_matches_diffusers(tmp_path, tiny_5b):
    from configs.transformer import TransformerConfig
    from configs.vae import VAEConfig
    from cogvideox_jax.convert import load_diffusers
    from cogvideox_jax.convert.sat_checkpoint import transformer_from_sat_state, vae_from_sat_state
    from cogvideox_jax.convert.sat_names import load_torch_checkpoint

    folder, ref = tiny_5b
    # the SAT files: a .pt transformer (DeepSpeed-style {"module": ...}) and a safetensors VAE
    sat_t = diffusers_transformer_to_sat(_state(ref.transformer))
    torch.save({"module": {k: torch.from_numpy(v.copy()) for k, v in sat_t.items()}}, tmp_path / "mp_rank_00_model_states.pt")
    from safetensors.numpy import save_file

    save_file(diffusers_vae_to_sat(_state(ref.vae)), str(tmp_path / "vae.safetensors"))
    _, t_params = load_diffusers(f"{folder}/transformer")
    _, v_params = load_diffusers(f"{folder}/vae")
    tcfg = TransformerConfig.from_diffusers_config(dict(ref.transformer.config))
    vcfg = VAEConfig.from_diffusers_config(dict(ref.vae.config))
    _, t_sat = transformer_from_sat_state(load_torch_checkpoint(str(tmp_path / "mp_rank_00_model_states.pt")), tcfg)
    _, v_sat = vae_from_sat_state(load_torch_checkpoint(str(tmp_path / "vae.safetensors")), vcfg)
    import jax

    for a, b in ((t_params, t_sat), (v_params, v_sat)):
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
        jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
