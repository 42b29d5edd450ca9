"""Training metrics: loss, lr, grad norm, tokens/s, step time and an MFU estimate.

Sinks: stdout (``tqdm.write``, so lines stay above the trainer's progress bar), a JSONL file
(always), and TensorBoard event files through ``tensorboardX`` (a runtime dependency; the logger
degrades to JSONL only if it is missing; ``flax.metrics.tensorboard`` would need TensorFlow and
``torch.utils.tensorboard`` torch). FLOPs are counted from the model description, not measured.
"""
from __future__ import annotations

import json
import os
import sys
import time

from cogvideox_jax import paths

# dense bf16 peak FLOP/s per chip, for the MFU estimate
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5": 459e12, "TPU v5p": 459e12,
              "TPU v6 lite": 918e12, "TPU v6e": 918e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops_for(device_kind: str) -> float | None:
    for k in sorted(PEAK_FLOPS, key=len, reverse=True):
        if k.lower() in device_kind.lower():
            return PEAK_FLOPS[k]
    return None


def sequence_lengths(spec, latent_shape, text_len: int) -> tuple[int, int]:
    """(text tokens, video tokens) per sample."""
    _, t, h, w, _ = latent_shape
    t_tokens = -(-t // spec.patch_size_t)
    return text_len, t_tokens * (h // spec.patch_size) * (w // spec.patch_size)


def transformer_train_flops(spec, latent_shape, text_len: int) -> float:
    """FLOPs of one training step (forward + backward ≈ 3× forward) for the whole batch.

    Per layer and sample with N = text + video tokens, width D: q,k,v,out projections 8·N·D²,
    attention scores and values 4·N²·D, feed-forward 4·ff_mult·N·D², adaLN 2·T·12·D (T = time
    embed width); plus patch embedding, text projection and output projection.
    """
    b = latent_shape[0]
    n_txt, n_vid = sequence_lengths(spec, latent_shape, text_len)
    n, d = n_txt + n_vid, spec.inner_dim
    per_layer = 8 * n * d * d + 4 * n * n * d + 4 * spec.ff_mult * n * d * d + 2 * spec.time_embed_dim * 12 * d
    patch = spec.latent_channels * spec.patch_size ** 2 * spec.patch_size_t
    io = 2 * n_vid * patch * d * 2 + 2 * n_txt * spec.text_dim * d
    return 3.0 * b * (spec.num_layers * per_layer + io)


class MetricsLogger:
    """Writes one record per logged step to stdout, ``<log_dir>/metrics.jsonl`` and TensorBoard."""

    def __init__(self, log_dir: str | None, *, flops_per_step: float = 0.0, tokens_per_step: int = 0,
                 peak_flops: float | None = None, num_devices: int = 1, stdout: bool = True,
                 is_main: bool = True):
        self.flops_per_step = flops_per_step
        self.tokens_per_step = tokens_per_step
        self.peak = peak_flops
        self.num_devices = num_devices
        self.stdout = stdout and is_main
        self.is_main = is_main
        self.records: list[dict] = []
        self._jsonl = None
        self._tb = None
        if log_dir and is_main:
            paths.makedirs(log_dir)
            self._jsonl = JsonlAppender(paths.join(log_dir, "metrics.jsonl"))
            try:
                from tensorboardX import SummaryWriter  # optional
                self._tb = SummaryWriter(log_dir)
            except ImportError:
                self._tb = None
        self._last = None

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def derived(self, step_time: float) -> dict:
        out = {"step_time_s": step_time}
        if step_time > 0:
            out["tokens_per_s"] = self.tokens_per_step / step_time
            if self.flops_per_step:
                out["tflops_per_s"] = self.flops_per_step / step_time / 1e12
                if self.peak:
                    out["mfu"] = self.flops_per_step / step_time / (self.peak * self.num_devices)
        return out

    def log(self, step: int, metrics: dict, step_time: float | None = None) -> dict:
        rec = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        if step_time is not None:
            rec.update(self.derived(step_time))
        self.records.append(rec)
        if not self.is_main:
            return rec
        if self._jsonl:
            self._jsonl.write(json.dumps(rec) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for k, v in rec.items():
                if k != "step":
                    self._tb.add_scalar(f"train/{k}", v, step)
        if self.stdout:
            parts = [f"step {step}"] + [f"{k} {v:.6g}" for k, v in rec.items() if k != "step"]
            from tqdm.auto import tqdm

            tqdm.write(" | ".join(parts), file=sys.stdout)
        return rec

    def log_videos(self, step: int, tag: str, videos, scalars: dict | None = None) -> None:
        """Sampled videos ``(B, T, H, W, 3)`` in [0, 1]: a frame strip each to TensorBoard (``tag/i``),
        and ``scalars`` (e.g. the sampling time) as one ``{"event": tag}`` line in the JSONL and stdout."""
        if not self.is_main:
            return
        scalars = {k: float(v) for k, v in (scalars or {}).items()}
        if self._tb is not None:
            from cogvideox_jax.train.validation import frame_strip

            for i, video in enumerate(videos):
                self._tb.add_image(f"{tag}/{i}", frame_strip(video), step, dataformats="HWC")
            for k, v in scalars.items():
                self._tb.add_scalar(f"{tag}/{k}", v, step)
            self._tb.flush()
        if self._jsonl:
            self._jsonl.write(json.dumps({"step": int(step), "event": tag, "videos": len(videos), **scalars}) + "\n")
            self._jsonl.flush()
        if self.stdout:
            from tqdm.auto import tqdm

            tqdm.write(f"step {step} | {tag}: {len(videos)} videos" + "".join(f" | {k} {v:.4g}" for k, v in
                                                                             scalars.items()), file=sys.stdout)

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def drop_records_after(log_dir: str, step: int) -> int:
    """Remove the ``metrics.jsonl`` records of steps after ``step`` (a resumed run logs them again);
    returns how many were removed."""
    path = paths.join(log_dir, "metrics.jsonl")
    if not paths.exists(path):
        return 0
    lines = paths.read_text(path).splitlines(keepends=True)
    keep = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
        paths.write_atomic(path, "".join(keep))
    return len(lines) - len(keep)


class JsonlAppender:
    """Appends lines to a local file, or (cloud storage objects cannot be appended to) to a local copy
    of a remote one that is uploaded whole at most every ``upload_every_s`` seconds and at ``close``."""

    def __init__(self, path: str, upload_every_s: float = 30.0):
        self.path = path
        self.remote = paths.is_url(path)
        self.upload_every_s = upload_every_s
        self._last_upload = time.monotonic()
        if self.remote:
            import tempfile

            self._local = os.path.join(tempfile.mkdtemp(prefix="cogvideox-metrics-"), "metrics.jsonl")
            with open(self._local, "w") as f:
                f.write(paths.read_text(path) if paths.exists(path) else "")
        self._file = open(self._local if self.remote else path, "a")

    def write(self, text: str) -> None:
        self._file.write(text)

    def flush(self) -> None:
        self._file.flush()
        if self.remote and time.monotonic() - self._last_upload >= self.upload_every_s:
            self._upload()

    def _upload(self) -> None:
        with open(self._local) as f:
            paths.write_atomic(self.path, f.read())
        self._last_upload = time.monotonic()

    def close(self) -> None:
        self._file.close()
        if self.remote:
            self._upload()


class StepTimer:
    def __init__(self):
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt
