"""``cogvideox-jax precompute --mesh ... --vae-encode context-parallel``: every clip's frames split over the
mesh's ``sequence`` axis, the batch over fsdp, T5 sharded by its logical names - the latent cache it writes
holds the records single-device precompute (``--vae-encode whole``: one pass over the clip) writes."""
import numpy as np
import pytest

from cogvideox_jax.cli import main
from cogvideox_jax.data.latent_cache import LatentCacheSource, read_index
from cogvideox_jax_oracles.data_video_files import write_folder

pytest.importorskip("torch")
from tests.test_train_videos import pretrained_root  # noqa: E402,F401  (the tiny VAE + T5 + tokenizer folder)


def _records(cache):
    src = LatentCacheSource([cache])
    return [src[i] for i in range(len(src))]


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def test_context_parallel_precompute_equals_single_device(tmp_path, pretrained_root):  # noqa: F811
    data = tmp_path / "data"
    write_folder(data, [dict(num_frames=20, height=32, width=32, fps=8.0, noise=True, prompt=f"clip number {i}")
                        for i in range(4)])
    common = ["precompute", "--data-root", str(data), "--pretrained", pretrained_root, "--buckets", "17x32x32",
              "--batch-size", "2", "--text-len", "16", "--fps", "0"]
    single, cp = str(tmp_path / "single"), str(tmp_path / "cp")
    assert main(common + ["--out", single, "--vae-encode", "whole"]) == 0
    assert main(common + ["--out", cp, "--mesh", "fsdp=2,sequence=4", "--vae-encode", "context-parallel"]) == 0
    assert read_index(cp)["vae_encode"] == "context-parallel" and read_index(single)["vae_encode"] == "whole"
    want, got = _records(single), _records(cp)
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        assert (g["prompt"], g["video"]) == (w["prompt"], w["video"])
        assert g["latent_mean"].shape == w["latent_mean"].shape == (5, 4, 4, 6)
        for key in ("latent_mean", "latent_logvar", "text_emb"):
            assert _rel(g[key], w[key]) <= 1e-5, (key, _rel(g[key], w[key]))


def test_context_parallel_precompute_needs_a_fitting_mesh(tmp_path, pretrained_root):  # noqa: F811
    common = ["precompute", "--data-root", str(tmp_path), "--pretrained", pretrained_root, "--out",
              str(tmp_path / "out"), "--vae-encode", "context-parallel"]
    with pytest.raises(SystemExit, match="give --mesh"):
        main(common + ["--buckets", "17x32x32"])
    with pytest.raises(SystemExit, match="sequence axis > 1"):
        main(common + ["--buckets", "17x32x32", "--mesh", "fsdp=8"])
    with pytest.raises(SystemExit, match="divisible by 16"):
        main(common + ["--buckets", "9x32x32", "--mesh", "sequence=4,fsdp=2"])
