"""Per-device parameter memory and sampling time of the tiny 5b-style pipeline on 1/2/4/8 simulated
CPU devices (the trend, not absolute speed: simulated devices share the host's cores).

    python benchmarks/sharding_scaling.py [--steps 4] [--repeats 2]

Meshes: n=1 no mesh; n>=2 ``fsdp=2`` (the CFG batch of 2 over fsdp, params FSDP-sharded) times
``sequence=n/2`` (Ulysses). A second memory column shows pure FSDP (``fsdp=n``) for the same params.
Prints a markdown table. Needs torch + diffusers (to write the tiny pipeline folder).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def _param_bytes(params) -> int:
    from cogvideox_jax.parallel.param_sharding import per_device_bytes

    return max(per_device_bytes(params).values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--aot-5b", default=None, metavar="MESH",
                    help="instead: AOT-compile the 5b transformer forward at 49x480x720 on this mesh spec "
                         "(e.g. fsdp=4) over simulated CPU devices and print memory_analysis()")
    args = ap.parse_args()
    if args.aot_5b:
        return aot_5b(args.aot_5b)

    from cogvideox_jax_oracles import pipeline_oracle
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.parallel.param_sharding import param_shardings, place_params
    from cogvideox_jax.pipeline import CogVideoXPipeline
    from cogvideox_jax.pipeline.components import COMPONENT_KINDS

    tkw, sched, shift, vae = pipeline_oracle.STYLES["5b"]
    pipeline_oracle.STYLES["bench"] = (dict(tkw, num_attention_heads=args.heads, attention_head_dim=args.head_dim,
                                            num_layers=args.layers), sched, shift, vae)
    kw = dict(negative_prompt="", num_frames=9, height=32, width=48, num_inference_steps=args.steps,
              guidance_scale=6.0, seed=0, progress=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = pipeline_oracle.make_pipeline_folder(tmp, "bench")
        ref = None
        for n in (1, 2, 4, 8):
            devices = jax.devices()[:n]
            spec = None if n == 1 else f"fsdp=2,sequence={n // 2}"
            mesh = None if n == 1 else make_mesh(spec, devices=devices)
            pipe = CogVideoXPipeline.from_pretrained(folder, mesh=mesh, sequence_parallel=None if n == 1 else "ulysses")
            params = pipe.components.transformer_params
            total = sum(x.nbytes for x in jax.tree_util.tree_leaves(params))
            mine = total if n == 1 else _param_bytes(params)
            # pure FSDP over the same n devices, for the memory trend alone
            t = pipe.components.transformer
            abstract = jax.eval_shape(t.init, jax.random.PRNGKey(0), *COMPONENT_KINDS["transformer"].dummy_inputs(t.config))
            host = jax.tree_util.tree_map(np.asarray, params)
            fsdp = place_params(host, param_shardings(abstract["params"], make_mesh(f"fsdp={n}", devices=devices)))
            t0 = time.perf_counter()
            video = pipe("a red circle", **kw)
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                pipe("a red circle", **kw)
                times.append(time.perf_counter() - t0)
            if ref is None:
                ref = video
            rows.append(dict(n=n, mesh=spec or "-", total=total, mine=mine, fsdp=_param_bytes(fsdp), first=first,
                             steady=min(times), diff=float(np.abs(video - ref).max())))
            print(f"done n={n}", file=sys.stderr, flush=True)
    print(f"\ntransformer: {args.heads} heads x {args.head_dim}, {args.layers} layers; {args.steps} steps, "
          f"9 frames 32x48, CFG; jax {jax.__version__}, {os.cpu_count()} host cores\n")
    print("| devices | mesh | transformer params / device (this mesh) | params / device (fsdp=n) | "
          "first call (compile+run) s | steady call s | max abs diff vs 1 device |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['mesh']} | {r['mine'] / 2**20:.2f} MiB ({r['mine'] / r['total']:.2f}x) | "
              f"{r['fsdp'] / 2**20:.2f} MiB ({r['fsdp'] / r['total']:.2f}x) | {r['first']:.1f} | {r['steady']:.2f} | "
              f"{r['diff']:.1e} |")


def aot_5b(mesh_spec: str, batch: int = 2):
    """Lower + compile the 5b transformer forward (bf16, CFG batch 2, latents 13x60x90, 226 text tokens)
    with sharded ShapeDtypeStructs (no data, no params materialised) and report memory_analysis()."""
    import dataclasses

    import jax.numpy as jnp

    from configs.transformer import get_preset
    from cogvideox_jax.models.transformer.transformer_3d import CogVideoXTransformer3D, dummy_inputs
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.parallel.param_sharding import param_shardings
    from cogvideox_jax.parallel.sharded_apply import batch_sharding, sharded_jit

    sizes = [int(kv.split("=")[1]) for kv in mesh_spec.split(",")]
    n = int(np.prod(sizes))
    mesh = make_mesh(mesh_spec, devices=jax.devices()[:n])
    cfg = get_preset("cogvideox-5b")
    sp = "ulysses" if "sequence" in mesh_spec and mesh.shape["sequence"] > 1 else None
    module = CogVideoXTransformer3D(dataclasses.replace(cfg, sequence_parallel=sp), dtype=jnp.bfloat16,
                                    param_dtype=jnp.bfloat16, mesh=mesh)
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *dummy_inputs(cfg))["params"]
    shardings = param_shardings(abstract, mesh)
    import flax.linen as nn

    p_structs = jax.tree_util.tree_map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                       nn.unbox(abstract), shardings)
    shapes = [((batch, 13, 60, 90, 16), jnp.bfloat16), ((batch, 226, 4096), jnp.bfloat16), ((batch,), jnp.float32)]
    ins = [jax.ShapeDtypeStruct(s, d, sharding=batch_sharding(mesh, s)) for s, d in shapes]
    fwd = sharded_jit(lambda p, *a: module.apply({"params": p}, *a), mesh)
    t0 = time.perf_counter()
    lowered = fwd.lower(p_structs, *ins)
    compiled = lowered.compile()
    secs = time.perf_counter() - t0
    ma = compiled.memory_analysis()
    print(f"5b forward, mesh {mesh_spec} ({n} simulated CPU devices), sequence_parallel={sp}, "
          f"compile {secs:.0f} s; memory_analysis() -> {type(ma).__name__}")
    if ma is None:
        print("CPU backend returned no memory analysis")
        return
    for field in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
                  "generated_code_size_in_bytes", "host_temp_size_in_bytes"):
        v = getattr(ma, field, None)
        if v is not None:
            print(f"  {field}: {v / 2**30:.3f} GiB")


if __name__ == "__main__":
    main()
