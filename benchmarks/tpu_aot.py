"""AOT-compile the native-size CogVideoX jobs for TPU slices and print a markdown table of per-chip
memory / FLOPs (no TPU needed; needs libtpu, e.g. the /work/tpuvenv venv).

    /work/tpuvenv/bin/python benchmarks/tpu_aot.py --out /tmp/tpu_aot.jsonl          # the whole matrix
    /work/tpuvenv/bin/python benchmarks/tpu_aot.py --rows 0,3 --out /tmp/x.jsonl       # some rows
    /work/tpuvenv/bin/python benchmarks/tpu_aot.py --table /tmp/tpu_aot.jsonl          # table from a log

Each row compiles in its own subprocess (a failure or a host OOM only loses that row) and appends one
JSON line to ``--out``; the table is printed at the end. Compiles take minutes each on a small host.
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
NATIVE_2B_5B = dict(frames=49, height=480, width=720)     # latents 13 x 60 x 90
NATIVE_15 = dict(frames=81, height=768, width=1360)       # latents 21 -> 22 x 96 x 170

# (job, variant, topology, mesh, extra) - splash-sharded unless said otherwise
MATRIX = [
    dict(job="sample", variant="2b", topology="v5p:2x2x1", mesh="fsdp=4", batch=2, **NATIVE_2B_5B),
    dict(job="sample", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4", batch=2, **NATIVE_2B_5B),
    dict(job="sample", variant="1.5-5b", topology="v5p:2x2x1", mesh="sequence=4", batch=1,
         sequence_parallel="ulysses", **NATIVE_15),
    dict(job="train", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4", batch=4, remat="full", **NATIVE_2B_5B),
    dict(job="train", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4", batch=4, remat="dots_saveable",
         **NATIVE_2B_5B),
    dict(job="sample", variant="5b", topology="v6e:2x2", mesh="fsdp=4", batch=2, **NATIVE_2B_5B),
    dict(job="sample", variant="5b", topology="v5e:2x2", mesh="fsdp=4", batch=2, **NATIVE_2B_5B),
    dict(job="train", variant="5b", topology="v6e:2x4", mesh="fsdp=8", batch=8, remat="full", **NATIVE_2B_5B),
    dict(job="sample", variant="1.5-5b", topology="v5p:2x2x1", mesh="sequence=4", batch=1,
         sequence_parallel="ulysses", attention="splash", **NATIVE_15),   # default fp32 Ulysses local attention
    dict(job="sample", variant="5b", topology="v5p:2x2x1", mesh="fsdp=4", batch=2, attention="xla", **NATIVE_2B_5B),
    dict(job="train", variant="5b", topology="v5e:2x4", mesh="fsdp=8", batch=8, remat="full", **NATIVE_2B_5B),
    dict(job="sample", variant="1.5-5b", topology="v6e:2x2", mesh="sequence=4", batch=1,
         sequence_parallel="ulysses", **NATIVE_15),
]


def _row_job(row: dict):
    from cogvideox_jax.parallel.tpu_aot import AOTJob

    kw = dict(attention="splash-sharded")
    kw.update(row)
    return AOTJob(**kw)


def run_row(index: int) -> dict:
    from cogvideox_jax.parallel.tpu_aot import compile_job

    job = _row_job(MATRIX[index])
    try:
        rep = compile_job(job)
        d = rep.as_dict()
        d["line"] = rep.summary_line()
    except Exception as e:  # report the error as the row's result
        d = dataclasses.asdict(job)
        d["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    d["row"] = index
    return d


def _fmt_row(d: dict) -> str:
    g = lambda k: f"{d[k] / GiB:.2f}"  # noqa: E731
    size = f"{d.get('frames')}x{d.get('height')}x{d.get('width')}"
    extra = [f"sp={d['sequence_parallel']}"] if d.get("sequence_parallel") else []
    if d["job"] == "train":
        extra.append(f"remat={d['remat']}")
    head = (f"| {d['job']} | {d['variant']} | {size} | {d['batch']} | {d['topology']} | {d['mesh']} "
            f"| {d['attention']}{' ' + ' '.join(extra) if extra else ''} ")
    if "error" in d:
        return head + f"| error: {d['error'][:120]} | | | | | | | | |"
    return head + (f"| {g('argument_bytes')} | {g('output_bytes')} | {g('alias_bytes')} | {g('temp_bytes')} "
                   f"| {g('code_bytes')} | **{g('total_bytes')}** / {d['hbm_gib']:.0f} "
                   f"| {'yes' if d['fits'] else 'NO'} | {_tflops(d)} | {d['flops'] / 1e12:.1f} "
                   f"| {d['compile_seconds']:.0f} |")


def _tflops(d: dict) -> str:
    return f"{d['model_flops'] / 1e12:.0f}" if d.get("model_flops") else "-"


def table(rows: list[dict]) -> str:
    lines = ["| job | variant | frames x H x W | batch | topology | mesh | attention / options | args GiB | out GiB "
             "| alias GiB | temp GiB | code GiB | total / HBM GiB | fits | model TFLOP/chip | XLA TFLOP/chip "
             "| compile s |",
             "|" + "---|" * 17]
    return "\n".join(lines + [_fmt_row(d) for d in sorted(rows, key=lambda r: r["row"])])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default=None, help="comma-separated row indices (default: all)")
    ap.add_argument("--out", default="tpu_aot.jsonl")
    ap.add_argument("--table", default=None, help="only print the table of an existing JSONL log")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: compile one row
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args(argv)
    if args.one is not None:
        print("RESULT " + json.dumps(run_row(args.one)), flush=True)
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
        try:
            proc = subprocess.run([sys.executable, __file__, "--one", str(i)], capture_output=True, text=True,
                                  timeout=args.timeout, env=env)
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
