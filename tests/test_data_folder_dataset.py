"""The video–text folder format: prompts.txt/videos.txt(/images.txt) and metadata.jsonl."""
import json
import os

import pytest

from cogvideox_jax.data.folder_dataset import DatasetFormatError, read_folder


def _touch(root, rel):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").close()
    return p


def _write(root, name, lines):
    with open(os.path.join(root, name), "w") as f:
        f.write("\n".join(lines) + "\n")


def test_txt_format_with_blank_lines_and_images(tmp_path):
    for r in ("videos/a.mp4", "videos/b.mp4", "images/a.png", "images/b.png"):
        _touch(tmp_path, r)
    _write(tmp_path, "prompts.txt", ["a cat  ", "", "a dog"])
    _write(tmp_path, "videos.txt", ["videos/a.mp4", "videos/b.mp4", ""])
    _write(tmp_path, "images.txt", ["images/a.png", "images/b.png"])
    recs = read_folder(tmp_path)
    assert [r.prompt for r in recs] == ["a cat", "a dog"]
    assert [r.video for r in recs] == [str(tmp_path / "videos/a.mp4"), str(tmp_path / "videos/b.mp4")]
    assert [r.image for r in recs] == [str(tmp_path / "images/a.png"), str(tmp_path / "images/b.png")]


def test_txt_format_without_images(tmp_path):
    _touch(tmp_path, "x.mp4")
    _write(tmp_path, "prompts.txt", ["p"])
    _write(tmp_path, "videos.txt", ["x.mp4"])
    (rec,) = read_folder(tmp_path)
    assert rec.image is None and rec.prompt == "p"


def test_jsonl_format_accepts_key_aliases(tmp_path):
    _touch(tmp_path, "v/1.mp4")
    _touch(tmp_path, "v/2.mp4")
    with open(tmp_path / "metadata.jsonl", "w") as f:
        f.write(json.dumps({"video": "v/1.mp4", "caption": "first"}) + "\n\n")
        f.write(json.dumps({"file_name": "v/2.mp4", "prompt": "second"}) + "\n")
    recs = read_folder(tmp_path)
    assert [(os.path.basename(r.video), r.prompt) for r in recs] == [("1.mp4", "first"), ("2.mp4", "second")]


def test_mismatched_line_counts(tmp_path):
    _touch(tmp_path, "a.mp4")
    _write(tmp_path, "prompts.txt", ["one", "two"])
    _write(tmp_path, "videos.txt", ["a.mp4"])
    with pytest.raises(DatasetFormatError, match="prompts.txt has 2 .* videos.txt has 1"):
        read_folder(tmp_path)


def test_missing_video_files_are_named(tmp_path):
    _touch(tmp_path, "a.mp4")
    _write(tmp_path, "prompts.txt", ["one", "two"])
    _write(tmp_path, "videos.txt", ["a.mp4", "gone.mp4"])
    with pytest.raises(DatasetFormatError, match="1 file.*gone.mp4"):
        read_folder(tmp_path)
    assert len(read_folder(tmp_path, check_files=False)) == 2


def test_bad_jsonl_and_empty_and_missing_files(tmp_path):
    with pytest.raises(DatasetFormatError, match="neither"):
        read_folder(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"video": "a.mp4"}\n')
    with pytest.raises(DatasetFormatError, match=r"metadata.jsonl:1: no caption"):
        read_folder(tmp_path)
    (tmp_path / "metadata.jsonl").write_text("not json\n")
    with pytest.raises(DatasetFormatError, match="invalid JSON"):
        read_folder(tmp_path)
    (tmp_path / "metadata.jsonl").write_text("\n")
    with pytest.raises(DatasetFormatError, match="empty"):
        read_folder(tmp_path)
