"""Hugging Face Hub ids as pipeline paths: ``from_pretrained("THUDM/CogVideoX-5b")``,
``cogvideox-jax sample --diffusers THUDM/CogVideoX-5b``, ``convert --diffusers <id>``.

``components.local_pipeline`` sends every path that looks like a Hub id (``org/name``) and is not a
local folder here; a local folder of that name wins. ``snapshot`` resolves it with
``huggingface_hub.snapshot_download`` into the standard HF cache (``HF_HUB_CACHE`` / ``HF_HOME``,
read when called), fetching only what the requested components need: first the top-level
``model_index.json`` / ``cogvideox_jax.json`` / ``sampling.json`` (which tell a diffusers pipeline
from a cogvideox-jax checkpoint), then for a diffusers pipeline the tokenizer, the scheduler config
and each requested component's ``*.json`` and ``*.safetensors`` (no ``.bin`` / ``.pt`` duplicates,
no fp16 / bf16 variants), for a cogvideox-jax checkpoint those folders whole. ``revision``: a branch,
tag or commit. Offline (``HF_HUB_OFFLINE=1``), only the local cache is read; an id found in neither
place is an error naming it.
"""
from __future__ import annotations

import os
import re

ROOT_FILES = ("model_index.json", "cogvideox_jax.json", "sampling.json")
WEIGHT_VARIANTS = ("*.fp16.safetensors", "*.fp16-*.safetensors", "*.bf16.safetensors", "*.bf16-*.safetensors")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class HubResolutionError(FileNotFoundError):
    """A Hub id that could not be resolved (not a local folder, not downloadable / not in the cache)."""


def is_hub_id(path) -> bool:
    """``org/name`` that is not an existing local path (nor a URL, nor ``./x`` / ``/x`` / ``~/x``)."""
    path = os.fspath(path)
    return bool(_ID.match(path)) and not path.startswith(".") and not os.path.exists(path)


def offline() -> bool:
    """``HF_HUB_OFFLINE`` as the hub client reads it, looked up now (not at import)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> str | None:
    """The HF hub cache as the environment says now (``None``: the client's default)."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return os.path.expanduser(env[var])
    if env.get("HF_HOME"):
        return os.path.join(os.path.expanduser(env["HF_HOME"]), "hub")
    return None


def allow_patterns(names, *, diffusers: bool = True) -> list[str]:
    """The files a pipeline with the components ``names`` needs (relative to the repo root)."""
    patterns = list(ROOT_FILES) + ["tokenizer/*", "scheduler/*"]
    for name in names:
        patterns += [f"{name}/*.json", f"{name}/*.safetensors"] if diffusers else [f"{name}/*"]
    return patterns


def snapshot(repo_id: str, names=("transformer", "vae", "text_encoder"), *, revision: str | None = None) -> str:
    """The local snapshot folder of ``repo_id`` holding ``names`` (downloaded as needed, see the module doc)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as e:  # pragma: no cover - a dependency of transformers
        raise HubResolutionError(f"{repo_id!r} is not a local folder, and huggingface_hub (needed to resolve Hub "
                                 "ids) is not installed: pip install huggingface_hub") from e
    is_offline = offline()
    kw = dict(revision=revision, cache_dir=cache_dir(), local_files_only=is_offline)
    where = f"{repo_id!r}" + (f" (revision {revision!r})" if revision else "")
    try:
        folder = snapshot_download(repo_id, allow_patterns=list(ROOT_FILES), **kw)
        if not is_offline:
            diffusers = not os.path.exists(os.path.join(folder, "cogvideox_jax.json"))
            ignore = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5", "*.onnx"]
            folder = snapshot_download(repo_id, allow_patterns=allow_patterns(names, diffusers=diffusers),
                                       ignore_patterns=ignore + (list(WEIGHT_VARIANTS) if diffusers else []), **kw)
    except LocalEntryNotFoundError as e:
        raise HubResolutionError(
            f"{where} is neither a local folder nor in the Hugging Face cache ({cache_dir() or 'default location'})"
            + (", and HF_HUB_OFFLINE is set: download it once online (unset HF_HUB_OFFLINE), or pass a local "
               "pipeline folder" if is_offline else ", and it could not be downloaded (no connection?)")) from e
    except HfHubHTTPError as e:  # RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError, ...
        raise HubResolutionError(f"{where} is not a local folder and could not be fetched from the Hugging Face "
                                 f"Hub: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    missing = [n for n in names if not os.path.isdir(os.path.join(folder, n))]
    if missing or not any(os.path.exists(os.path.join(folder, f)) for f in ROOT_FILES[:2]):
        raise HubResolutionError(
            f"{where} resolved to {folder}, which has no "
            + (f"{', '.join(missing)} folder(s)" if missing else "model_index.json / cogvideox_jax.json")
            + (" (offline: only what an earlier download put in the cache is there)" if is_offline else
               " (not a CogVideoX pipeline repository?)"))
    return folder
