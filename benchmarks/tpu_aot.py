"""AOT-compile the native-size CogVideoX jobs for TPU slices - the trainer's own jitted step and the
pipeline's own denoising loop (``cogvideox_jax/tpu_aot.py``) - and print a markdown table of
per-chip memory, model FLOPs and the MFU estimate at XLA's cost-model time (no TPU needed; needs libtpu,
e.g. the ``.venv-tpu`` venv).

    .venv-tpu/bin/python benchmarks/tpu_aot.py --out /tmp/tpu_aot.jsonl          # the whole matrix
    .venv-tpu/bin/python benchmarks/tpu_aot.py --rows 0,3 --out /tmp/x.jsonl       # some rows
    .venv-tpu/bin/python benchmarks/tpu_aot.py --table /tmp/tpu_aot.jsonl          # table from a log
    .venv-tpu/bin/python benchmarks/tpu_aot.py --commands                          # each row as a CLI command

Each row compiles in its own subprocess (a failure or a host OOM only loses that row) and appends one
JSON line to ``--out``; the table is printed at the end. Per row: the full program (memory), then, if it
fits and unless ``--no-estimate``, two unrolled 1- and 2-layer compiles of the same job for the cost-model time
(``tpu_aot.estimate_step_seconds``: XLA's cost model extrapolated to the full depth, plus the splash
kernels' FLOPs at the chip's peak, which the cost model does not see). Train rows: remat full, bf16
compute, fp32 master weights + AdamW, one clip per data shard (``--batch`` = data x fsdp).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

GiB = 1024**3
NATIVE_5B = dict(frames=49, height=480, width=720)       # latents 13 x 60 x 90: 17,776 tokens
NATIVE_15 = dict(frames=81, height=768, width=1360)      # latents 21 -> 22 x 96 x 170: 45,106 tokens
U = dict(sequence_parallel="ulysses")

MATRIX = [
    # 5b full fine-tuning at 49 x 480 x 720
    dict(job="train", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4", **NATIVE_5B),
    dict(job="train", variant="5b", topology="v6e:2x2", mesh="fsdp=2,sequence=2", **U, **NATIVE_5B),
    dict(job="train", variant="5b", topology="v6e:2x2", mesh="fsdp=4", **NATIVE_5B),
    dict(job="train", variant="5b", topology="v6e:2x4", mesh="fsdp=8", **NATIVE_5B),
    # CogVideoX1.5-5B full fine-tuning at 81 x 768 x 1360
    dict(job="train", variant="1.5-5b", topology="v5p:2x2x1", mesh="fsdp=2,sequence=2", **U, **NATIVE_15),
    dict(job="train", variant="1.5-5b", topology="v5p:2x2x2", mesh="fsdp=2,sequence=4", **U, **NATIVE_15),
    dict(job="train", variant="1.5-5b", topology="v6e:2x4", mesh="fsdp=2,sequence=4", **U, **NATIVE_15),
    dict(job="train", variant="1.5-5b", topology="v6e:2x2", mesh="sequence=4", **U, **NATIVE_15),
    dict(job="train", variant="1.5-5b", topology="v5p:2x2x1", mesh="fsdp=4", **NATIVE_15),
    dict(job="train", variant="1.5-5b", topology="v6e:2x4", mesh="sequence=8", **U, **NATIVE_15),
    dict(job="train", variant="5b", topology="v6e:2x2", mesh="sequence=4", **U, **NATIVE_5B),
    # sampling: the pipeline's 50-step denoising loop, bf16 weights
    dict(job="sample", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4", batch=2, **NATIVE_5B),
    dict(job="sample", variant="1.5-5b", topology="v5p:2x2x1", mesh="sequence=4", batch=1, **U, **NATIVE_15),
    dict(job="sample", variant="1.5-5b", topology="v6e:2x2", mesh="sequence=4", batch=1, **U, **NATIVE_15),
    dict(job="sample", variant="5b", topology="v6e:2x2", mesh="fsdp=4", batch=2, **NATIVE_5B),
]


def _row_job(row: dict):
    from cogvideox_jax.tpu_aot import AOTJob

    return AOTJob(**row)


def command(row: dict) -> str:
    """The ``cogvideox-jax aot`` command line of a row."""
    parts = [".venv-tpu/bin/cogvideox-jax aot", f"--job {row['job']}", f"--variant {row['variant']}",
             f"--frames {row['frames']} --height {row['height']} --width {row['width']}",
             f"--mesh {row['mesh']}"]
    if row.get("sequence_parallel"):
        parts.append(f"--sequence-parallel {row['sequence_parallel']}")
    if row.get("batch"):
        parts.append(f"--batch {row['batch']}")
    parts += [f"--topology {row['topology']}", "--estimate-time"]
    return " ".join(parts)


def run_row(index: int, estimate: bool = True) -> dict:
    from cogvideox_jax.tpu_aot import compile_job, estimate_step_seconds

    job = _row_job(MATRIX[index])
    try:
        rep = compile_job(job)
        est = None
        if estimate and rep.fits and job.topology.startswith("v6e"):
            # libtpu 0.0.42.1's v6e cost model returns negative times for these programs (5b one layer:
            # -50 s on fsdp=8, -84 s on fsdp=2,sequence=2; a tiny model at 17,776 tokens: -7 s): two more
            # compiles for nothing. v5p's is positive for the same programs.
            est = {"seconds": 0.0, "note": "not estimated: libtpu's v6e cost model gives negative times"}
        elif estimate and rep.fits:   # no time estimate for a program that does not fit
            est = estimate_step_seconds(job)
            rep.step_seconds_estimate = est["seconds"]
        d = rep.as_dict()
        if est is not None:
            d["estimate"] = est
        d["line"] = rep.summary_line()
    except Exception as e:  # report the error as the row's result
        d = dataclasses.asdict(job)
        msg = str(e).strip().splitlines()
        d["error"] = f"{type(e).__name__}: {' '.join(msg)[:400] if msg else ''}"
    d["row"] = index
    return d


def _chips(topology: str) -> int:
    dims = topology.split(":")[1].split("x")
    n = 1
    for x in dims:
        n *= int(x)
    return n


def _fmt_row(d: dict) -> str:
    g = lambda k: f"{d[k] / GiB:.1f}"  # noqa: E731
    size = f"{d.get('frames')}×{d.get('height')}×{d.get('width')}"
    sp = d.get("sequence_parallel") or "-"
    batch = d.get("batch") or ("1/data shard" if d["job"] == "train" else 1)
    if "latent_shape" in d:
        batch = d["latent_shape"][0]
    head = (f"| {d['job']} | {d['variant']} | {size} | {batch} | {d['topology']} ({_chips(d['topology'])}) "
            f"| {d['mesh']} | {sp} ")
    if "error" in d:
        return head + f"| error: {d['error'][:160]} | | | | | | |"
    est = d.get("step_seconds_estimate") or 0.0
    mfu = f"{100 * d['mfu_estimate']:.0f} %" if est > 0 else "-"
    est_s = (f"{est:.2f}" if est > 0 else "n/a (v6e cost model < 0)" if (d.get("estimate") or {}).get("note")
             or (d.get("estimate") or {}).get("seconds", 0) < 0 else "-")
    return head + (f"| {g('argument_bytes')} | {g('temp_bytes')} | **{g('total_bytes')}** / {d['hbm_gib']:.0f} "
                   f"| {'yes' if d['fits'] else 'NO'} | {d['model_flops'] / 1e12:.0f} "
                   f"| {est_s} | {mfu} | {d['compile_seconds']:.0f} |")


def table(rows: list[dict]) -> str:
    lines = ["| job | variant | frames×H×W | batch | topology (chips) | mesh | SP | args GiB | temp GiB "
             "| total / HBM GiB | fits | model TFLOP/chip/step | est. s/step | MFU est. | compile s |",
             "|" + "---|" * 15]
    return "\n".join(lines + [_fmt_row(d) for d in sorted(rows, key=lambda r: r["row"])])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default=None, help="comma-separated row indices (default: all)")
    ap.add_argument("--out", default="tpu_aot.jsonl")
    ap.add_argument("--table", default=None, help="only print the table of an existing JSONL log")
    ap.add_argument("--commands", action="store_true", help="print each row's `cogvideox-jax aot` command")
    ap.add_argument("--no-estimate", action="store_true", help="skip the cost-model compiles")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: compile one row
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args(argv)
    if args.one is not None:
        print("RESULT " + json.dumps(run_row(args.one, not args.no_estimate)), flush=True)
        return 0
    if args.commands:
        for i, row in enumerate(MATRIX):
            print(f"{i}: {command(row)}")
        return 0
    if args.table:
        with open(args.table) as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return 0
    rows = range(len(MATRIX)) if args.rows is None else [int(r) for r in args.rows.split(",")]
    env = dict(os.environ, TPU_WORKER_HOSTNAMES=os.environ.get("TPU_WORKER_HOSTNAMES", "localhost"))
    results = []
    for i in rows:
        t0 = time.time()
        child = [sys.executable, __file__, "--one", str(i)] + (["--no-estimate"] if args.no_estimate else [])
        try:
            proc = subprocess.run(child, capture_output=True, text=True, timeout=args.timeout, env=env)
            found = [ln[7:] for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            d = json.loads(found[-1]) if found else dict(_row_dict(i), row=i,
                                                         error=f"exit {proc.returncode}: {proc.stderr[-300:]}")
        except subprocess.TimeoutExpired:
            d = dict(_row_dict(i), row=i, error=f"compile timed out after {args.timeout}s")
        results.append(d)
        with open(args.out, "a") as f:
            f.write(json.dumps(d) + "\n")
        print(f"[row {i}, {time.time() - t0:.0f}s] {d.get('line', d.get('error'))}", flush=True)
    print(table(results))
    return 0


def _row_dict(i: int) -> dict:
    return dataclasses.asdict(_row_job(MATRIX[i]))


if __name__ == "__main__":
    raise SystemExit(main())
