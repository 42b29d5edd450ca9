"""Paths that may be local folders or cloud URLs (``gs://bucket/run``), through ``etils.epath``.

Training workdirs, ``--init`` sources, exports and data roots go through these helpers instead of
``os.path`` / ``open``: ``os.path.abspath("gs://b/run")`` is the local folder ``./gs:/b/run``.
Orbax takes the same strings (it uses ``epath`` and TensorStore itself).
"""
from __future__ import annotations

import json
import os
import uuid

from etils import epath

from cogvideox_jax.errors import CheckpointFormatError


def is_url(path) -> bool:
    """``gs://…``, ``s3://…`` and other ``scheme://`` paths."""
    return "://" in str(path)


def absolute(path) -> str:
    """``path`` made absolute when local; URLs unchanged."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(os.path.expanduser(path))


def as_path(path) -> epath.Path:
    return epath.Path(absolute(path))


def join(path, *parts) -> str:
    return str(as_path(path).joinpath(*parts))


def exists(path) -> bool:
    return as_path(path).exists()


def isdir(path) -> bool:
    return as_path(path).is_dir()


def makedirs(path) -> str:
    p = as_path(path)
    p.mkdir(parents=True, exist_ok=True)
    return str(p)


def read_text(path) -> str:
    """The file's text; a file that is not UTF-8 is a ``ValueError`` naming it."""
    try:
        return as_path(path).read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a UTF-8 text file: {e}") from e


def read_json(path) -> dict:
    """The JSON object in the file ``path`` (UTF-8, local or a URL). A missing, unreadable, non-UTF-8 or
    malformed file, or one holding something other than an object, is a ``CheckpointFormatError`` naming it."""
    try:
        data = as_path(path).read_bytes()
    except OSError as e:
        raise CheckpointFormatError(f"cannot read {str(path)!r}: {e.strerror or e}") from e
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise CheckpointFormatError(
            f"{str(path)!r} is not UTF-8 text (byte {e.start} is {data[e.start:e.start + 1]!r}): the file is corrupt "
            "or not a JSON config") from e
    except json.JSONDecodeError as e:
        raise CheckpointFormatError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise CheckpointFormatError(f"{str(path)!r} must hold a JSON object, not a {type(value).__name__}")
    return value


def write_atomic(path, data: str | bytes) -> None:
    """Write a file under a temporary name in its folder, then rename it into place."""
    p = as_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f".{p.name}.tmp-{uuid.uuid4().hex[:8]}"
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(p)


def write_json(path, obj, **kw) -> None:
    write_atomic(path, json.dumps(obj, indent=kw.pop("indent", 2), **kw))


def cache_root() -> str:
    """Where remote inputs are copied to (``$COGVIDEOX_JAX_CACHE``, default ``~/.cache/cogvideox_jax``)."""
    return os.environ.get("COGVIDEOX_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cogvideox_jax")


def localize(path, parts=None) -> str:
    """A local folder holding ``path``'s files: ``path`` itself when local; for a URL, a copy under
    ``cache_root()/remote/`` (of the entries named in ``parts`` only, when given; a file URL gives the
    local file), made once and reused.

    Readers that need local files (safetensors' memory map, tokenizers, ffmpeg, ArrayRecord) take
    remote inputs through this. Orbax checkpoints are read from URLs directly and need no copy."""
    path = absolute(path)
    if not is_url(path):
        return path
    import hashlib

    src = as_path(path)
    dest = os.path.join(cache_root(), "remote", hashlib.sha256(path.encode()).hexdigest()[:16])
    os.makedirs(dest, exist_ok=True)
    if not src.is_dir():  # a single file: its copy
        local = os.path.join(dest, src.name)
        if not os.path.exists(local):
            _copy_tree(src, local)
        return local
    names = list(parts) if parts is not None else sorted(p.name for p in src.iterdir())
    for name in names:
        done = os.path.join(dest, f".complete-{name}")
        if os.path.exists(done) or not (src / name).exists():
            continue
        _copy_tree(src / name, os.path.join(dest, name))
        open(done, "w").close()
    return dest


def _copy_tree(src: epath.Path, dst: str) -> None:
    import shutil

    if src.is_dir():
        os.makedirs(dst, exist_ok=True)
        for child in src.iterdir():
            _copy_tree(child, os.path.join(dst, child.name))
        return
    tmp = f"{dst}.tmp-{uuid.uuid4().hex[:8]}"
    with src.open("rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 16 << 20)
    os.replace(tmp, dst)


def upload_tree(local: str, url: str) -> None:
    """Copy the local folder ``local`` to ``url``, file by file, each folder's subfolders before its own
    files (so a top-level marker such as ``cogvideox_jax.json`` or ``model_index.json`` lands last)."""
    import shutil

    dst = as_path(url)
    dst.mkdir(parents=True, exist_ok=True)
    names = sorted(os.listdir(local), key=lambda n: (not os.path.isdir(os.path.join(local, n)), n))
    for name in names:
        src = os.path.join(local, name)
        if os.path.isdir(src):
            upload_tree(src, str(dst / name))
        else:
            with open(src, "rb") as fin, (dst / name).open("wb") as fout:
                shutil.copyfileobj(fin, fout, 16 << 20)
