"""Faults and bad input on the sampling / conversion side (issue #50): no false success, and errors that
name their cause - an unwritable ``--out``, bad ``sample`` arguments (rejected before any weight is
loaded), non-UTF-8 configs, weights that disagree with ``config.json``, a damaged converted
checkpoint, and a failed ``convert``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from cogvideox_jax.cli import main
from cogvideox_jax.errors import CheckpointFormatError, WeightMismatchError

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from cogvideox_jax_oracles.pipeline_oracle import make_pipeline_folder  # noqa: E402

SIZE = ["--frames", "9", "--height", "32", "--width", "48"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny diffusers pipeline folder (5b style)."""
    folder, _ = make_pipeline_folder(tmp_path_factory.mktemp("pipe"), "5b")
    return folder


@pytest.fixture(scope="module")
def ckpt(tiny, tmp_path_factory):
    """``tiny`` converted with ``cogvideox-jax convert``."""
    out = str(tmp_path_factory.mktemp("ckpt") / "ckpt")
    assert main(["convert", "--diffusers", tiny, "--out", out]) == 0
    return out


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to load a model fails the test: the checks must come first."""
    from cogvideox_jax.pipeline import CogVideoXPipeline

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(CogVideoXPipeline, "from_pretrained", classmethod(refuse))


def _copy(folder, dst) -> str:
    shutil.copytree(folder, dst)
    return str(dst)


def _usage_exit(argv, capsys) -> str:
    """Run ``argv``; it must exit with status 2 (argparse style); returns stderr."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2, e.value.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ----------------------------------------------------------------------------- --out
@pytest.mark.parametrize("out", ["/proc/x.mp4", "/sys/x.mp4", "DIR", "v.avi"])
def test_sample_refuses_an_unwritable_out_before_loading(out, tmp_path, tiny, no_loading, capsys):
    if out.startswith(("/proc", "/sys")) and not os.path.isdir(out.split("/x")[0]):
        pytest.skip("no /proc or /sys here")
    out = {"DIR": str(tmp_path), "v.avi": str(tmp_path / "v.avi")}.get(out, out)
    err = _usage_exit(["sample", "--diffusers", tiny, "--prompt", "a red circle", *SIZE, "--steps", "1",
                       "--out", out], capsys)
    assert out in err
    assert not os.path.exists(out) or os.path.isdir(out)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_sample_refuses_a_read_only_folder(tmp_path, tiny, no_loading, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        err = _usage_exit(["sample", "--diffusers", tiny, "--prompt", "p", *SIZE, "--out", str(folder / "v.mp4")],
                          capsys)
    finally:
        folder.chmod(0o755)
    assert str(folder) in err


def test_write_video_failure_is_an_error_and_leaves_no_partial_file(tmp_path):
    from cogvideox_jax.data.video_io import VideoWriteError, read_video_uint8, write_video

    with pytest.raises(VideoWriteError, match="/proc/x.mp4"):
        write_video("/proc/x.mp4", np.zeros((3, 16, 16, 3), np.uint8))
    good = np.full((3, 16, 16, 3), 200, np.uint8)
    path = tmp_path / "v.mp4"
    write_video(path, good)
    before = path.read_bytes()
    # libx264 refuses odd sizes in yuv420p: ffmpeg fails after the file was opened
    with pytest.raises(VideoWriteError, match=r"v\.mp4.*ffmpeg exited"):
        write_video(path, np.zeros((3, 15, 17, 3), np.uint8))
    assert path.read_bytes() == before  # the earlier video is untouched
    assert read_video_uint8(path).shape == (3, 16, 16, 3)
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]  # no temporary file left behind


def test_sample_exits_non_zero_when_the_video_cannot_be_written(tmp_path, tiny, monkeypatch, capsys):
    """The write fails after sampling (here the destination turned into a folder meanwhile): a non-zero
    exit naming the path, never 'wrote ...'."""
    from cogvideox_jax.pipeline import CogVideoXPipeline

    out = tmp_path / "v.mp4"

    class FakePipe:
        def __call__(self, *a, **k):
            out.mkdir()
            return np.zeros((1, 9, 32, 48, 3), np.float32)

    monkeypatch.setattr(CogVideoXPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: FakePipe()))
    assert main(["sample", "--diffusers", tiny, "--prompt", "p", *SIZE, "--steps", "1", "--out", str(out)]) != 0
    captured = capsys.readouterr()
    assert "wrote" not in captured.out
    assert str(out) in captured.err
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]


def test_sample_writes_a_gif_into_a_new_folder(tmp_path, ckpt):
    """The real thing, once: a converted checkpoint sampled into a folder that does not exist yet."""
    from PIL import Image

    out = tmp_path / "new" / "folder" / "v.gif"
    assert main(["sample", "--checkpoint", ckpt, "--prompt", "a red circle", *SIZE, "--steps", "1",
                 "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 9 and im.size == (48, 32)
    assert os.listdir(out.parent) == ["v.gif"]


# ----------------------------------------------------------------------------- sample arguments
@pytest.mark.parametrize("args, named", [
    (["--steps", "0"], "--steps"),
    (["--steps", "1001"], "steps=1001"),
    (["--guidance", "-3"], "--guidance"),
    (["--guidance", "nan"], "--guidance"),
    (["--frames", "0"], "--frames"),
    (["--frames", "10"], "num_frames=10"),
    (["--height", "0"], "--height"),
    (["--width", "-16"], "--width"),
    (["--width", "40"], "width=40"),
    (["--fps", "0"], "--fps"),
    (["--seed", "-1"], "--seed"),
    (["--candidates", "0"], "--candidates"),
    (["--image", "/no/such/image.png"], "/no/such/image.png"),
    (["--latents", "/no/such/noise.npy"], "/no/such/noise.npy"),
])
def test_sample_rejects_bad_arguments_before_loading(args, named, tmp_path, tiny, no_loading, capsys):
    argv = ["sample", "--diffusers", tiny, "--prompt", "p", *SIZE, "--steps", "2", "--out", str(tmp_path / "v.mp4")]
    err = _usage_exit(argv + args, capsys)
    assert named in err
    assert not (tmp_path / "v.mp4").exists()


def test_sample_rejects_an_image_for_a_text_to_video_model(tmp_path, tiny, no_loading, capsys):
    from PIL import Image

    Image.new("RGB", (48, 32)).save(tmp_path / "i.png")
    err = _usage_exit(["sample", "--diffusers", tiny, "--prompt", "p", *SIZE, "--image", str(tmp_path / "i.png"),
                       "--out", str(tmp_path / "v.mp4")], capsys)
    assert "text-to-video" in err


def test_sample_rejects_bad_settings_from_sampling_json(tmp_path, ckpt, no_loading, capsys):
    bad = _copy(ckpt, tmp_path / "ck")
    with open(os.path.join(bad, "sampling.json"), "w") as f:
        json.dump({"steps": 0}, f)
    err = _usage_exit(["sample", "--checkpoint", bad, "--prompt", "p", *SIZE, "--out", str(tmp_path / "v.mp4")],
                      capsys)
    assert "steps=0" in err and "sampling.json" in err


def test_pipeline_call_checks_steps_and_guidance_before_encoding(tiny, monkeypatch):
    from cogvideox_jax.pipeline import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(tiny)

    def refuse(*a, **k):
        raise AssertionError("a prompt was encoded before the arguments were checked")

    monkeypatch.setattr(pipe, "encode_prompt", refuse)
    kw = dict(num_frames=9, height=32, width=48, progress=False)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe("p", num_inference_steps=0, **kw)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe("p", num_inference_steps=1001, **kw)
    with pytest.raises(ValueError, match="guidance_scale"):
        pipe("p", num_inference_steps=2, guidance_scale=-3.0, **kw)


def test_prompts_that_fit_do_not_warn(tiny):
    """The empty negative prompt, and a prompt exactly as long as the text length, are not 'truncated'."""
    from cogvideox_jax.models.t5.prompt_encoding import PromptTruncatedWarning, load_tokenizer, tokenize_prompts

    tok = load_tokenizer(os.path.join(tiny, "tokenizer"))
    fits = "a red circle moves"
    length = len(tok(fits).input_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptTruncatedWarning)
        tokenize_prompts(tok, [""], 226)
        tokenize_prompts(tok, ["", fits], length)
        tokenize_prompts(tok, "", 1)


# ----------------------------------------------------------------------------- configs
def test_non_utf8_config_is_a_format_error_naming_the_file(tmp_path, tiny):
    from configs.scheduler import SchedulerConfig
    from cogvideox_jax.convert import load_diffusers
    from cogvideox_jax.convert.safetensors_io import read_config

    folder = _copy(tiny, tmp_path / "pipe")
    for name in ("transformer/config.json", "scheduler/scheduler_config.json"):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(b"\xff\xfe" + data)
    config = os.path.join(folder, "transformer", "config.json")
    with pytest.raises(CheckpointFormatError, match="config.json.*UTF-8"):
        read_config(os.path.join(folder, "transformer"))
    with pytest.raises(CheckpointFormatError) as e:
        load_diffusers(os.path.join(folder, "transformer"))
    assert config in str(e.value)
    with pytest.raises(CheckpointFormatError) as e:
        SchedulerConfig.from_pretrained(folder)
    assert "scheduler_config.json" in str(e.value)


def test_non_utf8_checkpoint_files_are_format_errors(tmp_path, ckpt):
    from cogvideox_jax.convert.pipeline_checkpoint import MARKER, read_component, read_marker

    bad = _copy(ckpt, tmp_path / "ck")
    for name in (MARKER, "vae/config.json"):
        with open(os.path.join(bad, name), "wb") as f:
            f.write(b'{"version": "\xff"}')
    with pytest.raises(CheckpointFormatError, match=MARKER):
        read_marker(bad)
    with pytest.raises(CheckpointFormatError, match="vae/config.json"):
        read_component(bad, "vae")


def test_sample_names_a_non_utf8_checkpoint_config_before_loading(tmp_path, ckpt, no_loading):
    bad = _copy(ckpt, tmp_path / "ck")
    with open(os.path.join(bad, "text_encoder", "config.json"), "wb") as f:
        f.write(b'{"d_model": "\xff"}')
    with pytest.raises(CheckpointFormatError, match="text_encoder/config.json.*UTF-8"):
        main(["sample", "--checkpoint", bad, "--prompt", "p", *SIZE, "--out", str(tmp_path / "v.mp4")])


# ----------------------------------------------------------------------------- weights vs config.json
def _edit_transformer(folder, config=None, drop=()):
    from safetensors.numpy import load_file, save_file

    if config:
        path = os.path.join(folder, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        with open(path, "w") as f:
            json.dump({**cfg, **config}, f)
    if drop:
        path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
        state = load_file(path)
        for k in drop:
            del state[k]
        save_file(state, path)


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("num_layers, held", [(3, "2 blocks (transformer_blocks.0-1)"),
                                               (1, "2 blocks (transformer_blocks.0-1)")])
def test_num_layers_disagreeing_with_the_weights_names_the_field(num_layers, held, scan, tmp_path, tiny):
    from cogvideox_jax.convert import load_diffusers

    folder = _copy(os.path.join(tiny, "transformer"), tmp_path / "t")
    _edit_transformer(folder, {"num_layers": num_layers})
    with pytest.raises(WeightMismatchError) as e:
        load_diffusers(folder, scan_layers=scan)
    assert f"config.json says num_layers={num_layers} but the weights hold {held}" in str(e.value)


@pytest.mark.parametrize("scan", [False, True])
def test_a_missing_tensor_is_reported_missing_by_its_diffusers_name(scan, tmp_path, tiny):
    from cogvideox_jax.convert import load_diffusers

    folder = _copy(os.path.join(tiny, "transformer"), tmp_path / "t")
    _edit_transformer(folder, drop=["transformer_blocks.1.attn1.to_q.weight", "proj_out.bias"])
    with pytest.raises(WeightMismatchError) as e:
        load_diffusers(folder, scan_layers=scan)
    msg = str(e.value)
    assert "missing keys (2): proj_out.bias, transformer_blocks.1.attn1.to_q.weight" in msg
    assert "unexpected" not in msg and "num_layers" not in msg
    assert e.value.missing == ["proj_out.bias", "transformer_blocks.1.attn1.to_q.weight"]


def test_a_missing_tensor_is_reported_when_sampling_a_diffusers_folder(tmp_path, tiny, capsys):
    folder = _copy(tiny, tmp_path / "pipe")
    _edit_transformer(os.path.join(folder, "transformer"), drop=["transformer_blocks.0.ff.net.2.weight"])
    with pytest.raises(WeightMismatchError, match=r"missing keys \(1\): transformer_blocks\.0\.ff\.net\.2\.weight"):
        main(["sample", "--diffusers", folder, "--prompt", "p", *SIZE, "--steps", "1",
              "--out", str(tmp_path / "v.mp4")])
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("field, value, expected", [
    ("num_attention_heads", 4, "num_attention_heads * attention_head_dim = 4 * 16 = 64"),
    ("attention_head_dim", 8, "num_attention_heads * attention_head_dim = 2 * 8 = 16"),
    ("text_embed_dim", 64, "text_embed_dim=64"),
    ("time_embed_dim", 8, "time_embed_dim=8"),
])
def test_widths_disagreeing_with_the_weights_name_the_fields(field, value, expected, tmp_path, tiny):
    from cogvideox_jax.convert import load_diffusers

    folder = _copy(os.path.join(tiny, "transformer"), tmp_path / "t")
    _edit_transformer(folder, {field: value})
    with pytest.raises(WeightMismatchError) as e:
        load_diffusers(folder)
    assert f"config.json says {expected} but " in str(e.value)


# ----------------------------------------------------------------------------- damaged checkpoints
def _largest_file(folder: str) -> str:
    files = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names]
    return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_component_is_a_format_error_naming_it(damage, tmp_path, ckpt):
    from cogvideox_jax.convert.pipeline_checkpoint import read_component

    bad = _copy(ckpt, tmp_path / "ck")
    victim = _largest_file(os.path.join(bad, "transformer", "params"))
    if damage == "truncate":
        os.truncate(victim, 100)
    else:
        os.remove(victim)
    with pytest.raises(CheckpointFormatError) as e:
        read_component(bad, "transformer")
    msg = str(e.value)
    assert "transformer/ component is damaged" in msg and bad in msg and "cogvideox-jax convert" in msg


def test_sampling_a_truncated_checkpoint_fails_cleanly(tmp_path, ckpt):
    """End to end in a fresh process: a non-zero exit, the cause named, no asyncio noise, no video."""
    bad = _copy(ckpt, tmp_path / "ck")
    os.truncate(_largest_file(os.path.join(bad, "transformer", "params")), 1000)
    out = tmp_path / "v.mp4"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "cogvideox_jax.cli", "sample", "--checkpoint", bad, "--prompt", "p",
                           *SIZE, "--steps", "1", "--out", str(out)], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)
    assert proc.returncode != 0
    assert "CheckpointFormatError" in proc.stderr and "transformer/ component is damaged" in proc.stderr
    assert "Event loop is closed" not in proc.stderr
    assert "exception was never retrieved" not in proc.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- convert
def test_a_failed_convert_leaves_nothing_and_can_be_rerun(tmp_path, tiny, monkeypatch):
    from cogvideox_jax.convert import pipeline_checkpoint
    from cogvideox_jax.convert.pipeline_checkpoint import MARKER, read_marker

    real_save = pipeline_checkpoint.save_params
    calls = []

    def failing_save(path, params):
        calls.append(path)
        if len(calls) == 2:  # the transformer is written, then the VAE fails (a full disk, say)
            raise OSError(28, "No space left on device")
        real_save(path, params)

    monkeypatch.setattr(pipeline_checkpoint, "save_params", failing_save)
    out = tmp_path / "ckpt"
    with pytest.raises(OSError, match="No space"):
        main(["convert", "--diffusers", tiny, "--out", str(out)])
    assert not out.exists()  # no partial checkpoint under the final name ...
    assert os.listdir(tmp_path) == []  # ... and no temporary folder left behind
    monkeypatch.setattr(pipeline_checkpoint, "save_params", real_save)
    assert main(["convert", "--diffusers", tiny, "--out", str(out)]) == 0
    assert read_marker(str(out))["components"] == ["transformer", "vae", "text_encoder"]
    assert os.path.exists(out / MARKER)


def test_convert_refuses_a_non_empty_out_before_loading(tmp_path, tiny, ckpt, monkeypatch, capsys):
    from cogvideox_jax.convert.pipeline_checkpoint import MARKER, read_component
    from cogvideox_jax.pipeline import components

    def refuse(*a, **k):
        raise AssertionError("loaded the source before checking --out")

    monkeypatch.setattr(components, "load_components", refuse)
    before = open(os.path.join(ckpt, MARKER)).read()
    _usage_exit(["convert", "--diffusers", tiny, "--out", ckpt], capsys)
    assert open(os.path.join(ckpt, MARKER)).read() == before  # the earlier good output is untouched
    read_component(ckpt, "transformer")
