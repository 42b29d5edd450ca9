"""Where a training run's weights start: ``train --init PATH`` (``TrainConfig.init_from``).

PATH may be
  * a diffusers CogVideoX pipeline root (``model_index.json``: its ``transformer/``; its VAE, T5,
    tokenizer and scheduler are then the run's pipeline, for encoding, validation and export),
  * a diffusers ``transformer/`` folder (its parent is the pipeline when it is a pipeline root),
  * a ``cogvideox-jax convert`` checkpoint (``cogvideox_jax.json``; also a pipeline),
  * a ``cogvideox-jax train`` workdir (``run.json``): the model of its latest step, as ``export``
    gives it (the EMA's when the run keeps one, a LoRA run's adapters merged); its pipeline.

The transformer's architecture comes from PATH's config; a named preset (``TrainConfig.model``) that
disagrees with it is an error naming the fields (``model="auto"`` takes PATH's). Everything that can
be checked without reading weights is checked by ``resolve_init``, before a workdir is touched.
The weights go to the mesh shard by shard, in the run's param dtype: from safetensors and from a
``convert`` checkpoint in the model's block layout each process reads only the slices its devices hold;
a checkpoint in the other layout and a train workdir go through a host copy (``place_params``).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from cogvideox_jax import paths


class InitError(ValueError):
    """An ``--init`` source that cannot be used (missing, not CogVideoX, or not the configured model)."""


@dataclasses.dataclass(frozen=True)
class InitSource:
    path: str                      # absolute path or URL
    kind: str                      # "diffusers" | "transformer" | "checkpoint" | "workdir"
    transformer_config: dict       # the transformer's diffusers-style config.json
    pipeline: str | None = None    # VAE / T5 / tokenizer / scheduler source (diffusers root or checkpoint)
    step: int | None = None        # "workdir": the step its weights come from

    def describe(self) -> dict:
        return {"path": self.path, "kind": self.kind, "pipeline": self.pipeline, "step": self.step}


_EXPECTED = ("a diffusers CogVideoX pipeline folder (model_index.json), its transformer/ folder (config.json of a "
             "CogVideoXTransformer3DModel), a `cogvideox-jax convert` checkpoint (cogvideox_jax.json) or a "
             "`cogvideox-jax train` workdir (run.json)")


def _config(path: str, what: str) -> dict:
    if not paths.exists(path):
        raise InitError(f"--init: {what} has no {path}")
    try:
        config = paths.read_json(path)
    except ValueError as e:
        raise InitError(f"--init: {e}") from e
    if not isinstance(config, dict):
        raise InitError(f"--init: {path} does not hold a JSON object")
    return config


def _transformer_json(folder: str, what: str) -> dict:
    config = _config(paths.join(folder, "config.json"), what)
    if config.get("_class_name", "CogVideoXTransformer3DModel") != "CogVideoXTransformer3DModel":
        raise InitError(f"--init: {folder}/config.json describes a {config.get('_class_name')!r}, not a "
                        "CogVideoXTransformer3DModel")
    return config


def resolve_init(path: str) -> InitSource:
    """Recognise ``path`` and read its transformer config (no weights are read)."""
    from cogvideox_jax.convert.pipeline_checkpoint import MARKER
    from cogvideox_jax.train.run_workdir import RUN_FILE, pick_step, read_manifest

    root = paths.absolute(path)
    if not paths.exists(root):
        raise InitError(f"--init {path}: no such file or folder")
    if not paths.isdir(root):
        raise InitError(f"--init {path} is a file; expected {_EXPECTED}")
    if paths.exists(paths.join(root, "model_index.json")):
        tconf = _transformer_json(paths.join(root, "transformer"), f"the diffusers pipeline {root}")
        source = InitSource(root, "diffusers", tconf, pipeline=root)
    elif paths.exists(paths.join(root, MARKER)):
        tconf = _transformer_json(paths.join(root, "transformer"), f"the checkpoint {root}")
        source = InitSource(root, "checkpoint", tconf, pipeline=root)
    elif paths.exists(paths.join(root, RUN_FILE)):
        try:
            manifest = read_manifest(root)
            step = pick_step(root, None)
        except (ValueError, FileNotFoundError) as e:
            raise InitError(f"--init {path}: {e}") from e
        if not manifest.get("transformer"):
            raise InitError(f"--init {path}: that run's model is not a CogVideoX transformer")
        source = InitSource(root, "workdir", manifest["transformer"], pipeline=manifest.get("pipeline"), step=step)
    elif paths.exists(paths.join(root, "config.json")):
        tconf = _transformer_json(root, root)
        parent = str(paths.as_path(root).parent)
        pipeline = parent if paths.exists(paths.join(parent, "model_index.json")) else None
        source = InitSource(root, "transformer", tconf, pipeline=pipeline)
    else:
        raise InitError(f"--init {path} is not {_EXPECTED}")
    transformer_config(source)  # a config.json our TransformerConfig cannot take is an error now
    return source


def transformer_config(source: InitSource, execution: dict | None = None):
    """``TransformerConfig`` of the source, with ``execution`` options (scan, remat, ...) applied."""
    from configs.transformer import TransformerConfig

    try:
        return TransformerConfig.from_diffusers_config({**source.transformer_config, **(execution or {})})
    except (TypeError, ValueError) as e:
        raise InitError(f"--init {source.path}: its transformer config is not one this project runs: {e}") from e


def check_preset(model: str, config, source: InitSource) -> None:
    """A preset named by ``TrainConfig.model`` must describe the same transformer as the source."""
    from configs.transformer import PRESETS

    if model in ("", "auto"):
        return
    if model not in PRESETS:
        raise InitError(f"model={model!r} is not a transformer preset ({', '.join(sorted(PRESETS))}); with --init "
                        "use model=auto to take the architecture from the init weights")
    want, got = PRESETS[model].to_diffusers_config(), config.to_diffusers_config()
    diffs = [f"{k}: preset {want.get(k)!r}, init {got.get(k)!r}" for k in sorted(set(want) | set(got))
             if want.get(k) != got.get(k)]
    if diffs:
        raise InitError(f"model preset {model!r} disagrees with the transformer of --init {source.path} in "
                        f"{len(diffs)} field(s): " + "; ".join(diffs)
                        + ". Set model=auto (--set model=auto) to train the init's architecture, or pick its preset.")


def host_init_params(source: InitSource, module, param_dtype) -> dict:
    """The source's transformer weights as host arrays in ``module``'s block layout and ``param_dtype``."""
    from cogvideox_jax.convert.host_arrays import as_aligned
    from cogvideox_jax.convert.pipeline_checkpoint import read_component
    from cogvideox_jax.convert.safetensors_io import read_folder
    from cogvideox_jax.convert.transformer import transformer_params_from_state
    from cogvideox_jax.pipeline.components import relayout_blocks

    if source.kind in ("diffusers", "transformer"):
        folder = paths.join(source.path, "transformer") if source.kind == "diffusers" else source.path
        return transformer_params_from_state(read_folder(paths.localize(folder)), module, f"--init {folder}",
                                             param_dtype)
    if source.kind == "checkpoint":
        _, params = read_component(paths.localize(source.path, ["transformer"]), "transformer")
    else:
        from cogvideox_jax.train.run_workdir import model_weights

        _, params, _ = model_weights(source.path, source.step)
    params = relayout_blocks(params, module.config.scan_layers)
    _check_tree(params, module, source)
    return jax.tree_util.tree_map(lambda x: as_aligned(np.asarray(x), param_dtype), params)


def _check_tree(params, module, source: InitSource) -> None:
    from flax import traverse_util

    from cogvideox_jax.errors import WeightMismatchError
    from cogvideox_jax.convert.tree_check import abstract_params
    from cogvideox_jax.models.transformer.transformer_3d import dummy_inputs

    kw = {"ofs": np.zeros((1,), np.float32)} if module.config.ofs_embed_dim else {}
    expected = traverse_util.flatten_dict(abstract_params(module, *dummy_inputs(module.config), **kw), sep="/")
    got = traverse_util.flatten_dict(params, sep="/")
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    mismatched = [f"{k}: {tuple(got[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
                  if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        raise WeightMismatchError(missing, unexpected, mismatched, context=f"--init {source.path}")


def load_init_params(source: InitSource, module, shardings, param_dtype):
    """The source's transformer weights placed on ``shardings`` (a tree of ``NamedSharding``)."""
    from cogvideox_jax.parallel.param_sharding import place_params

    if source.kind in ("diffusers", "transformer"):
        from cogvideox_jax.convert.transformer import sharded_transformer_params

        folder = paths.join(source.path, "transformer") if source.kind == "diffusers" else source.path
        return sharded_transformer_params(paths.localize(folder), module, shardings, param_dtype,
                                          context=f"--init {folder}")
    if source.kind == "checkpoint":
        placed = _restore_checkpoint_shards(source, module, shardings, param_dtype)
        if placed is not None:
            return placed
    return place_params(host_init_params(source, module, param_dtype), shardings)


def reads_shards(source: InitSource, module) -> bool:
    """Whether ``load_init_params`` reads only each process's shards (diffusers safetensors slice by
    slice; a ``convert`` checkpoint in the module's block layout through orbax) rather than a host copy
    of all the weights (a checkpoint in the other block layout, a train workdir)."""
    import orbax.checkpoint as ocp

    if source.kind in ("diffusers", "transformer"):
        return True
    if source.kind != "checkpoint":
        return False
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.metadata(paths.join(source.path, "transformer", "params")).item_metadata.tree
    return ("transformer_blocks" in tree) == bool(module.config.scan_layers)


def _restore_checkpoint_shards(source: InitSource, module, shardings, param_dtype):
    """A ``convert`` checkpoint stored in the module's block layout, restored by orbax shard by shard
    (each process reads only what its devices hold); ``None`` when the layouts differ."""
    import orbax.checkpoint as ocp

    if not reads_shards(source, module):
        return None
    folder = paths.join(source.path, "transformer", "params")
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.metadata(folder).item_metadata.tree
        shapes = jax.tree_util.tree_map(lambda m: tuple(m.shape), tree)
        target = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s, param_dtype, sharding=sh), shapes,
                                        shardings, is_leaf=lambda x: isinstance(x, tuple))
        return ckptr.restore(folder, target)


def init_probe(spec, cfg):
    """Batch-1 ``(latent shape, text shape)`` the transformer is initialised (and shaped) with: the first
    stage's latents, their frames padded to the model's ``patch_size_t``."""
    from cogvideox_jax.train.latent_frame_padding import padded_frames
    from cogvideox_jax.train.trainer import latent_shape

    t, h, w, c = latent_shape(cfg.stages[0], spec.latent_channels)
    return (1, padded_frames(t, spec.patch_size_t), h, w, c), (1, cfg.text_len, spec.text_dim)


def random_base_params(spec, cfg, shardings=None):
    """The random initial transformer of ``cfg`` (its seed's ``k_init``), as the trainer draws it."""
    from cogvideox_jax.train.model_factory import init_params

    probe = init_probe(spec, cfg)
    k_init = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)[0]
    init = jax.jit(lambda k: init_params(spec, k, *probe), out_shardings=shardings)
    return init(k_init)


def base_host_params(manifest: dict, tcfg) -> dict:
    """A LoRA run's frozen base as host arrays, rebuilt from its manifest (its ``--init`` source, or
    its random init), checked against the fingerprint the run recorded."""
    import jax.numpy as jnp

    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D
    from cogvideox_jax.train.model_factory import spec_for_transformer
    from cogvideox_jax.train.params_fingerprint import params_fingerprint

    dtype = jnp.dtype(manifest.get("param_dtype", "float32"))
    module = CogVideoXTransformer3D(tcfg, param_dtype=dtype)
    init = manifest.get("init")
    if init:
        params = host_init_params(resolve_init(init["path"]), module, dtype)
    else:
        cfg = train_config_from_dict(manifest["config"])
        params = jax.tree_util.tree_map(np.asarray, random_base_params(spec_for_transformer(module), cfg))
    want = (manifest.get("base") or {}).get("fingerprint")
    if want and params_fingerprint(params) != want:
        raise InitError(f"the frozen base of this LoRA run ({(init or {}).get('path', 'its random init')}) no "
                        f"longer has the fingerprint the run recorded ({want}): its weights changed")
    return params


def train_config_from_dict(d: dict):
    """A ``TrainConfig`` back from ``dataclasses.asdict`` (a manifest's ``config``)."""
    from configs.train_config import (CheckpointConfig, DataConfig, LoraConfig, ModelExecutionConfig,
                                      OptimizerConfig, StageConfig, TrainConfig, ValidationConfig)

    nested = {"execution": ModelExecutionConfig, "optimizer": OptimizerConfig, "checkpoint": CheckpointConfig,
              "data": DataConfig, "validation": ValidationConfig}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in d.items() if k in fields}
    for name, cls in nested.items():
        if isinstance(kw.get(name), dict):
            sub = {f.name for f in dataclasses.fields(cls)}
            kw[name] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kw[name].items() if k in sub})
    if isinstance(kw.get("lora"), dict):
        kw["lora"] = LoraConfig(**{**kw["lora"], "targets": tuple(kw["lora"]["targets"])})
    kw["stages"] = tuple(StageConfig(**s) for s in kw.get("stages", ()))
    return TrainConfig(**kw)
