"""A ``cogvideox-jax train`` workdir as something to read: its manifest and the model of any step.

    WORKDIR/run.json                   the manifest: train config, transformer config, where the
                                       weights started (``init``), the pipeline the run's VAE / T5 /
                                       tokenizer / scheduler come from, LoRA settings, base fingerprint
    WORKDIR/checkpoints/<step>/state   orbax TrainState (a LoRA run's holds no frozen base)
    WORKDIR/logs/, WORKDIR/validation/

``model_weights(workdir, step)`` gives the transformer's host params at a step, the way ``export``
and ``train --init WORKDIR`` see them: the EMA's when the run keeps one (``use_ema=False``: the
trained params), a LoRA run's adapters merged into its base, in the run's param dtype.
"""
from __future__ import annotations

import jax
import numpy as np

from cogvideox_jax import paths

RUN_FILE = "run.json"
RUN_FORMAT = "cogvideox-jax-train-run"


def is_train_workdir(path) -> bool:
    return paths.exists(paths.join(path, RUN_FILE))


def write_manifest(workdir, manifest: dict) -> None:
    paths.write_json(paths.join(workdir, RUN_FILE), {"format": RUN_FORMAT, "version": 1, **manifest},
                     sort_keys=True, default=str)


def read_manifest(workdir) -> dict:
    path = paths.join(workdir, RUN_FILE)
    if not paths.exists(path):
        raise FileNotFoundError(f"{workdir} is not a `cogvideox-jax train` workdir (no {RUN_FILE})")
    manifest = paths.read_json(path)
    if manifest.get("format") != RUN_FORMAT:
        raise ValueError(f"{path}: not a train run manifest (format {manifest.get('format')!r})")
    return manifest


def checkpoint_dir(workdir) -> str:
    return paths.join(workdir, "checkpoints")


def checkpoint_steps(workdir) -> list[int]:
    """Finished checkpoint steps (orbax renames a step folder into place only once it is complete)."""
    root = paths.as_path(checkpoint_dir(workdir))
    if not root.exists():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "state").exists())


def pick_step(workdir, step: int | None) -> int:
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"{workdir} has no finished checkpoint in {checkpoint_dir(workdir)}")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise ValueError(f"{workdir} has no checkpoint of step {step}; it has steps {steps}")
    return step


def restore_state_items(workdir, step: int, names=("params", "ema")) -> dict:
    """Host (numpy) copies of the named ``TrainState`` fields of a step (only those are read)."""
    import orbax.checkpoint as ocp

    path = paths.join(checkpoint_dir(workdir), str(step), "state")
    with ocp.PyTreeCheckpointer() as ckptr:
        tree = ckptr.metadata(path).item_metadata.tree
        item = {n: tree[n] for n in names if n in tree}
        restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        return ckptr.restore(path, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                               partial_restore=True))


def trained_tree(workdir, step: int, use_ema: bool = True) -> tuple[dict, str]:
    """``(tree, which)``: the step's EMA (``which="ema"``) when the run keeps one and ``use_ema``, else
    its trainable params; for a LoRA run these are the adapters."""
    items = restore_state_items(workdir, step)
    ema = items.get("ema")
    if use_ema and ema:
        return ema, "ema"
    return items["params"], "params"


def model_weights(workdir, step: int | None = None, *, use_ema: bool = True):
    """``(TransformerConfig, host params, info)`` of the transformer at ``step`` (default latest).

    ``info``: ``{"step", "weights": "ema" | "params", "lora": bool, "manifest"}``."""
    from configs.transformer import TransformerConfig
    from cogvideox_jax.train import lora as lora_lib

    manifest = read_manifest(workdir)
    if not manifest.get("transformer"):
        raise ValueError(f"{workdir}: this run's model is not a CogVideoX transformer (model "
                         f"{manifest.get('config', {}).get('model')!r}); nothing to export")
    tcfg = TransformerConfig.from_diffusers_config(manifest["transformer"])
    step = pick_step(workdir, step)
    tree, which = trained_tree(workdir, step, use_ema)
    dtype = np.dtype(manifest.get("param_dtype", "float32"))
    lora = manifest.get("lora")
    if lora:
        from cogvideox_jax.train.init_source import base_host_params

        base = base_host_params(manifest, tcfg)
        scale = lora_lib.lora_scale(lora["rank"], lora["alpha"])
        params = lora_lib.merge_lora(base, tree, scale)
    else:
        params = tree
    params = jax.tree_util.tree_map(lambda x: np.asarray(x).astype(dtype, copy=False), params)
    return tcfg, params, {"step": step, "weights": which, "lora": bool(lora), "manifest": manifest}


def lora_weights(workdir, step: int | None = None, *, use_ema: bool = True):
    """``(lora tree (host), scale, info)`` of a LoRA run's adapters at ``step``."""
    from cogvideox_jax.train import lora as lora_lib

    manifest = read_manifest(workdir)
    lora = manifest.get("lora")
    if not lora:
        raise ValueError(f"{workdir} is a full fine-tuning run (no LoRA): export its model with "
                         "--checkpoint-out / --diffusers-out")
    step = pick_step(workdir, step)
    tree, which = trained_tree(workdir, step, use_ema)
    return tree, lora_lib.lora_scale(lora["rank"], lora["alpha"]), {"step": step, "weights": which,
                                                                     "manifest": manifest}
