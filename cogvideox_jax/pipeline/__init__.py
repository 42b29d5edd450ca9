"""Sampling: ``CogVideoXPipeline`` (text-to-video and image-to-video)."""
from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline

__all__ = ["CogVideoXPipeline"]
