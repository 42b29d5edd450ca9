"""Read PyTorch weights from safetensors files with numpy only (no torch).

Handles a single ``*.safetensors`` file or a sharded checkpoint described by a
``*.safetensors.index.json``; bf16 tensors come back as ``ml_dtypes.bfloat16`` arrays.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Mapping

import numpy as np

from cogvideox_jax.errors import CheckpointFormatError
from cogvideox_jax.paths import read_json

# Names diffusers / transformers use for their weight files, in order of preference.
WEIGHT_FILE_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
)
INDEX_FILE_NAMES = (
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors.index.json",
)


def find_weight_files(folder: str) -> list[str]:
    """Return the safetensors files holding a model's weights in ``folder``.

    Prefers an index file (sharded checkpoint), then the standard single-file names, then
    any lone ``*.safetensors`` file.
    """
    if not os.path.isdir(folder):
        raise CheckpointFormatError(f"{folder!r} is not a directory")
    for name in INDEX_FILE_NAMES:
        index_path = os.path.join(folder, name)
        if os.path.exists(index_path):
            try:
                weight_map = read_json(index_path)["weight_map"]
            except KeyError as e:
                raise CheckpointFormatError(f"corrupt index file {index_path}: no {e} entry") from e
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not os.path.exists(os.path.join(folder, f))]
            if missing:
                raise CheckpointFormatError(f"index {index_path} names missing shard files: {missing}")
            return [os.path.join(folder, f) for f in files]
    for name in WEIGHT_FILE_NAMES:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return [path]
    candidates = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if len(candidates) == 1:
        return [os.path.join(folder, candidates[0])]
    raise CheckpointFormatError(
        f"no safetensors weights found in {folder!r} (expected one of "
        f"{WEIGHT_FILE_NAMES + INDEX_FILE_NAMES}; found {candidates or 'none'}). "
        "PyTorch .bin checkpoints are not read: re-save with safe_serialization=True."
    )


class SafetensorsTensors(Mapping):
    """``{name: np.ndarray}`` over one or more safetensors files, each tensor read when accessed.

    The files' headers are read (and validated) up front. A tensor is read by opening its file for
    that tensor alone: safetensors maps the whole file, and every mapped page read stays in the
    process's resident memory while the file is open, so reading a checkpoint through one open
    handle costs the checkpoint twice (its pages plus the copies). Converters take the tensors one
    at a time, so a load holds the converted weights plus about one tensor.
    """

    def __init__(self, paths: Iterable[str]):
        self._file_of: dict[str, str] = {}
        for path in paths:
            for key in self._open(path, lambda f: list(f.keys())):
                if key in self._file_of:
                    raise CheckpointFormatError(f"tensor {key!r} appears in more than one shard ({path})")
                self._file_of[key] = path

    @staticmethod
    def _open(path: str, read):
        from safetensors import safe_open

        try:
            with safe_open(path, framework="np") as f:
                return read(f)
        except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError
            raise CheckpointFormatError(
                f"cannot read safetensors file {path!r}: {type(e).__name__}: {e}. "
                "The file is corrupt, truncated or not a safetensors file."
            ) from e

    def only(self, prefixes: Iterable[str]) -> "SafetensorsTensors":
        """The tensors whose names start with one of ``prefixes`` (nothing is read)."""
        prefixes = tuple(prefixes)
        out = SafetensorsTensors(())
        out._file_of = {k: p for k, p in self._file_of.items() if k.startswith(prefixes)}
        return out

    def __getitem__(self, key: str) -> np.ndarray:
        return self._open(self._file_of[key], lambda f: f.get_tensor(key))

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor ``key``, from its file's header (no data is read)."""
        return tuple(self._open(self._file_of[key], lambda f: f.get_slice(key).get_shape()))

    def read_slice(self, key: str, index: tuple) -> np.ndarray:
        """``tensor[index]`` (a tuple of slices / ints) read from the file without reading the rest."""
        return self._open(self._file_of[key], lambda f: f.get_slice(key)[index])

    def __contains__(self, key) -> bool:  # Mapping's default would read the tensor
        return key in self._file_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._file_of)

    def __len__(self) -> int:
        return len(self._file_of)


def read_safetensors(paths: str | Iterable[str]) -> SafetensorsTensors:
    """The tensors of one or more safetensors files as a lazy ``{name: np.ndarray}`` mapping."""
    return SafetensorsTensors([paths] if isinstance(paths, str) else paths)


def read_folder(folder: str) -> SafetensorsTensors:
    """Read all weights of a diffusers / transformers model folder."""
    return read_safetensors(find_weight_files(folder))


def read_config(folder: str) -> dict:
    """``folder/config.json`` as a dict (``read_json``)."""
    path = os.path.join(folder, "config.json")
    if not os.path.exists(path):
        raise CheckpointFormatError(f"{folder!r} has no config.json")
    return read_json(path)
