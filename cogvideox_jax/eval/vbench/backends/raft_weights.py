"""Load RAFT-things weights (``raft-things.pth`` as VBench downloads it, or a safetensors copy) into
``raft_jax.RAFT``, strictly (every missing / unexpected / mis-shaped tensor is named).

A ``.pth`` file is read through ``convert.sat_names.load_torch_checkpoint`` (the project's one lazy
torch import); a ``.safetensors`` file with the same names needs no torch.
"""
from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np

from cogvideox_jax.convert.tree_check import abstract_params, assemble_params
from cogvideox_jax.eval.vbench.backends.raft_jax import RAFT

_LAYER = re.compile(r"^(fnet|cnet)\.layer(\d)\.(\d)\.(.+)$")
_UPDATE = {
    "encoder": None,  # convc1, convc2, convf1, convf2, conv directly under update_block
    "gru": "gru",
    "flow_head": "flow_head_",
    "mask": "mask_",
}
_PARAM = {"weight": "kernel", "bias": "bias"}
_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _conv_or_norm(prefix: tuple[str, ...], module: str, leaf: str, value: np.ndarray):
    if module.startswith("norm"):
        if leaf == "num_batches_tracked":
            return None
        return prefix + (module, "bn", _BN[leaf]), value
    if leaf == "weight":  # (O, I, kh, kw) -> (kh, kw, I, O)
        return prefix + (module, "kernel"), value.transpose(2, 3, 1, 0)
    return prefix + (module, _PARAM[leaf]), value


def convert_raft_state_dict(state: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
    """PyTorch RAFT names (``module.`` prefix optional) -> flat ``{path_tuple: array}``; unused names."""
    out, unused = {}, []
    for name, value in state.items():
        key = name[len("module."):] if name.startswith("module.") else name
        value = np.asarray(value)
        parts = key.split(".")
        mapped = "unmapped"
        try:
            m = _LAYER.match(key)
            if m:
                enc, i, j, rest = m.groups()
                rparts = rest.split(".")
                prefix = (enc, f"layer{i}_{j}")
                if rparts[0] == "downsample":
                    if rparts[1] == "1":  # the same module as norm3, registered twice
                        continue
                    mapped = _conv_or_norm(prefix, "downsample", rparts[2], value)
                else:
                    mapped = _conv_or_norm(prefix, rparts[0], rparts[1], value)
            elif parts[0] in ("fnet", "cnet") and len(parts) == 3:
                mapped = _conv_or_norm((parts[0],), parts[1], parts[2], value)
            elif parts[0] == "update_block" and parts[1] in _UPDATE:
                sub = _UPDATE[parts[1]]
                if sub is None:
                    mapped = _conv_or_norm(("update_block",), parts[2], parts[3], value)
                elif sub == "gru":
                    mapped = _conv_or_norm(("update_block", "gru"), parts[2], parts[3], value)
                else:  # flow_head.conv1 -> flow_head_conv1, mask.0 -> mask_0
                    mapped = _conv_or_norm(("update_block",), sub + parts[2], parts[3], value)
        except (KeyError, IndexError):
            mapped = "unmapped"
        if mapped == "unmapped":
            unused.append(name)
        elif mapped is not None:
            out[mapped[0]] = mapped[1]
    return out, unused


def load_raft(path: str, iters: int = 20) -> tuple[RAFT, dict]:
    from cogvideox_jax.convert.sat_names import load_torch_checkpoint

    module = RAFT(iters=iters)
    img = jnp.zeros((1, 16, 16, 3), jnp.float32)
    expected = abstract_params(module, img, img)
    converted, unused = convert_raft_state_dict(load_torch_checkpoint(path))
    return module, assemble_params(converted, expected, unused_source_keys=unused, context=f"RAFT from {path}")
