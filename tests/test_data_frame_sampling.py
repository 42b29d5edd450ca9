"""fps frame sampling, decoding of sampled frames, resize + centre crop, [-1, 1] normalisation."""
import numpy as np
import pytest

from cogvideox_jax.data.frame_sampling import frames_at_fps, sample_frame_indices
from cogvideox_jax.data.resize_crop import cover_size, normalize_frames, resize_center_crop
from cogvideox_jax.data.video_decode import VideoDecodeError, probe_video, read_frames
from cogvideox_jax_oracles.data_video_files import gray_level, write_video


def test_indices_at_target_fps():
    np.testing.assert_array_equal(sample_frame_indices(100, 24, 8, 5), [0, 3, 6, 9, 12])
    np.testing.assert_array_equal(sample_frame_indices(100, 30, 8, 4), [0, 4, 8, 11])  # step 3.75, rounded
    # centred / end placement inside a longer clip
    np.testing.assert_array_equal(sample_frame_indices(20, 12, 4, 3, offset_fraction=1.0), [13, 16, 19])
    np.testing.assert_array_equal(sample_frame_indices(21, 12, 4, 3, offset_fraction=0.5), [7, 10, 13])
    # a slower source is read at stride 1, never duplicated
    np.testing.assert_array_equal(sample_frame_indices(10, 4, 8, 4), [0, 1, 2, 3])
    # too short for the stride: spread over the whole clip
    np.testing.assert_array_equal(sample_frame_indices(7, 24, 8, 4), [0, 2, 4, 6])
    np.testing.assert_array_equal(sample_frame_indices(2, 24, 8, 3), [0, 0, 1])
    assert frames_at_fps(49, 24, 8) == 17 and frames_at_fps(12, 12, 4) == 4 and frames_at_fps(12, 12, None) == 12
    with pytest.raises(ValueError):
        sample_frame_indices(0, 24, 8, 4)


def test_decoded_frames_follow_fps(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=12, fps=12)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.height, info.width) == (12, 12.0, 32, 48)
    idx = sample_frame_indices(info.num_frames, info.fps, 4, 4)
    frames = read_frames(path, idx)
    assert frames.shape == (4, 32, 48, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), [gray_level(i) for i in (0, 3, 6, 9)], atol=3)
    with pytest.raises(VideoDecodeError, match="ended after 12 frames"):
        read_frames(path, [3, 12])


def test_undecodable_file_raises(tmp_path):
    p = tmp_path / "junk.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError):
        probe_video(str(p))


def test_resize_center_crop_shapes_and_content():
    assert cover_size(32, 48, 16, 16) == (16, 24)
    assert cover_size(480, 720, 480, 480) == (480, 720)
    x = np.zeros((2, 32, 48, 3), np.uint8)
    x[:, :, 12:36] = 200           # a bright central square band, 24 columns wide
    y = resize_center_crop(x, 16, 16)
    assert y.shape == (2, 16, 16, 3) and y.dtype == np.uint8
    # 48 → 24 wide then centre 16: columns 4..20 of the resized frame, the band is 6..18
    assert y[0, :, 4:12].min() > 150 and y[0, :, 0].max() < 50
    tall = resize_center_crop(np.zeros((40, 20, 3), np.uint8), 16, 24)   # single frame, upscaling
    assert tall.shape == (16, 24, 3)


def test_normalisation_range():
    v = normalize_frames(np.array([0, 127, 255], np.uint8))
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)
