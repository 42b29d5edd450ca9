"""cogvideox-jax: CogVideoX (3D causal VAE, expert transformer, T5) in JAX/Flax, TPU-first.

The runtime package never imports torch; PyTorch is used only as a test oracle and, lazily,
by the SAT checkpoint converter.
"""

__version__ = "0.1.0"
