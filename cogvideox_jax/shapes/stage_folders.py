"""The ``train-shapes`` workdir's stage folders: which are complete and up to date, which resume.

Each stage writes one folder. It is complete when it holds ``.done``; its ``settings.json`` records
the recipe fields its output depends on and the keys of the stages it reads (``STAGE_DEPENDENCIES``),
and its key hashes both, so a changed field redoes that stage and every stage after it that reads it.
A checkpointed training stage's partial folder is kept and resumed when its key is unchanged, and its
``attempt.json`` lets the resumed run count the time spent before the interruption.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil

STAGES = ("dataset", "tokenizer", "text_encoder", "vae", "vae_decoder", "latents", "transformer", "checkpoint",
          "eval")
DONE = ".done"
# Recipe fields added after stage keys were introduced: they enter a stage's settings only when set
# away from their default, so the stages of a workdir written before them keep their keys (and are
# not redone by a rerun) unless the new option is used.
ADDED_SINCE_KEYS = ("transformer.matmul_dtype", "transformer_train.execution")
SETTINGS = "settings.json"           # a stage's key, settings and input stages' keys (``stage_record``)
# What each stage's output depends on: the recipe fields (dotted paths) and the stages it reads. A
# stage's key hashes both, its inputs by their keys, so a changed field reruns that stage and every
# stage after it that reads it, and nothing else.
STAGE_DEPENDENCIES = {
    "dataset": (("dataset",), ()),
    "tokenizer": (("tokenizer", "t5.vocab_size"), ("dataset",)),
    "text_encoder": (("t5", "dataset.seed"), ()),
    "vae": (("vae_train", "vae"), ("dataset",)),
    "vae_decoder": (("vae_decoder_train", "vae"), ("dataset", "vae")),
    "latents": (("vae", "t5", "transformer.max_text_seq_length"),
                ("dataset", "vae_decoder", "tokenizer", "text_encoder")),
    "transformer": (("transformer_train", "transformer", "object_loss_weight", "object_threshold"), ("latents",)),
    "checkpoint": (("sampling", "transformer", "vae", "t5", "transformer_train.snr_shift_scale"),
                   ("transformer", "vae_decoder", "text_encoder", "tokenizer", "latents")),
    "eval": (("evaluation", "sampling", "vae"), ("checkpoint", "dataset", "vae_decoder")),
}
# the training stages that write orbax checkpoints, and where: an interrupted one resumes from its
# last checkpoint when its key is unchanged
CHECKPOINTED_STAGES = {"vae": "checkpoints", "vae_decoder": "checkpoints", "transformer": "run/checkpoints"}
ATTEMPT = "attempt.json"             # a checkpointed stage's current run: when it started, and the seconds before it


def is_done(path: str) -> bool:
    return os.path.exists(os.path.join(path, DONE))


def mark_done(path: str, info: dict | None = None) -> None:
    with open(os.path.join(path, DONE), "w") as f:
        json.dump(info or {}, f)


def fresh_folder(path: str) -> str:
    """Remove a partial stage folder and recreate it."""
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def _field(recipe, dotted: str):
    value = recipe
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


def _field_default(recipe, dotted: str):
    parent, name = dotted.rsplit(".", 1)
    spec = type(_field(recipe, parent)).__dataclass_fields__[name]
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default


def stage_settings(recipe, stage: str) -> dict:
    """The recipe fields ``stage``'s output depends on (``STAGE_DEPENDENCIES``), as JSON values; an
    ``ADDED_SINCE_KEYS`` field only when it is set away from its default."""
    fields = {name: _field(recipe, name) for name in STAGE_DEPENDENCIES[stage][0]}
    as_json = json.loads(json.dumps({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                                     for k, v in fields.items()}, default=str))
    for dotted in ADDED_SINCE_KEYS:
        top, *inner = dotted.split(".")
        if top in as_json and _field(recipe, dotted) == _field_default(recipe, dotted):
            parent = as_json[top]
            for name in inner[:-1]:
                parent = parent[name]
            del parent[inner[-1]]
    return as_json


def stage_record(recipe, stage: str, keys: dict) -> dict:
    """``stage``'s settings, its input stages' keys (``keys``: those of the stages before it) and its own
    key, a hash of the two."""
    record = {"settings": stage_settings(recipe, stage),
              "inputs": {name: keys[name] for name in STAGE_DEPENDENCIES[stage][1]}}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return {"key": digest, **record}


def saved_key(path: str) -> str | None:
    """The key a stage folder was written with; None for a folder from before stage keys (or none)."""
    try:
        with open(os.path.join(path, SETTINGS)) as f:
            return json.load(f).get("key")
    except (OSError, ValueError):
        return None


def write_record(path: str, record: dict) -> None:
    with open(os.path.join(path, SETTINGS), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)


def up_to_date(path: str, record: dict) -> bool | None:
    """A complete stage folder: True when written with ``record``'s key, or by a recipe from before
    stage keys (which is trusted); False when its settings or inputs changed since. None: not complete."""
    if not is_done(path):
        return None
    saved = saved_key(path)
    return saved is None or saved == record["key"]


def prepare_stage(stage: str, path: str, record: dict) -> bool:
    """Make ``path`` ready for ``stage``. A checkpointed stage's partial folder is kept when it holds a
    checkpoint written under the same key, the same settings and inputs (its training then restores
    the latest one); any other folder is removed. Returns whether the folder was kept."""
    if stage in CHECKPOINTED_STAGES:
        checkpoints = os.path.join(path, CHECKPOINTED_STAGES[stage])
        if os.path.isdir(checkpoints) and os.listdir(checkpoints):
            if saved_key(path) == record["key"]:
                print(f"[{stage}] resuming the interrupted run from its last checkpoint ({checkpoints})", flush=True)
                if os.path.exists(os.path.join(path, "params")):  # the run writes it at its end (maybe half-written)
                    shutil.rmtree(os.path.join(path, "params"))
                return True
            print(f"[{stage}] its settings or inputs changed since the interrupted run: starting it over",
                  flush=True)
    if stage == "dataset":  # make_dataset writes the folder itself
        if os.path.exists(path):
            shutil.rmtree(path)
        return False
    fresh_folder(path)
    if stage in CHECKPOINTED_STAGES:  # written before training, so that an interrupted run can be resumed
        write_record(path, record)
    return False


def _latest_checkpoint_time(checkpoints: str) -> float | None:
    """When the newest checkpoint in ``checkpoints`` (orbax step folders) was last written; None if none."""
    steps = [d for d in os.listdir(checkpoints) if d.isdigit()] if os.path.isdir(checkpoints) else []
    if not steps:
        return None
    newest = os.path.join(checkpoints, max(steps, key=int))
    times = [os.path.getmtime(os.path.join(root, f)) for root, _, files in os.walk(newest) for f in files]
    return max(times, default=os.path.getmtime(newest))


def seconds_before_interruption(stage: str, path: str) -> float | None:
    """The wall time an interrupted checkpointed stage had spent up to the checkpoint it resumes from:
    the earlier runs' share (``attempt.json``) plus the interrupted run's, from its start to its newest
    checkpoint (its work after that checkpoint is redone, so it is not counted). None when unknown
    (a folder from before ``attempt.json``, or no checkpoint)."""
    try:
        with open(os.path.join(path, ATTEMPT)) as f:
            attempt = json.load(f)
    except (OSError, ValueError):
        return None
    written = _latest_checkpoint_time(os.path.join(path, CHECKPOINTED_STAGES[stage]))
    if written is None:
        return None
    return round(attempt.get("earlier_seconds", 0.0) + max(0.0, written - attempt["started"]), 1)
