"""T5 v1.1-XXL-width encoder (few layers), 226 tokens: JAX (jit) vs transformers ``T5EncoderModel``.

    python benchmarks/t5.py --layers 2 --batch 1 --reps 5 [--vocab 32128] [--bf16] [--torch-threads 2]

Random init of the transformers model (XXL widths: d_model 4096, 64 heads x 64, d_ff 10240, gated-GELU,
32 buckets / max distance 128), converted in memory with the torch-free name mapping, prompt-like ids
(tokens, EOS, padding; no attention mask as the CogVideoX pipeline). Prints the median wall time of
``--reps`` calls after a warm-up (JAX: after compilation; compile time printed separately) and the
parity error. Timings on a shared CPU box are noisy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--length", type=int, default=226)
    p.add_argument("--vocab", type=int, default=32128)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--bf16", action="store_true", help="also time bf16 (params and compute) in both")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--no-torch", action="store_true", help="JAX only (random params), e.g. on an accelerator")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from configs.t5 import T5_V1_1_XXL
    from cogvideox_jax.convert.t5 import convert_t5_state_dict
    from cogvideox_jax.convert.tree_check import abstract_params, assemble_params
    from cogvideox_jax.models.t5 import T5EncoderModel, encode_prompts_jit

    cfg = T5_V1_1_XXL.replace(num_layers=args.layers, vocab_size=args.vocab)
    rng = np.random.RandomState(0)
    ids = np.zeros((args.batch, args.length), np.int32)
    for b in range(args.batch):
        n = min(args.length - 1, 40 + 30 * b)
        ids[b, :n] = rng.randint(3, args.vocab, size=n)
        ids[b, n] = 1
    print(f"device: {jax.devices()[0].platform} x{len(jax.devices())}; config: XXL widths, {args.layers} layers, "
          f"vocab {args.vocab}; ids {ids.shape}")

    module = T5EncoderModel(cfg)
    expected = abstract_params(module, jnp.zeros((1, 2), jnp.int32))
    model = None
    if args.no_torch:
        params = jax.jit(lambda k: jax.tree_util.tree_map(
            lambda s: 0.05 * jax.random.normal(k, s.shape, s.dtype), expected))(jax.random.PRNGKey(0))
    else:
        import torch
        from transformers import T5Config as HFT5Config, T5EncoderModel as HFT5EncoderModel

        torch.set_num_threads(args.torch_threads)
        torch.manual_seed(0)
        hf_cfg = HFT5Config(d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff, num_layers=cfg.num_layers,
                            num_heads=cfg.num_heads, vocab_size=cfg.vocab_size, feed_forward_proj="gated-gelu",
                            dropout_rate=0.0)
        model = HFT5EncoderModel(hf_cfg).eval()
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        converted, unused = convert_t5_state_dict(state, cfg)
        params = jax.device_put(assemble_params(converted, expected, unused_source_keys=unused))
        del state, converted

    def run_jax(mod, prm):
        t0 = time.perf_counter()
        out = encode_prompts_jit(mod, prm, ids).block_until_ready()
        compile_s = time.perf_counter() - t0
        med, best = _median_time(lambda: encode_prompts_jit(mod, prm, ids).block_until_ready(), args.reps)
        return np.asarray(out.astype(jnp.float32)), compile_s, med, best

    out32, c32, m32, b32 = run_jax(module, params)
    print(f"jax fp32      : median {m32 * 1e3:8.1f} ms  (best {b32 * 1e3:.1f}; first call incl. compile {c32:.1f} s)")
    if args.bf16:
        mod16 = T5EncoderModel(cfg, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
        prm16 = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
        out16, c16, m16, b16 = run_jax(mod16, prm16)
        err16 = np.max(np.abs(out16 - out32)) / np.max(np.abs(out32))
        print(f"jax bf16      : median {m16 * 1e3:8.1f} ms  (best {b16 * 1e3:.1f}; compile {c16:.1f} s); "
              f"rel err vs jax fp32 {err16:.2e}")
    if model is not None:
        import torch

        tids = torch.tensor(ids, dtype=torch.long)
        with torch.inference_mode():
            ref = model(tids).last_hidden_state.numpy()
            model(tids)
            mt, bt = _median_time(lambda: model(tids), args.reps)
        err = np.max(np.abs(out32 - ref)) / np.max(np.abs(ref))
        print(f"torch fp32    : median {mt * 1e3:8.1f} ms  (best {bt * 1e3:.1f}; {args.torch_threads} threads); "
              f"jax/torch rel err {err:.2e}; speedup {mt / m32:.2f}x")
        if args.bf16:
            model = model.to(torch.bfloat16)  # wo stays bf16 here (transformers keeps it fp32 only when loading)
            with torch.inference_mode():
                model(tids)
                mt16, bt16 = _median_time(lambda: model(tids), args.reps)
            print(f"torch bf16    : median {mt16 * 1e3:8.1f} ms  (best {bt16 * 1e3:.1f})")


if __name__ == "__main__":
    main()
