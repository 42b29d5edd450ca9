"""Is a retrained pipeline checkpoint the shipped one? Every parameter leaf exactly, every other file byte for byte.

    python benchmarks/compare_checkpoints.py runs/shapes/checkpoint                 # against the package's default
    python benchmarks/compare_checkpoints.py CHECKPOINT_A CHECKPOINT_B

The check behind "reproduced the shipped model bit for bit" (BENCHMARKS.md, "Embedded default model"):
``train-shapes`` from an empty folder, then this on its ``checkpoint/``. The stage folder's own
bookkeeping (``default_model.SKIP``: ``settings.json``, ``.done``, ``attempt.json``, which ``--install``
leaves out of the package) is skipped.
Exits 1 when anything differs.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import sys

import numpy as np


def compare_params(a: str, b: str) -> bool:
    import jax

    from cogvideox_jax.convert.params_checkpoint import restore_params

    la = jax.tree_util.tree_leaves_with_path(restore_params(a))
    lb = jax.tree_util.tree_leaves_with_path(restore_params(b))
    if [(k, np.shape(x)) for k, x in la] != [(k, np.shape(y)) for k, y in lb]:
        print(f"{a}: the parameter trees or shapes differ")
        return False
    same = all(np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y) for (_, x), (_, y) in zip(la, lb))
    worst = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for (_, x), (_, y) in zip(la, lb))
    print(f"{os.path.basename(os.path.dirname(a))}: {len(la)} leaves, {sum(np.size(x) for _, x in la)} parameters, "
          f"{'bit-identical' if same else 'DIFFERENT'} (max |diff| {worst:.3g})")
    return same


def other_files(root: str) -> set[str]:
    from cogvideox_jax.shapes.default_model import SKIP  # train-shapes stage bookkeeping

    found = set()
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if os.sep + "params" + os.sep not in os.sep + rel and f not in SKIP:
                found.add(rel)
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("other", nargs="?", help="default: the package's default model")
    args = p.parse_args(argv)
    from cogvideox_jax.convert.pipeline_checkpoint import MODEL_COMPONENTS

    if args.other is None:
        from cogvideox_jax.shapes.default_model import default_checkpoint

        args.other = default_checkpoint()
    ok = all([compare_params(os.path.join(args.checkpoint, c, "params"), os.path.join(args.other, c, "params"))
              for c in MODEL_COMPONENTS])
    fa, fb = other_files(args.checkpoint), other_files(args.other)
    for rel in sorted(fa | fb):
        same = rel in fa and rel in fb and filecmp.cmp(os.path.join(args.checkpoint, rel), os.path.join(args.other, rel),
                                                       shallow=False)
        print(f"{rel}: {'same' if same else 'DIFFERENT' if rel in fa and rel in fb else 'only in one'}")
        ok &= same
    print("identical" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
