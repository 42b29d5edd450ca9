"""The video–text folder format of the official CogVideoX fine-tuning.

``data_root/`` holds either

- ``prompts.txt`` + ``videos.txt`` (one entry per line, video paths relative to ``data_root``; blank
  lines ignored) and optionally ``images.txt`` (first-frame images for image-to-video), or
- ``metadata.jsonl``: one JSON object per line, ``{"video": ..., "caption": ...}`` (``file_name`` /
  ``path`` and ``prompt`` / ``text`` accepted too; optional ``image``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

_VIDEO_KEYS = ("video", "file_name", "path", "video_path")
_CAPTION_KEYS = ("caption", "prompt", "text")
_IMAGE_KEYS = ("image", "image_path")


class DatasetFormatError(ValueError):
    """The data folder does not follow the expected format (message says what and where)."""


@dataclass(frozen=True)
class VideoRecord:
    video: str            # absolute path
    prompt: str
    image: str | None = None


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _resolve(root: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p))


def _check_exist(records: list[VideoRecord], root: str) -> None:
    missing = [r.video for r in records if not os.path.isfile(r.video)]
    missing += [r.image for r in records if r.image is not None and not os.path.isfile(r.image)]
    if missing:
        shown = ", ".join(os.path.relpath(m, root) for m in missing[:5])
        raise DatasetFormatError(f"{len(missing)} file(s) listed in {root} do not exist: {shown}"
                                 + (" ..." if len(missing) > 5 else ""))


def _read_txt(root, caption_column, video_column, image_column) -> list[VideoRecord]:
    prompts = _read_lines(os.path.join(root, caption_column))
    videos = _read_lines(os.path.join(root, video_column))
    if len(prompts) != len(videos):
        raise DatasetFormatError(f"{root}: {caption_column} has {len(prompts)} non-empty lines but "
                                 f"{video_column} has {len(videos)}; they must match line for line")
    images: list[str | None] = [None] * len(videos)
    if image_column is not None:
        images = _read_lines(os.path.join(root, image_column))
        if len(images) != len(videos):
            raise DatasetFormatError(f"{root}: {image_column} has {len(images)} non-empty lines but "
                                     f"{video_column} has {len(videos)}")
    return [VideoRecord(_resolve(root, v), p, None if i is None else _resolve(root, i))
            for p, v, i in zip(prompts, videos, images)]


def _pick(obj: dict, keys, what: str, where: str, required: bool = True):
    for k in keys:
        if k in obj:
            return obj[k]
    if required:
        raise DatasetFormatError(f"{where}: no {what} key (one of {list(keys)}) in {sorted(obj)}")
    return None


def _read_jsonl(root: str, name: str) -> list[VideoRecord]:
    records = []
    with open(os.path.join(root, name), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{os.path.join(root, name)}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetFormatError(f"{where}: invalid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise DatasetFormatError(f"{where}: expected a JSON object")
            video = _pick(obj, _VIDEO_KEYS, "video", where)
            caption = _pick(obj, _CAPTION_KEYS, "caption", where)
            image = _pick(obj, _IMAGE_KEYS, "image", where, required=False)
            records.append(VideoRecord(_resolve(root, str(video)), str(caption).strip(),
                                       None if image is None else _resolve(root, str(image))))
    return records


def read_folder(data_root: str, caption_column: str = "prompts.txt", video_column: str = "videos.txt",
                image_column: str | None = None, metadata_file: str = "metadata.jsonl",
                check_files: bool = True) -> list[VideoRecord]:
    """All (video, prompt[, image]) records of ``data_root``, in file order.

    Uses ``caption_column`` + ``video_column`` when ``video_column`` exists, else ``metadata_file``.
    ``image_column`` None auto-detects ``images.txt``. Raises DatasetFormatError on mismatched line
    counts, malformed JSON lines, missing files (when ``check_files``) or an empty dataset.
    """
    root = os.path.abspath(os.fspath(data_root))
    if not os.path.isdir(root):
        raise DatasetFormatError(f"data root {root} is not a directory")
    if os.path.isfile(os.path.join(root, video_column)):
        if not os.path.isfile(os.path.join(root, caption_column)):
            raise DatasetFormatError(f"{root} has {video_column} but no {caption_column}")
        if image_column is None and os.path.isfile(os.path.join(root, "images.txt")):
            image_column = "images.txt"
        records = _read_txt(root, caption_column, video_column, image_column)
    elif os.path.isfile(os.path.join(root, metadata_file)):
        records = _read_jsonl(root, metadata_file)
    else:
        raise DatasetFormatError(f"{root} has neither {caption_column} + {video_column} nor {metadata_file}")
    if not records:
        raise DatasetFormatError(f"{root}: the dataset is empty")
    if check_files:
        _check_exist(records, root)
    return records
