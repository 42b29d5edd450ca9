"""LoRA files in diffusers / PEFT format, read and written with numpy + safetensors (no torch).

Formats read (:func:`read_lora`):

* diffusers ``save_lora_weights`` / ``save_lora_adapter``: ``pytorch_lora_weights.safetensors`` with keys
  ``transformer.<module>.lora_A.weight`` / ``lora_B.weight`` (``save_lora_adapter``: no ``transformer.``
  prefix), and optionally the adapter's ``LoraConfig`` as JSON under the safetensors metadata key
  ``lora_adapter_metadata`` - each entry prefixed by the component (``"transformer.r"``,
  ``"transformer.lora_alpha"``, ...) when written by the pipeline's ``save_lora_weights``, unprefixed
  when written by the model's ``save_lora_adapter``;
* PEFT ``save_pretrained``: ``adapter_model.safetensors`` (keys ``base_model.model.<module>.lora_A.weight``)
  next to ``adapter_config.json``;
* the older ``<module>.lora.down.weight`` / ``lora.up.weight`` names, with optional per-module
  ``<module>.alpha`` tensors; PEFT keys carrying an adapter name (``lora_A.default.weight``).

A module's weight delta is ``scale * B @ A`` (``A (r, in)``, ``B (out, r)``), ``scale = alpha / r``
(``alpha / sqrt(r)`` with ``use_rslora``). alpha comes from, in order: the module's ``.alpha`` tensor,
the diffusers metadata, ``adapter_config.json`` (``lora_alpha`` / ``alpha_pattern``, matched against
module names as PEFT does), else ``alpha = r`` - diffusers' convention when nothing says otherwise
(``get_peft_kwargs`` mirrors the ranks into the alphas), i.e. scale 1.

Our Dense kernels are the transposed torch weights (``kernel = weight.T``), so merging adds
``(scale * B @ A).T`` to the kernel; module names map to our param paths as in
:mod:`cogvideox_jax.convert.transformer` (:func:`module_path` / :func:`diffusers_module_name`).

:func:`write_diffusers_lora` writes our training LoRA tree (``W + s * a @ b``, ``s = alpha / rank``) as
diffusers' CogVideoX LoRA file. The scale ``s`` is folded into ``lora_B`` and the metadata says
``lora_alpha == r``: every reader (diffusers with or without the metadata, PEFT, this module) then applies
scale 1 and gets ``s * a @ b``, whatever alpha convention it assumes.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections import Counter

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, so bf16 safetensors read)
import numpy as np
from flax import traverse_util

from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.convert.safetensors_io import read_safetensors
from cogvideox_jax.convert.transformer import diffusers_module_name

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
PEFT_WEIGHT_NAME = "adapter_model.safetensors"
PEFT_CONFIG_NAME = "adapter_config.json"
METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
_PREFIXES = ("transformer.", "base_model.model.")
_OTHER_COMPONENTS = ("text_encoder", "text_encoder_2", "text_encoder_3", "unet", "vae", "controlnet")
_KEY = re.compile(r"^(?P<mod>.+?)\.(?:lora_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?\.weight|lora\.(?P<ud>down|up)\.weight"
                  r"|(?P<alpha>alpha))$")


def _first(keys, n=5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def _resolve(path: str) -> tuple[str, str | None]:
    """(weights file, adapter_config.json or None) for a file or a diffusers / PEFT folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in (DIFFUSERS_WEIGHT_NAME, PEFT_WEIGHT_NAME):
            if os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise CheckpointFormatError(f"{path!r} holds neither {DIFFUSERS_WEIGHT_NAME} nor {PEFT_WEIGHT_NAME}")
    elif not os.path.isfile(path):
        raise CheckpointFormatError(f"LoRA file {path!r} does not exist")
    config = os.path.join(os.path.dirname(path), PEFT_CONFIG_NAME)
    return path, (config if os.path.basename(path) == PEFT_WEIGHT_NAME and os.path.isfile(config) else None)


def _file_metadata_config(path: str) -> dict | None:
    """The transformer's LoraConfig dict from diffusers' safetensors metadata, or None."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        raw = (f.metadata() or {}).get(METADATA_KEY)
    if not raw:
        return None
    meta = json.loads(raw)
    prefixed = {k[len("transformer."):]: v for k, v in meta.items() if k.startswith("transformer.")}
    if prefixed:
        return prefixed
    # save_lora_adapter writes the LoraConfig unprefixed; entries of other components only: ignore
    return None if any("." in k for k in meta) else meta


def _pattern_value(patterns: dict, name: str, default):
    """PEFT's ``get_pattern_key``: the first pattern p with ``re.match(rf"(.*\\.)?({p})$", name)``."""
    for p, v in (patterns or {}).items():
        if re.match(rf"(.*\.)?({p})$", name):
            return v
    return default


def read_lora(path) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Read a LoRA file or folder: ``{diffusers module name: (A (r, in), B (out, r), scale)}`` (float32).

    ``path``: a ``.safetensors`` file, or a folder holding ``pytorch_lora_weights.safetensors`` (diffusers)
    or ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT). The module's weight delta is
    ``scale * B @ A``; see the module docstring for the key layouts and where alpha comes from. Keys of
    other components (text encoder, ...), DoRA / LoKr / bias adapters, conv (4-D) LoRAs and unknown
    layouts raise :class:`CheckpointFormatError` naming the file and the first offending keys.
    """
    file, config_file = _resolve(path)
    tensors = read_safetensors(file)
    parts: dict[str, dict[str, np.ndarray]] = {}
    other, unknown, adapters = [], [], set()
    for key in tensors:
        name = key
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        if name.split(".")[0] in _OTHER_COMPONENTS:
            other.append(key)
            continue
        m = _KEY.match(name)
        if not m:
            unknown.append(key)
            continue
        part = "alpha" if m["alpha"] else ("A" if m["ab"] == "A" or m["ud"] == "down" else "B")
        if m["adapter"]:
            adapters.add(m["adapter"])
        if part in parts.setdefault(m["mod"], {}):
            unknown.append(key)  # the same module twice (e.g. lora_A and lora.down)
            continue
        parts[m["mod"]][part] = key
    if other:
        raise CheckpointFormatError(f"{file}: LoRA weights for other components than the transformer are not "
                                    f"supported: {_first(other)}")
    if unknown:
        raise CheckpointFormatError(f"{file}: unknown LoRA key layout (expected <module>.lora_A/lora_B.weight, "
                                    f"<module>.lora.down/up.weight or <module>.alpha): {_first(unknown)}")
    if len(adapters) > 1:
        raise CheckpointFormatError(f"{file}: holds several adapters {sorted(adapters)}; save one adapter per file")
    incomplete = [f"{mod} (has {sorted(p)})" for mod, p in parts.items() if not {"A", "B"} <= set(p)]
    if incomplete:
        raise CheckpointFormatError(f"{file}: modules without both LoRA factors: {_first(incomplete)}")

    config = _file_metadata_config(file)
    if config is None and config_file:
        with open(config_file) as f:
            config = json.load(f)
    out = {}
    for mod, p in parts.items():
        a, b = (np.asarray(tensors[p[k]]).astype(np.float32) for k in ("A", "B"))
        if a.ndim != 2 or b.ndim != 2:
            raise CheckpointFormatError(f"{file}: {mod}: only Linear LoRAs (2-D factors) are supported, got "
                                        f"lora_A {a.shape}, lora_B {b.shape} (convolution LoRA?)")
        r = a.shape[0]
        if b.shape[1] != r:
            raise CheckpointFormatError(f"{file}: {mod}: lora_A {a.shape} and lora_B {b.shape} disagree on the rank")
        rank, rslora = r, False
        if "alpha" in p:
            alpha = float(np.asarray(tensors[p["alpha"]]).astype(np.float64).reshape(-1)[0])
        elif config is not None and "lora_alpha" in config:
            rank = _pattern_value(config.get("rank_pattern"), mod, config.get("r", r))
            alpha = float(_pattern_value(config.get("alpha_pattern"), mod, config["lora_alpha"]))
            rslora = bool(config.get("use_rslora", False))
            if rank != r:
                raise CheckpointFormatError(f"{file}: {mod}: the LoRA config says rank {rank}, the tensors have "
                                            f"rank {r}")
        else:
            alpha = float(r)
        out[mod] = (a, b, alpha / (math.sqrt(r) if rslora else r))
    if not out:
        raise CheckpointFormatError(f"{file}: no LoRA weights in the file")
    return out


def _kernel_index(flat: dict) -> dict[str, tuple[tuple, int | None]]:
    """``{diffusers module name: (kernel path, layer or None)}`` for every Linear kernel of the params."""
    index = {}
    for path, leaf in flat.items():
        if path[-1] == "kernel":
            mod = path[:-1]
            layers = range(leaf.shape[0]) if mod[0] == "transformer_blocks" else [None]
            for i in layers:
                index[diffusers_module_name(mod, i)] = (path, i)
    return index


def merge_lora_files(params, transformer_config, loras, *, ignore_unmatched: bool = False):
    """Base params with every LoRA of ``loras`` merged in: new host (numpy) params.

    ``loras``: ``[(path or read_lora result, user_scale), ...]``. Every matched module's kernel gets
    ``+= user_scale * scale * (B @ A).T``, summed in float32 over the files and cast back to the kernel's
    dtype; scanned (stacked ``transformer_blocks``) and unrolled trees alike, any Linear of the model.
    ``transformer_config`` checks the layer count. Modules that match no kernel (or whose shape differs)
    raise a ``ValueError`` listing all of them with their file; with ``ignore_unmatched`` they are skipped
    with a warning. The input arrays are not modified.
    """
    flat = {path: np.asarray(v) for path, v in traverse_util.flatten_dict(params).items()}
    stack = flat.get(("transformer_blocks", "attn1", "to_q", "kernel"))
    if transformer_config is not None and stack is not None and stack.shape[0] != transformer_config.num_layers:
        raise ValueError(f"params stack {stack.shape[0]} layers, the config has {transformer_config.num_layers}")
    index = _kernel_index(flat)
    deltas: dict[tuple, np.ndarray] = {}
    unmatched = []
    for n, (src, user_scale) in enumerate(loras):
        what = os.fspath(src) if isinstance(src, (str, os.PathLike)) else f"LoRA #{n}"
        modules = read_lora(src) if isinstance(src, (str, os.PathLike)) else src
        for mod, (a, b, scale) in modules.items():
            if mod not in index:
                conv = mod == "patch_embed.proj" and ("patch_embed", "proj_kernel") in flat
                unmatched.append(f"{what}: {mod}" + (" (conv kernel: LoRA on convolutions is not supported)"
                                                     if conv else " (no such Linear in the model)"))
                continue
            path, layer = index[mod]
            w = flat[path]
            kshape = w.shape[1:] if layer is not None else w.shape
            if kshape != (a.shape[1], b.shape[0]):
                unmatched.append(f"{what}: {mod} (LoRA in/out {(a.shape[1], b.shape[0])}, kernel {kshape})")
                continue
            d = (np.float32(user_scale * scale) * (b.astype(np.float32) @ a.astype(np.float32))).T
            acc = deltas.setdefault(path, np.zeros(w.shape, np.float32))
            if layer is None:
                acc += d
            else:
                acc[layer] += d
    if unmatched:
        msg = f"{len(unmatched)} LoRA modules match no kernel of the model:\n  " + "\n  ".join(unmatched)
        if not ignore_unmatched:
            raise ValueError(msg + "\n(ignore_unmatched=True merges the rest)")
        warnings.warn(msg + "\n(ignored)", stacklevel=2)
    for path, d in deltas.items():
        w = flat[path]
        flat[path] = (w.astype(np.float32) + d).astype(w.dtype)
    return traverse_util.unflatten_dict(flat)


def _tree_modules(lora_tree) -> dict[str, tuple[str, int | None]]:
    """``{diffusers module name: (training-tree key, layer or None)}`` for our training LoRA tree."""
    out = {}
    for key, ab in lora_tree.items():
        *mod, leaf = key.split("/")
        nstack = np.ndim(ab["a"]) - 2
        if leaf != "kernel" or nstack > 1 or (nstack == 1 and mod[0] != "transformer_blocks"):
            raise ValueError(f"LoRA tree key {key!r} (a {np.shape(ab['a'])}): expected <module>/kernel, stacked "
                             "only under transformer_blocks")
        for i in (range(np.shape(ab["a"])[0]) if nstack else [None]):
            out[diffusers_module_name(mod, i)] = (key, i)
    return out


def lora_tree_from_file(path, lora_template: dict, train_scale: float) -> dict:
    """Our training LoRA tree initialised from a LoRA file (to continue training a published LoRA).

    ``lora_template``: a fresh tree from ``init_lora_params`` (gives keys, shapes, stacking). For each of
    its modules found in the file ``a = A.T``, ``b = B.T * file_scale / train_scale``, so that
    ``train_scale * a @ b`` is the file's delta; modules absent from the file keep the template's values
    (B = 0: no change). A rank other than the template's, or file modules outside the template (the
    config's ``lora.targets`` must cover them), raise a ``ValueError``. Returns numpy arrays.
    """
    modules = read_lora(path) if isinstance(path, (str, os.PathLike)) else path
    where = _tree_modules(lora_template)
    missing = [m for m in modules if m not in where]
    if missing:
        raise ValueError(f"{path}: LoRA modules not in the training LoRA tree (widen lora.targets): "
                         + ", ".join(missing))
    out = {k: {n: np.array(v) for n, v in ab.items()} for k, ab in lora_template.items()}
    for mod, (a, b, scale) in modules.items():
        key, i = where[mod]
        ta, tb = out[key]["a"], out[key]["b"]
        sa, sb = (ta.shape, tb.shape) if i is None else (ta.shape[1:], tb.shape[1:])
        if a.shape[0] != sa[1]:
            raise ValueError(f"{path}: {mod} has rank {a.shape[0]}, the training LoRA rank {sa[1]}")
        if (a.shape[1], b.shape[0]) != (sa[0], sb[1]):
            raise ValueError(f"{path}: {mod}: LoRA in/out {(a.shape[1], b.shape[0])}, template {(sa[0], sb[1])}")
        na, nb = a.T, b.T * np.float32(scale / train_scale)
        if i is None:
            out[key]["a"], out[key]["b"] = na.astype(ta.dtype), nb.astype(tb.dtype)
        else:
            ta[i], tb[i] = na, nb
    return out


def write_diffusers_lora(path, lora_tree: dict, scale: float, transformer_config=None, dtype=np.float32) -> str:
    """Write our training LoRA tree as diffusers' CogVideoX LoRA file; returns the file written.

    Keys ``transformer.<module>.lora_A.weight`` ``(r, in) = a.T`` and ``lora_B.weight`` ``(out, r) =
    scale * b.T`` (contiguous, ``dtype``), for scanned and unrolled trees. ``scale`` (our ``alpha / rank``)
    is folded into lora_B and the metadata diffusers writes (``lora_adapter_metadata``: the transformer's
    LoraConfig with ``lora_alpha == r``) makes every reader apply scale 1, so
    ``CogVideoXPipeline.load_lora_weights(file)`` at its default scale reproduces
    ``merge_lora(base, lora_tree, scale)``. ``path``: a file, or a folder (then
    ``<folder>/pytorch_lora_weights.safetensors``); written to a temporary file, then renamed.
    ``transformer_config``, if given, checks the layer indices.
    """
    from safetensors.numpy import save_file

    path = os.fspath(path)
    if os.path.isdir(path) or not path.endswith(".safetensors"):
        os.makedirs(path, exist_ok=True)
        path = os.path.join(path, DIFFUSERS_WEIGHT_NAME)
    tensors, ranks = {}, {}
    for mod, (key, i) in sorted(_tree_modules(lora_tree).items()):
        a, b = np.asarray(lora_tree[key]["a"], np.float32), np.asarray(lora_tree[key]["b"], np.float32)
        a, b = (a, b) if i is None else (a[i], b[i])
        layer = int(mod.split(".")[1]) if mod.startswith("transformer_blocks.") else -1
        if transformer_config is not None and layer >= transformer_config.num_layers:
            raise ValueError(f"{key}: layer {layer} >= num_layers {transformer_config.num_layers}")
        tensors[f"transformer.{mod}.lora_A.weight"] = np.ascontiguousarray(a.T).astype(dtype)
        tensors[f"transformer.{mod}.lora_B.weight"] = np.ascontiguousarray((b * np.float32(scale)).T).astype(dtype)
        ranks[mod] = a.shape[1]
    r = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {"^" + re.escape(m): k for m, k in ranks.items() if k != r}
    config = {"r": r, "lora_alpha": r, "rank_pattern": pattern, "alpha_pattern": pattern,
              "target_modules": sorted(ranks), "use_rslora": False, "use_dora": False, "lora_bias": False}
    metadata = {"format": "pt",
                METADATA_KEY: json.dumps({f"transformer.{k}": v for k, v in config.items()}, indent=2, sort_keys=True)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
