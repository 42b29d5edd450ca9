"""Benchmark: JAX vs diffusers CogVideoX expert-transformer forward on CPU at 5B width (random init).

    python benchmarks/transformer.py                        # 5b width, 2 layers, 4x30x44 latents, table
    python benchmarks/transformer.py --layers 2 --repeats 3 --torch-threads 2 --sides jax,torch,matmul
    python benchmarks/transformer.py --interleave       # one process, calls alternated (shared machine)
    python benchmarks/transformer.py --matmul-dtype bfloat16   # mixed precision on both sides (below)

Config: the ``cogvideox-5b`` preset (48 heads x 64 = 3072 wide, RoPE) with ``num_layers`` layers,
latents ``(1, t, h, w, 16)`` + 226 text tokens, fp32, batch 1. Each side runs in its own subprocess
(JAX never shares a process with torch's thread pool):

* ``jax``: ``jax.jit(model.apply)``; compile time = first call minus one steady-state call;
* ``torch``: diffusers ``CogVideoXTransformer3DModel`` with the pipeline's own RoPE preparation,
  ``torch.set_num_threads(--torch-threads)``, ``torch.no_grad``;
* ``matmul``: the machine's XLA fp32 matmul rate, the ceiling the model's matmuls can reach: by
  default a jitted matmul of the model's largest shape, the feed-forward's (tokens x width) @
  (width x 4 width); ``--matmul-shape M,K,N`` for another (e.g. ``3072,3072,3072``);
* ``torch_matmul``: torch's matmul on the same shape and dtype (its sgemm: what diffusers' matmuls reach);
* ``bf16x3`` (fp32 only): the same fp32 product as three bf16 x bf16 -> fp32 XLA dots ("bf16_3x", the
  scheme of ``Precision.HIGH`` on TPU), on operands split beforehand, with its error: the one way left to
  reach the CPU's bf16 units (AMX) with an fp32-accurate matmul.

After the table, each probe's rate becomes a ceiling: the forward's time if every FLOP ran at that rate,
set against the 0.8x target.

FLOPs are counted from the config (2 per multiply-add): every linear layer (patch embed, text
projection, AdaLN modulation, QKV, out, feed-forward, final AdaLN, proj_out) plus attention's
QK^T and PV. Reported times are the median of ``--repeats`` steady-state calls. Timings on a
shared machine are noisy: the load average is printed alongside.

``--matmul-dtype bfloat16`` (not the fp32 comparison): JAX with ``TransformerConfig.matmul_dtype``
bf16 (the blocks' projections and feed-forward with bf16 operands, fp32 accumulation), diffusers under
``torch.autocast("cpu", torch.bfloat16)``, and the matmul probe with bf16 operands and an fp32 result.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _config(args):
    from configs.transformer import get_preset

    return get_preset("cogvideox-5b").replace(num_layers=args.layers)


def _jax_config(args):
    cfg = _config(args).replace(attention_backend=args.attention_backend, matmul_dtype=args.matmul_dtype)
    if args.scan_layers is not None:
        cfg = cfg.replace(scan_layers=bool(args.scan_layers))
    return cfg


def _torch_precision(args):
    """The context diffusers' forward runs in: inference, autocast to bf16 with ``--matmul-dtype bfloat16``."""
    import contextlib

    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    if args.matmul_dtype == "bfloat16":
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
    return stack


def _probe_operands(args):
    """The matmul probe's two fp32 operands, (M, K) and (K, N), standard normal."""
    import jax
    import jax.numpy as jnp

    m, k, n = _matmul_shape(args)
    return (jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32),
            jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32))


def _matmul_probe(args):
    """-> (jitted matmul of the probe's shape in the benchmark's precision, its two operands)."""
    import jax
    import jax.numpy as jnp

    a, b = (x.astype(jnp.dtype(args.matmul_dtype)) for x in _probe_operands(args))
    mm = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    mm(a, b).block_until_ready()
    return mm, a, b


def forward_flops(cfg, t: int, h: int, w: int, batch: int = 1) -> float:
    """Matmul FLOPs of one forward (2 per multiply-add), attention's QK^T and PV included."""
    p = cfg.patch_size
    pt = cfg.patch_size_t or 1
    d = cfg.inner_dim
    n_video = (t // pt) * (h // p) * (w // p)
    n_text = cfg.max_text_seq_length
    s = n_video + n_text
    mm = lambda m, k, n: 2.0 * m * k * n  # noqa: E731
    f = mm(n_video, cfg.in_channels * cfg.patch_volume, d) + mm(n_text, cfg.text_embed_dim, d)  # patch embed
    f += mm(1, d, cfg.time_embed_dim) + mm(1, cfg.time_embed_dim, cfg.time_embed_dim)  # time embedding
    per_layer = (2 * mm(1, cfg.time_embed_dim, 6 * d)   # two expert AdaLN modulations
                 + 4 * mm(s, d, d)                       # q, k, v, out
                 + 2 * mm(s, s, d)                       # QK^T, PV (all heads)
                 + mm(s, d, 4 * d) + mm(s, 4 * d, d))    # feed-forward
    f += cfg.num_layers * per_layer
    f += mm(1, cfg.time_embed_dim, 2 * d) + mm(n_video, d, cfg.patch_volume * cfg.out_dim)  # norm_out, proj_out
    return batch * f


def _n_tokens(cfg, args) -> int:
    pt = cfg.patch_size_t or 1
    return cfg.max_text_seq_length + (args.t // pt) * (args.h // cfg.patch_size) * (args.w // cfg.patch_size)


def _matmul_shape(args) -> tuple[int, int, int]:
    """``--matmul-shape M,K,N``, or the feed-forward's up-projection at the benchmark's size."""
    if args.matmul_shape:
        return tuple(int(x) for x in args.matmul_shape.split(","))
    cfg = _config(args)
    return _n_tokens(cfg, args), cfg.inner_dim, 4 * cfg.inner_dim


def _inputs(cfg, args):
    import numpy as np

    rng = np.random.default_rng(0)
    lat = rng.standard_normal((1, args.t, args.h, args.w, cfg.in_channels)).astype(np.float32)
    text = rng.standard_normal((1, cfg.max_text_seq_length, cfg.text_embed_dim)).astype(np.float32)
    return lat, text, np.asarray([500.0], np.float32)


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times


def run_jax(args):
    import jax
    import jax.numpy as jnp

    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs

    cfg = _jax_config(args)
    model = CogVideoXTransformer3D(cfg)
    lat0, text0, ts0 = dummy_inputs(cfg)  # init on a 1x2x2 latent: the params do not depend on it
    params = jax.jit(model.init)(jax.random.PRNGKey(0), lat0[:, :, :2, :2], text0, ts0)["params"]
    params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, params,
                          is_leaf=lambda x: hasattr(x, "unbox"))
    lat, text, ts = (jnp.asarray(x) for x in _inputs(cfg, args))
    fwd = jax.jit(lambda p, a, b, c: model.apply({"params": p}, a, b, c))
    t0 = time.perf_counter()
    fwd(params, lat, text, ts).block_until_ready()
    first = time.perf_counter() - t0
    med, times = _median_time(lambda: fwd(params, lat, text, ts).block_until_ready(), args.repeats)
    return dict(time=med, times=times, compile=first - med)


def run_torch(args):
    import torch
    from diffusers import CogVideoXTransformer3DModel

    from cogvideox_jax_oracles.transformer_oracle import reference_rope

    torch.set_num_threads(args.torch_threads)
    cfg = _config(args)
    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(**cfg.to_diffusers_config()).eval()
    lat, text, ts = _inputs(cfg, args)
    x = torch.from_numpy(lat.transpose(0, 1, 4, 2, 3).copy())
    enc, tt = torch.from_numpy(text), torch.from_numpy(ts)
    rope = reference_rope(model, args.t, args.h, args.w)

    def call():
        with _torch_precision(args):
            model(hidden_states=x, encoder_hidden_states=enc, timestep=tt, image_rotary_emb=rope, return_dict=False)

    call()  # warm-up
    med, times = _median_time(call, args.repeats)
    return dict(time=med, times=times)


def run_matmul(args):
    m, k, n = _matmul_shape(args)
    mm, a, b = _matmul_probe(args)
    med, times = _median_time(lambda: mm(a, b).block_until_ready(), args.repeats + 2)
    return dict(time=med, times=times, gflops=2.0 * m * k * n / med / 1e9)


def run_torch_matmul(args):
    """torch's matmul (MKL / oneDNN) on the probe's shape and dtype, ``--torch-threads`` threads."""
    import torch

    torch.set_num_threads(args.torch_threads)
    m, k, n = _matmul_shape(args)
    dt = torch.float32 if args.matmul_dtype == "float32" else torch.bfloat16
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(shape, generator=g).to(dt) for shape in ((m, k), (k, n)))
    a @ b  # warm-up
    med, times = _median_time(lambda: a @ b, args.repeats + 2)
    return dict(time=med, times=times, gflops=2.0 * m * k * n / med / 1e9)


def split_bf16(x):
    """fp32 ``x`` -> (hi, lo) bf16 with ``hi + lo`` = x to ~2^-17 relative."""
    import jax.numpy as jnp

    hi = x.astype(jnp.bfloat16)
    return hi, (x - hi.astype(jnp.float32)).astype(jnp.bfloat16)


def bf16x3_matmul(a_hi, a_lo, b_hi, b_lo):
    """An fp32 matmul from three bf16 x bf16 -> fp32 dots (``a_lo @ b_lo`` dropped), the "bf16_3x"
    scheme behind ``Precision.HIGH`` on TPU: ~1e-5 relative error, three times the bf16 FLOPs."""
    import jax.numpy as jnp
    from jax import lax

    dot = lambda x, y: lax.dot(x, y, preferred_element_type=jnp.float32)  # noqa: E731
    return dot(a_hi, b_hi) + (dot(a_hi, b_lo) + dot(a_lo, b_hi))


def run_bf16x3(args):
    """The probe's fp32 matmul computed as bf16_3x on operands split beforehand (the split not
    timed: the most favourable case, weights split once at load time): its fp32-equivalent rate
    (fp32 FLOPs / time) and its error against a float64 product."""
    import jax
    import numpy as np

    m, k, n = _matmul_shape(args)
    a, b = _probe_operands(args)
    parts = (*split_bf16(a), *split_bf16(b))
    mm = jax.jit(bf16x3_matmul)
    out = np.asarray(mm(*parts).block_until_ready(), np.float64)
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    err = float(np.abs(out - ref).max() / np.abs(ref).max())
    med, times = _median_time(lambda: mm(*parts).block_until_ready(), args.repeats + 2)
    return dict(time=med, times=times, gflops=2.0 * m * k * n / med / 1e9, rel_err=err)


def run_interleaved(args):
    """Both sides (and the matmul probe) in one process, calls alternated, so that both see the same
    background load on a shared machine; each side's pool is idle while the other runs."""
    import jax
    import jax.numpy as jnp
    import torch
    from diffusers import CogVideoXTransformer3DModel

    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs
    from cogvideox_jax_oracles.transformer_oracle import reference_rope

    torch.set_num_threads(args.torch_threads)
    cfg = _jax_config(args)
    model = CogVideoXTransformer3D(cfg)
    lat0, text0, ts0 = dummy_inputs(cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), lat0[:, :, :2, :2], text0, ts0)["params"]
    params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, params,
                          is_leaf=lambda x: hasattr(x, "unbox"))
    lat, text, ts = _inputs(cfg, args)
    jl, jt, jts = (jnp.asarray(x) for x in (lat, text, ts))
    fwd = jax.jit(lambda p, a, b, c: model.apply({"params": p}, a, b, c))
    t0 = time.perf_counter()
    fwd(params, jl, jt, jts).block_until_ready()
    first = time.perf_counter() - t0
    torch.manual_seed(0)
    tmodel = CogVideoXTransformer3DModel(**cfg.to_diffusers_config()).eval()
    x = torch.from_numpy(lat.transpose(0, 1, 4, 2, 3).copy())
    enc, tt = torch.from_numpy(text), torch.from_numpy(ts)
    rope = reference_rope(tmodel, args.t, args.h, args.w)

    def tcall():
        with _torch_precision(args):
            tmodel(hidden_states=x, encoder_hidden_states=enc, timestep=tt, image_rotary_emb=rope, return_dict=False)

    m, k, n = _matmul_shape(args)
    mm, a, b = _matmul_probe(args)
    tcall()
    calls = dict(jax=lambda: fwd(params, jl, jt, jts).block_until_ready(), torch=tcall,
                 matmul=lambda: mm(a, b).block_until_ready())
    times = {side: [] for side in calls}
    for _ in range(args.repeats):
        for side, fn in calls.items():
            t1 = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - t1)
    med = {side: sorted(v)[len(v) // 2] for side, v in times.items()}
    return dict(jax=dict(time=med["jax"], times=times["jax"], compile=first - med["jax"]),
                torch=dict(time=med["torch"], times=times["torch"]),
                matmul=dict(time=med["matmul"], times=times["matmul"], gflops=2.0 * m * k * n / med["matmul"] / 1e9))


RUNNERS = {"jax": run_jax, "torch": run_torch, "matmul": run_matmul, "torch_matmul": run_torch_matmul,
           "bf16x3": run_bf16x3, "interleaved": run_interleaved}


def _subprocess(side, argv):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--side", side, *argv],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise RuntimeError(f"{side} side failed (rc {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--t", type=int, default=4)
    p.add_argument("--h", type=int, default=30)
    p.add_argument("--w", type=int, default=44)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--matmul-shape", default="", help="M,K,N of the matmul probe (default: the feed-forward's)")
    p.add_argument("--attention-backend", default="auto")
    p.add_argument("--scan-layers", type=int, choices=(0, 1), default=None,
                   help="JAX: nn.scan over the blocks (1) or unrolled (0); default: the preset's (scan)")
    p.add_argument("--matmul-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: JAX matmul_dtype=bfloat16, diffusers under CPU autocast to bf16, bf16 probe")
    p.add_argument("--sides", default="matmul,jax,torch",
                   help="any of jax, torch, matmul, torch_matmul, bf16x3 (fp32 only), comma-separated")
    p.add_argument("--interleave", action="store_true",
                   help="one process, jax / torch / matmul calls alternated (fairer under varying load)")
    p.add_argument("--side", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        print(json.dumps(RUNNERS[args.side](args)))
        return

    argv = [a for a in sys.argv[1:]]
    if "bf16x3" in args.sides.split(",") and args.matmul_dtype != "float32":
        p.error("the bf16x3 probe is an fp32 matmul: use it with --matmul-dtype float32")
    cfg = _config(args)
    flops = forward_flops(cfg, args.t, args.h, args.w)
    load0 = os.getloadavg()[0]
    if args.interleave:
        res = _subprocess("interleaved", argv)
    else:
        res = {side: _subprocess(side, argv) for side in args.sides.split(",")}
    load1 = os.getloadavg()[0]
    n_tokens = _n_tokens(cfg, args)
    print(f"\nCogVideoX transformer forward: width {cfg.inner_dim} ({cfg.num_attention_heads}x"
          f"{cfg.attention_head_dim}), {cfg.num_layers} layers, latents {args.t}x{args.h}x{args.w}x{cfg.in_channels} "
          f"+ {cfg.max_text_seq_length} text tokens = {n_tokens} tokens, "
          f"{'fp32' if args.matmul_dtype == 'float32' else 'bf16 matmuls (fp32 accumulation)'}, batch 1, RoPE; "
          f"{flops / 1e9:.1f} GFLOP/forward; load avg {load0:.1f} -> {load1:.1f} (2 cores)\n")
    rate = res.get("matmul", {}).get("gflops")
    print("| side | time (s, median) | all runs (s) | compile (s) | GFLOP/s | % of XLA matmul rate | vs diffusers |")
    print("|---|---|---|---|---|---|---|")
    ref = res.get("torch", {}).get("time")
    for side in ("jax", "torch"):
        if side not in res:
            continue
        r = res[side]
        g = flops / r["time"] / 1e9
        name = "JAX (jit)" if side == "jax" else f"diffusers (torch, {args.torch_threads} threads)"
        print(f"| {name} | {r['time']:.3f} | {', '.join(f'{x:.2f}' for x in r['times'])} | "
              f"{r.get('compile', float('nan')):.1f} | {g:.1f} | "
              f"{(100 * g / rate) if rate else float('nan'):.0f}% | {(r['time'] / ref) if ref else float('nan'):.2f}x |")
    if rate:
        shape = "x".join(map(str, _matmul_shape(args)))
        kind = "fp32" if args.matmul_dtype == "float32" else "bf16 x bf16 -> fp32"
        print(f"\nXLA {kind} matmul {shape} (M x K x N, jit): {res['matmul']['time'] * 1e3:.1f} ms -> {rate:.1f} GFLOP/s")
    _print_ceilings(args, res, flops, ref)


def _print_ceilings(args, res, flops, ref):
    """The other matmul probes, and what the forward would take if every FLOP ran at each probe's
    rate (a lower bound on a forward built on that matmul), against the 0.8x target."""
    shape = "x".join(map(str, _matmul_shape(args)))
    probes = [("XLA matmul", res.get("matmul"))]
    if "torch_matmul" in res:
        r = res["torch_matmul"]
        probes.append((f"torch matmul ({args.torch_threads} threads)", r))
        print(f"torch {'fp32' if args.matmul_dtype == 'float32' else 'bf16'} matmul {shape}: "
              f"{r['time'] * 1e3:.1f} ms -> {r['gflops']:.1f} GFLOP/s")
    if "bf16x3" in res:
        r = res["bf16x3"]
        probes.append(("XLA bf16_3x matmul", r))
        print(f"XLA bf16_3x matmul {shape} (three bf16 dots, operands split beforehand): {r['time'] * 1e3:.1f} ms "
              f"-> {r['gflops']:.1f} fp32-equivalent GFLOP/s, max|err| {r['rel_err']:.1e} x max|ref|")
    probes = [(name, r) for name, r in probes if r]
    if not (probes and ref):
        return
    print(f"\nCeilings: the forward's {flops / 1e9:.1f} GFLOP with every FLOP at a probe's rate "
          f"(target <= 0.8x diffusers = {0.8 * ref:.3f} s, i.e. >= {flops / (0.8 * ref) / 1e9:.1f} GFLOP/s overall):")
    for name, r in probes:
        t = flops / (r["gflops"] * 1e9)
        print(f"  {name}: {t:.3f} s = {t / ref:.2f}x diffusers")


if __name__ == "__main__":
    main()
