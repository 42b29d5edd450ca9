"""Torch-free converter: diffusers ``CogVideoXTransformer3DModel`` folder <-> ``(module, params)``.

diffusers names map to our tree as follows (per block ``transformer_blocks.{i}``; with
``scan_layers`` the blocks are stacked on a leading axis under ``transformer_blocks``):
``norm{1,2}.linear`` -> ``norm{1,2}/linear``, ``norm{1,2}.norm`` -> ``norm{1,2}/norm``,
``attn1.to_{q,k,v}`` / ``attn1.to_out.0`` -> ``attn1/to_{q,k,v,out}``, ``attn1.norm_{q,k}``,
``ff.net.0.proj`` -> ``ff/proj_in``, ``ff.net.2`` -> ``ff/proj_out``; the 1.0 patch conv
``patch_embed.proj`` (OIHW) -> ``patch_embed/proj_kernel`` (HWIO) + ``proj_bias``; the learned
``patch_embed.pos_embedding`` (1, L, D) -> ``pos_embedding`` (L, D). Linear weights are transposed.
"""
from __future__ import annotations

import re
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from configs.transformer import EXECUTION_FIELDS, TransformerConfig
from cogvideox_jax.errors import CheckpointFormatError, WeightMismatchError
from cogvideox_jax.convert.host_arrays import aligned_empty, copy_into
from cogvideox_jax.convert.safetensors_io import SafetensorsTensors, read_config, read_folder
from cogvideox_jax.convert.tree_check import abstract_params, assemble_params

_BLOCK_RENAMES = {
    "attn1.to_out.0": "attn1.to_out",
    "ff.net.0.proj": "ff.proj_in",
    "ff.net.2": "ff.proj_out",
}
_BLOCK_RENAMES_INVERSE = {v: k for k, v in _BLOCK_RENAMES.items()}
_BLOCK = re.compile(r"^transformer_blocks\.(\d+)\.(.+)\.(weight|bias)$")
_BLOCK_MODULE = re.compile(r"^transformer_blocks\.(\d+)\.(.+)$")
_UNROLLED_BLOCK = re.compile(r"^transformer_blocks_(\d+)$")


def block_module_path(name: str) -> tuple[str, ...]:
    """A diffusers in-block module name -> our in-block module path (``attn1.to_out.0`` -> ``attn1/to_out``)."""
    return tuple(_BLOCK_RENAMES.get(name, name).split("."))


def module_path(name: str, scan_layers: bool) -> tuple[tuple[str, ...], int | None]:
    """A diffusers module name -> (our module path, layer index into the stack or None).

    ``transformer_blocks.3.ff.net.2`` -> ``(("transformer_blocks", "ff", "proj_out"), 3)`` with
    ``scan_layers``, else ``(("transformer_blocks_3", "ff", "proj_out"), None)``; names outside the
    blocks split on dots (``norm_out.linear`` -> ``(("norm_out", "linear"), None)``)."""
    if m := _BLOCK_MODULE.match(name):
        i, inner = int(m.group(1)), block_module_path(m.group(2))
        return (("transformer_blocks",) + inner, i) if scan_layers else ((f"transformer_blocks_{i}",) + inner, None)
    return tuple(name.split(".")), None


def diffusers_module_name(path, layer: int | None = None) -> str:
    """The inverse of :func:`module_path`: our module path (stacked ``transformer_blocks/...`` with its
    ``layer``, or unrolled ``transformer_blocks_{i}/...``) -> the diffusers module name."""
    head, *rest = path
    if head == "transformer_blocks" and layer is not None:
        i = layer
    elif m := _UNROLLED_BLOCK.match(head):
        i = int(m.group(1))
    else:
        return ".".join(path)
    inner = ".".join(rest)
    return f"transformer_blocks.{i}.{_BLOCK_RENAMES_INVERSE.get(inner, inner)}"


# how a diffusers tensor becomes one of our leaves: "id" as is, "T" a Linear weight transposed to a
# kernel, "conv" the 1.0 patch conv OIHW -> HWIO, "pos" the learned table (1, L, D) -> (L, D)
_LAYOUTS = {"id": lambda a: a, "T": lambda a: a.T, "conv": lambda a: a.transpose(2, 3, 1, 0),
            "pos": lambda a: a.reshape(a.shape[-2], a.shape[-1])}


def tensor_target(name: str, ndim: int, cfg: TransformerConfig):
    """Where the diffusers tensor ``name`` (of ``ndim`` dims) goes: ``(our path, layer in the stack or
    None, layout)``, or ``None`` when no leaf takes it. The one naming rule of the loaders."""
    if m := _BLOCK.match(name):
        module, layer = module_path(f"transformer_blocks.{m.group(1)}.{m.group(2)}", cfg.scan_layers)
        kind = m.group(3)
    elif name == "patch_embed.proj.weight" and ndim == 4:
        return ("patch_embed", "proj_kernel"), None, "conv"
    elif name == "patch_embed.proj.bias" and cfg.patch_size_t is None:
        return ("patch_embed", "proj_bias"), None, "id"
    elif name == "patch_embed.pos_embedding":
        return (("pos_embedding",), None, "pos") if cfg.use_learned_positional_embeddings else None
    elif m := re.match(r"^(.+)\.(weight|bias)$", name):
        module, layer, kind = tuple(m.group(1).split(".")), None, m.group(2)
    else:
        return None
    if kind == "bias":
        return module + ("bias",), layer, "id"
    return (module + ("kernel",), layer, "T") if ndim == 2 else (module + ("scale",), layer, "id")


def convert_transformer_state_dict(state: Mapping[str, np.ndarray], cfg: TransformerConfig):
    """``{diffusers name: array}`` -> (``{path_tuple: array}``, unused names).

    With ``scan_layers`` each block weight is copied straight into its slot of the stacked
    (aligned) array as it is read, so the source tensors are never all held next to the stack.
    """
    out: dict[tuple[str, ...], np.ndarray] = {}
    stacks: dict[tuple[str, ...], np.ndarray] = {}
    filled: dict[tuple[str, ...], set[int]] = {}
    unused = []
    n = cfg.num_layers
    for name, arr in state.items():
        arr = np.asarray(arr)
        target = tensor_target(name, arr.ndim, cfg)
        if target is None:
            unused.append(name)
            continue
        path, i, layout = target
        value = _LAYOUTS[layout](arr)
        if i is None:
            out[path] = value
            continue
        if i >= n:
            unused.append(name)
            continue
        if path not in stacks:
            stacks[path], filled[path] = aligned_empty((n,) + value.shape, value.dtype), set()
        if stacks[path].shape[1:] != value.shape:
            unused.append(f"{name} (shape {value.shape}, other layers {stacks[path].shape[1:]})")
            continue
        copy_into(stacks[path][i], value)
        filled[path].add(i)
    for path, stack in stacks.items():
        if len(filled[path]) == n:
            out[path] = stack
        else:
            unused.extend(f"(incomplete stack) transformer_blocks.{i}/{'/'.join(path[1:])}"
                          for i in range(n) if i not in filled[path])
    return out, unused


def transformer_config_from_folder(folder: str, **overrides) -> TransformerConfig:
    config = read_config(folder)
    if config.get("_class_name") not in (None, "CogVideoXTransformer3DModel"):
        raise CheckpointFormatError(f"{folder!r} is not a CogVideoXTransformer3DModel folder")
    try:
        return TransformerConfig.from_diffusers_config({**config, **overrides})
    except (TypeError, ValueError) as e:
        raise CheckpointFormatError(f"invalid transformer config.json in {folder!r}: {e}") from e


_SPECIAL_STATE_NAMES = {("patch_embed", "proj_kernel"): "patch_embed.proj.weight",
                        ("patch_embed", "proj_bias"): "patch_embed.proj.bias",
                        ("pos_embedding",): "patch_embed.pos_embedding"}
_BLOCK_INDEX = re.compile(r"^transformer_blocks\.(\d+)\.")


def _expected_state_names(expected) -> set[str]:
    """The diffusers tensor names that the abstract params ``expected`` (either block layout) are built from."""
    names = set()
    for path, leaf in traverse_util.flatten_dict(expected).items():
        if path in _SPECIAL_STATE_NAMES:
            names.add(_SPECIAL_STATE_NAMES[path])
            continue
        *mod, kind = path
        suffix = "bias" if kind == "bias" else "weight"
        layers = range(leaf.shape[0]) if mod[0] == "transformer_blocks" else (None,)
        names.update(f"{diffusers_module_name(mod, i)}.{suffix}" for i in layers)
    return names


def _blocks_phrase(held: list[int]) -> str:
    """``[0, 1, 2]`` -> ``"3 blocks (transformer_blocks.0-2)"``; gaps listed as ranges."""
    if not held:
        return "no blocks (no transformer_blocks.* tensors)"
    runs, start = [], held[0]
    for prev, cur in zip(held, held[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return f"{len(held)} block{'s' if len(held) > 1 else ''} (transformer_blocks.{', '.join(runs)})"


def _width_checks(cfg: TransformerConfig):
    """``(tensor name, axis, the size config.json implies, the config fields saying so)`` for a few tensors
    whose shapes pin the config's widths."""
    inner = f"num_attention_heads * attention_head_dim = {cfg.num_attention_heads} * {cfg.attention_head_dim}"
    yield "patch_embed.text_proj.weight", 0, cfg.inner_dim, f"{inner} = {cfg.inner_dim}"
    yield "patch_embed.text_proj.weight", 1, cfg.text_embed_dim, f"text_embed_dim={cfg.text_embed_dim}"
    yield "time_embedding.linear_1.weight", 0, cfg.time_embed_dim, f"time_embed_dim={cfg.time_embed_dim}"
    if cfg.patch_size_t is None:  # a conv (inner, C, p, p)
        yield "patch_embed.proj.weight", 1, cfg.in_channels, f"in_channels={cfg.in_channels}"
        yield "patch_embed.proj.weight", 2, cfg.patch_size, f"patch_size={cfg.patch_size}"
    else:  # a linear over (C, p_t, p, p) patches
        yield ("patch_embed.proj.weight", 1, cfg.in_channels * cfg.patch_volume,
               f"in_channels * patch_size^2 * patch_size_t = {cfg.in_channels} * {cfg.patch_size}^2 * "
               f"{cfg.patch_size_t} = {cfg.in_channels * cfg.patch_volume}")
    yield ("proj_out.weight", 0, cfg.out_dim * cfg.patch_volume,
           f"out_channels * patch volume = {cfg.out_dim} * {cfg.patch_volume} = {cfg.out_dim * cfg.patch_volume}")


def _config_causes(state, cfg: TransformerConfig) -> list[str]:
    """What in ``cfg`` disagrees with the tensors ``state`` holds, in the config's terms: ``num_layers``
    against the blocks stored, widths against a few tensors' shapes (read from the file headers)."""
    names = set(state)
    causes = []
    held = sorted({int(m.group(1)) for k in names if (m := _BLOCK_INDEX.match(k))})
    if held != list(range(cfg.num_layers)):
        causes.append(f"config.json says num_layers={cfg.num_layers} but the weights hold {_blocks_phrase(held)}")
    shape_of = state.shape if isinstance(state, SafetensorsTensors) else (lambda k: tuple(np.shape(state[k])))
    for name, axis, want, fields in _width_checks(cfg):
        if name in names:
            shape = tuple(shape_of(name))
            if len(shape) > axis and shape[axis] != want:
                causes.append(f"config.json says {fields} but {name} has shape {shape} ({shape[axis]} on axis {axis})")
    return causes


def _check_state(state, cfg: TransformerConfig, expected, causes: list[str], context: str) -> None:
    """Raise a ``WeightMismatchError`` for ``causes`` and the tensors missing from / unexpected in ``state``,
    by their diffusers names. Names only: nothing is converted yet."""
    names = set(state)
    wanted = _expected_state_names(expected)
    missing, unexpected = sorted(wanted - names), sorted(names - wanted)
    if causes or missing or unexpected:
        notes = []
        if cfg.scan_layers and any(_BLOCK_INDEX.match(k) for k in missing):
            notes.append("(scan_layers stacks the blocks: with block tensors missing, a stacked weight would be an "
                         "incomplete stack)")
        raise WeightMismatchError(missing, unexpected, context=context, causes=causes, notes=notes)


def transformer_params_from_state(state, module, context: str, param_dtype=jnp.float32):
    from cogvideox_jax.models.transformer.transformer_3d import dummy_inputs

    causes = _config_causes(state, module.config)
    try:
        expected = abstract_params(module, *dummy_inputs(module.config),
                                   **({"ofs": jnp.zeros((1,))} if module.config.ofs_embed_dim else {}))
    except Exception as e:
        if causes:  # a config at odds with its weights may not even build: name what is at odds
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise WeightMismatchError(context=context, causes=causes,
                                      notes=[f"(the config does not build a model: {type(e).__name__}: {first})"]) from e
        raise
    _check_state(state, module.config, expected, causes, context)
    converted, unused = convert_transformer_state_dict(state, module.config)
    return assemble_params(converted, expected, unused_source_keys=unused, context=context, dtype=param_dtype)


def sharded_transformer_params(folder: str, module, shardings, param_dtype=jnp.float32, context: str = ""):
    """A diffusers transformer folder's weights placed straight onto ``shardings`` (a tree of
    ``NamedSharding`` for ``module``'s params): each process reads, from the safetensors files, only
    the slices its own devices hold (``get_slice``), transposed / stacked as ``tensor_target`` says and
    cast to ``param_dtype``. Checked like ``transformer_params_from_state`` before anything is read."""
    import jax

    from cogvideox_jax.models.transformer.transformer_3d import dummy_inputs

    state = read_folder(folder)
    context = context or f"transformer {folder}"
    cfg = module.config
    expected = abstract_params(module, *dummy_inputs(cfg), **({"ofs": jnp.zeros((1,))} if cfg.ofs_embed_dim else {}))
    _check_state(state, cfg, expected, _config_causes(state, cfg), context)
    sources: dict[tuple, dict] = {}
    for name in state:
        shape = state.shape(name)
        if (target := tensor_target(name, len(shape), cfg)) is not None:
            path, layer, layout = target
            sources.setdefault(path, {})[layer] = (name, layout, shape)
    flat_expected = traverse_util.flatten_dict(expected)
    mismatched = []
    for path, leaf in flat_expected.items():
        per_layer = sources[path]
        one = next(iter(per_layer.values()))
        got = tuple(_LAYOUTS[one[1]](np.empty(one[2], np.uint8)).shape)
        got = (len(per_layer), *got) if None not in per_layer else got
        if got != tuple(leaf.shape):
            mismatched.append(f"{'/'.join(path)}: {got} vs {tuple(leaf.shape)}")
    if mismatched:
        raise WeightMismatchError(shape_mismatches=mismatched, context=context)

    def read(name: str, layout: str, index: tuple) -> np.ndarray:
        """``_LAYOUTS[layout](tensor)[index]``, reading only that part of the tensor."""
        if layout == "id":
            return state.read_slice(name, index)
        if layout == "T":
            return state.read_slice(name, (index[1], index[0])).T
        if layout == "conv":  # kernel (h, w, i, o) = weight (o, i, h, w).transpose(2, 3, 1, 0)
            return state.read_slice(name, (index[3], index[2], index[0], index[1])).transpose(2, 3, 1, 0)
        return state.read_slice(name, (slice(0, 1), index[0], index[1]))[0]  # "pos": (1, L, D) -> (L, D)

    def leaf(path, shape, sharding):
        per_layer = sources[path]

        def shard(index):
            index = tuple(index) + (slice(None),) * (len(shape) - len(index))
            if None in per_layer:
                name, layout, _ = per_layer[None]
                x = read(name, layout, index)
            else:
                layers = range(*index[0].indices(shape[0]))
                x = np.stack([read(*per_layer[i][:2], index[1:]) for i in layers])
            return np.ascontiguousarray(x).astype(param_dtype, copy=False)

        return jax.make_array_from_callback(tuple(shape), sharding, shard)

    flat_shardings = traverse_util.flatten_dict(shardings)
    return traverse_util.unflatten_dict({path: leaf(path, leaf_.shape, flat_shardings[path])
                                         for path, leaf_ in flat_expected.items()})


def load_transformer(folder: str, dtype=jnp.float32, param_dtype=jnp.float32, mesh=None, **execution):
    """Load a diffusers transformer folder: returns ``(CogVideoXTransformer3D, params)``. ``execution``:
    execution options by their ``--set execution.*`` names (``EXECUTION_FIELDS``, e.g. ``scan_layers=True,
    matmul_dtype="bfloat16"``; ``None`` keeps the folder's / default value)."""
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D

    unknown = sorted(set(execution) - set(EXECUTION_FIELDS))
    if unknown:
        raise TypeError(f"load_transformer: {unknown} are not execution options {EXECUTION_FIELDS}")
    cfg = transformer_config_from_folder(folder, **{k: v for k, v in execution.items() if v is not None})
    module = CogVideoXTransformer3D(cfg, dtype=dtype, param_dtype=param_dtype, mesh=mesh)
    params = transformer_params_from_state(read_folder(folder), module, f"transformer {folder}", param_dtype)
    return module, params


def transformer_state_dict(params, cfg: TransformerConfig) -> dict[str, np.ndarray]:
    """The inverse: our params (scanned or unrolled) -> diffusers state dict (numpy)."""
    out = {}
    for path, value in traverse_util.flatten_dict(params).items():
        value = np.asarray(value)
        if path[0] == "transformer_blocks":  # scanned: unstack
            items = [((f"transformer_blocks_{i}",) + path[1:], value[i]) for i in range(value.shape[0])]
        else:
            items = [(path, value)]
        for p, v in items:
            if p == ("patch_embed", "proj_kernel"):
                out["patch_embed.proj.weight"] = np.ascontiguousarray(v.transpose(3, 2, 0, 1))
                continue
            if p == ("patch_embed", "proj_bias"):
                out["patch_embed.proj.bias"] = v
                continue
            if p == ("pos_embedding",):
                out["patch_embed.pos_embedding"] = v[None]
                continue
            *mod, leaf = p
            name = diffusers_module_name(mod)
            if leaf == "kernel":
                out[f"{name}.weight"] = np.ascontiguousarray(v.T)
            elif leaf == "scale":
                out[f"{name}.weight"] = v
            else:
                out[f"{name}.bias"] = v
    return out
