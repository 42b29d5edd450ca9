"""The shapes project's research benchmarks (run as ``python -m cogvideox_jax.shapes.benchmarks.NAME``)."""
