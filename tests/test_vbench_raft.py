"""JAX RAFT port vs the PyTorch RAFT that VBench runs (random init, small images), loaded from a
.pth state dict and from safetensors.

The reference is VBench's own copy of princeton-vl/RAFT (vbench/third_party/RAFT/core), taken from the
installed `vbench` wheel (`pip install --no-deps "vbench==0.1.5"`, done by .ci/run). Only that directory
is loaded, as a private package, so `vbench/__init__.py` and its heavy dependencies are never imported.
"""
import importlib
import importlib.util
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

# RAFT's forward enters `torch.cuda.amp.autocast(enabled=False)` (deprecated) and calls torch.meshgrid
# without `indexing=`; both only warn.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*CUDA is not available:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.meshgrid:UserWarning"),
]

_CORE_PACKAGE = "_vbench_raft_core"  # private name for vbench/third_party/RAFT/core


def _load_vbench_raft_core():
    """Import vbench/third_party/RAFT/core (relative imports: `.update`, `.utils_core.utils`) by path."""
    spec = importlib.util.find_spec("vbench")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip('reference RAFT needs the vbench wheel: pip install --no-deps "vbench==0.1.5"',
                    allow_module_level=True)
    core = os.path.join(spec.submodule_search_locations[0], "third_party", "RAFT", "core")
    if not os.path.isfile(os.path.join(core, "raft.py")):
        pytest.skip(f"installed vbench has no RAFT at {core}", allow_module_level=True)
    if _CORE_PACKAGE not in sys.modules:
        pkg_spec = importlib.util.spec_from_file_location(
            _CORE_PACKAGE, os.path.join(core, "__init__.py"), submodule_search_locations=[core])
        pkg = importlib.util.module_from_spec(pkg_spec)
        sys.modules[_CORE_PACKAGE] = pkg
        pkg_spec.loader.exec_module(pkg)
    return (importlib.import_module(f"{_CORE_PACKAGE}.raft"), importlib.import_module(f"{_CORE_PACKAGE}.corr"))


_raft_module, _corr_module = _load_vbench_raft_core()
RAFT = _raft_module.RAFT
CorrBlock = _corr_module.CorrBlock


# ================================================ tests ================================================
import jax.numpy as jnp  # noqa: E402

from cogvideox_jax.errors import WeightMismatchError  # noqa: E402
from cogvideox_jax.eval.vbench.backends import raft_jax  # noqa: E402
from cogvideox_jax.eval.vbench.backends.raft_weights import load_raft  # noqa: E402


class _Args(dict):
    __getattr__ = dict.get

    def __setattr__(self, k, v):
        self[k] = v


def _reference_raft():
    torch.manual_seed(0)
    model = RAFT(_Args(small=False, mixed_precision=False, alternate_corr=False, dropout=0))
    with torch.no_grad():  # non-trivial batch-norm statistics and affine params for the context net
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def _images(h=128, w=144, shift=3):  # RAFT needs >= 128 px: its coarsest level must be >= 2 px
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 256, size=(h // 4 + 2, w // 4 + 2, 3)), np.ones((4, 4, 1)))
    return base[:h, :w].astype(np.float32), base[shift : shift + h, 2 : 2 + w].astype(np.float32)


@pytest.fixture(scope="module")
def reference_and_flow():
    model = _reference_raft()
    im1, im2 = _images()
    t = lambda x: torch.tensor(x).permute(2, 0, 1)[None]
    with torch.no_grad():
        low, up = model(t(im1), t(im2), iters=20, test_mode=True)
    return model, im1, im2, up[0].permute(1, 2, 0).numpy()


def test_raft_jax_matches_reference_from_pth(tmp_path, reference_and_flow):
    """VBench's layout and file (a DataParallel .pth) -> resolved JAX backend -> same flow."""
    from cogvideox_jax.eval.vbench.backends.resolve import resolve_backend

    model, im1, im2, want = reference_and_flow
    folder = tmp_path / "raft_model" / "models"
    folder.mkdir(parents=True)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, folder / "raft-things.pth")
    backend = resolve_backend("dynamic_degree", str(tmp_path))
    assert backend.info.comparable_to_vbench and "jax" in backend.info.name
    got = backend.flow(im1.astype(np.uint8), im2.astype(np.uint8))
    assert got.shape == want.shape == (128, 144, 2)
    scale = np.abs(want).max()
    assert scale > 0.1
    np.testing.assert_allclose(got, want, atol=2e-3 * scale, rtol=0)
    with pytest.raises(ValueError, match="128"):
        backend.flow(np.zeros((96, 160, 3), np.uint8), np.zeros((96, 160, 3), np.uint8))


def test_raft_safetensors_and_strict_names(tmp_path, reference_and_flow):
    from safetensors.numpy import save_file

    model, im1, im2, want = reference_and_flow
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "raft.safetensors"))
    module, params = load_raft(str(tmp_path / "raft.safetensors"), iters=20)
    assert params["cnet"]["norm1"]["bn"]["mean"].shape == (64,)
    del state["update_block.mask.2.weight"]
    state["update_block.extra.weight"] = np.zeros(2, np.float32)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightMismatchError, match="mask_2"):
        load_raft(str(tmp_path / "bad.safetensors"))


def test_correlation_lookup_and_upsampling_pieces_match_reference():
    rng = np.random.default_rng(1)
    f1, f2 = rng.standard_normal((2, 1, 8, 16, 17)).astype(np.float32)
    coords = rng.uniform(-3, 19, size=(1, 16, 17, 2)).astype(np.float32)  # includes out-of-range points
    tt = lambda x: torch.tensor(x).permute(0, 3, 1, 2)
    want = CorrBlock(torch.tensor(f1), torch.tensor(f2))(tt(coords))
    pyr = raft_jax.correlation_pyramid(jnp.asarray(f1.transpose(0, 2, 3, 1)), jnp.asarray(f2.transpose(0, 2, 3, 1)))
    got = raft_jax.lookup_correlation(pyr, jnp.asarray(coords))
    np.testing.assert_allclose(np.asarray(got), want.permute(0, 2, 3, 1).numpy(), atol=1e-5)
    flow = rng.standard_normal((1, 16, 17, 2)).astype(np.float32)
    mask = rng.standard_normal((1, 16, 17, 576)).astype(np.float32)
    ref_up = RAFT.upsample_flow(None, tt(flow), tt(mask)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(raft_jax.convex_upsample(jnp.asarray(flow), jnp.asarray(mask))), ref_up, atol=1e-5)

