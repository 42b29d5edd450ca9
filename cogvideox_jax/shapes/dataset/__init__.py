"""Synthetic "shapes" text–video dataset (procedural clips + templated captions) for fine-tuning tests.

``make_dataset(out, ShapesConfig(...))`` writes ``out/train`` and ``out/heldout`` in the fine-tuning
folder format; ``parse_caption`` recovers the attributes; the evaluator is ``cogvideox_jax.shapes.eval``.
"""
